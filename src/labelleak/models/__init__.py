"""Image classifiers whose last Linear layer is the one the attacks read.

Contract (every model built here follows it):

- ``model.features(x) -> Tensor (N, d)``: the representation entering the projection layer,
  after global average pooling and flatten (ResNet: after the last ReLU, so >= 0;
  EfficientNet: after the final 1x1 conv + BN + swish). No dropout inside ``features``.
- ``model.head``: ``nn.Linear(d, num_classes)`` with bias, the projection layer.
- ``model.forward(x) == model.head(model.features(x))``. EfficientNet takes ``dropout``
  (default 0.0, the paper uses 0.2) applied between the two in train mode only; with the
  default the identity is exact in train and eval mode.
- ``model.feature_dim``: d (2048 for ResNet-50, 1280 for EfficientNet-B0).
- ``model.activation``: the activation before the projection layer, "relu" or "swish".
- Any ``num_classes``; any input size >= 32x32 (adaptive average pooling).

Hence for the mean cross-entropy over a batch, grad of head.weight = (1/N) G^T H with
H = features(x), G = softmax(logits) - onehot(y), and grad of head.bias = mean of G's rows.

Init: convs He normal (fan_out), BN weight 1 / bias 0, SE conv biases 0, head PyTorch's
default nn.Linear init. Parameter counts at 1000 classes equal torchvision's:
resnet50 25,557,032; efficientnet_b0 5,288,548.
"""

from labelleak.models.efficientnet import EfficientNet, efficientnet_b0
from labelleak.models.registry import ARCHITECTURES, build_model, load_weights, projection_layer
from labelleak.models.resnet import ResNet, resnet50

__all__ = [
    "ARCHITECTURES",
    "EfficientNet",
    "ResNet",
    "build_model",
    "efficientnet_b0",
    "load_weights",
    "projection_layer",
    "resnet50",
]
