"""The small models of the label-attack papers: FCN-3, LeNet-5 and a VGG-style net.

Same contract as the big models (see :mod:`labelleak.models`): ``features(x) -> (N, d)``, an
``nn.Linear`` ``head`` with bias, ``feature_dim`` and ``activation`` (the activation in front of the
head, which decides whether features are non-negative: relu and sigmoid yes, swish, tanh and
leaky_relu no). Each model also records ``input_shape`` (C, H, W), so attacks that forward dummy
inputs (LLG*, Geng et al., DLG) know what to draw.

* ``fcn3``: iLRG's FCN-3: flatten -> Linear(in, 300) -> act -> Linear(300, 300) -> act -> head.
  ``in_features`` defaults to 784 (MNIST, 1x28x28); a flattened 3x32x32 image needs 3072.
* ``lenet5``: conv(5x5, 6) -> act -> pool -> conv(5x5, 16) -> act -> pool -> 120 -> act -> 84 -> act
  -> head, optional BatchNorm after each conv (iLRG's LeNet options).
* ``vgg11`` / ``vgg16``: the VGG configurations at 32x32 (CIFAR-style: conv stack, global pooling,
  head on 512 * width features); ``width`` scales the channels to keep CPU runs cheap.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from labelleak.errors import ConfigError
from labelleak.registry import Registry

#: activation name -> module factory (the activation axis of the config).
ACTIVATIONS: Registry = Registry("activation", ConfigError, {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "swish": lambda: nn.SiLU(),
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
})


def activation(name: str) -> nn.Module:
    return ACTIVATIONS.lookup(name)()


def _image_shape(in_features: int, in_channels: int | None, image_size: int | None) -> tuple[int, ...]:
    """The (C, H, W) a flat input of ``in_features`` most likely came from (dummy inputs use it)."""
    if in_channels and image_size:
        return (in_channels, image_size, image_size)
    for c in (1, 3):
        side = int(round((in_features / c) ** 0.5))
        if c * side * side == in_features:
            return (c, side, side)
    return (in_features,)


class _Small(nn.Module):
    """Shared forward: ``head(features(x))``."""

    head: nn.Linear

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class FCN3(_Small):
    """Fully connected net with two hidden layers (iLRG's FCN-3, hidden 300)."""

    def __init__(self, num_classes: int = 10, in_features: int = 784, hidden: int = 300,
                 activation: str = "relu", in_channels: int | None = None, image_size: int | None = None) -> None:
        super().__init__()
        if in_channels and image_size:
            in_features = in_channels * image_size * image_size
        self.input_shape = _image_shape(in_features, in_channels, image_size)
        self.activation = activation
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), globals()["activation"](activation),
                                  nn.Linear(hidden, hidden), globals()["activation"](activation))
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class LeNet5(_Small):
    """LeNet-5 with a choice of activation and optional BatchNorm (any input size >= 16)."""

    def __init__(self, num_classes: int = 100, activation: str = "relu", batch_norm: bool = False,
                 in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        act = globals()["activation"]
        bn = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.activation = activation
        self.input_shape = (in_channels, image_size, image_size)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2 if image_size < 32 else 0), bn(6), act(activation), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), bn(16), act(activation), nn.MaxPool2d(2), nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *self.input_shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, 120), act(activation), nn.Linear(120, 84), act(activation))
        self.feature_dim = 84
        self.head = nn.Linear(84, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x))


VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(_Small):
    """VGG conv stack (3x3 convs, BatchNorm optional) + global average pooling + head."""

    def __init__(self, config: str = "vgg11", num_classes: int = 100, activation: str = "relu",
                 batch_norm: bool = True, width: float = 1.0, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        if not 0 < width <= 4:
            raise ConfigError(f"vgg: width must be in (0, 4], got {width!r}")
        layers, cin = [], in_channels
        for v in VGG_CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            cout = max(4, int(v * width))
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout) if batch_norm else nn.Identity(),
                       globals()["activation"](activation)]
            cin = cout
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.activation = activation
        self.input_shape = (in_channels, image_size, image_size)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


def fcn3(num_classes: int = 10, **kwargs) -> FCN3:
    return FCN3(num_classes=num_classes, **kwargs)


def lenet5(num_classes: int = 100, **kwargs) -> LeNet5:
    return LeNet5(num_classes=num_classes, **kwargs)


def vgg11(num_classes: int = 100, **kwargs) -> VGG:
    return VGG("vgg11", num_classes=num_classes, **kwargs)


def vgg16(num_classes: int = 100, **kwargs) -> VGG:
    return VGG("vgg16", num_classes=num_classes, **kwargs)
