"""FCN-3, LeNet-5 and VGG: the model contract, activations, BatchNorm, input shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labelleak.errors import ConfigError
from labelleak.models import build_model
from labelleak.models.small import ACTIVATIONS

CASES = [
    ("fcn3", {"in_features": 784}, (1, 28, 28), 300),
    ("fcn3", {"in_features": 3072}, (3, 32, 32), 300),
    ("lenet5", {}, (3, 32, 32), 84),
    ("lenet5", {"in_channels": 1, "image_size": 28, "batch_norm": True}, (1, 28, 28), 84),
    ("vgg11", {"width": 0.125}, (3, 32, 32), 64),
    ("vgg16", {"width": 0.125, "batch_norm": False}, (3, 32, 32), 64),
]


@pytest.mark.parametrize(("arch", "kwargs", "shape", "d"), CASES)
def test_contract(arch, kwargs, shape, d):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, **kwargs).eval()
    assert model.input_shape == shape and model.feature_dim == d
    assert isinstance(model.head, nn.Linear) and model.head.bias is not None and model.head.out_features == 7
    x = torch.randn(3, *shape)
    h = model.features(x)
    assert h.shape == (3, d)
    torch.testing.assert_close(model(x), model.head(h))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_axis_decides_feature_signs(activation):
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, activation=activation).eval()
    h = model.features(torch.randn(16, 3, 32, 32))
    assert model.activation == activation
    assert bool((h >= 0).all()) == (activation in ("relu", "sigmoid"))


def test_batch_norm_option_and_bad_activation():
    bn = build_model("lenet5", num_classes=10, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build_model("lenet5", num_classes=10).modules())
    with pytest.raises(ConfigError, match="unknown activation"):
        build_model("lenet5", num_classes=10, activation="gelu")
