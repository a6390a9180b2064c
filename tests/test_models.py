"""Models: contract (shapes, features, head), param counts, registry, weights, gradient fact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.errors import LabelleakError
from labelleak.models import (
    ARCHITECTURES,
    build_model,
    efficientnet_b0,
    load_weights,
    projection_layer,
    resnet50,
)

ARCHS = ["resnet50", "efficientnet_b0"]
FEATURE_DIM = {"resnet50": 2048, "efficientnet_b0": 1280}
ACTIVATION = {"resnet50": "relu", "efficientnet_b0": "swish"}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {a: build_model(a, num_classes=10).eval() for a in ARCHS}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_names():
    assert set(ARCHITECTURES) == set(ARCHS) | {"fcn3", "lenet5", "vgg11", "vgg16"}  # small models: test_small_models.py


@pytest.mark.parametrize(("ctor", "expected"), [(resnet50, 25_557_032), (efficientnet_b0, 5_288_548)])
def test_param_counts_match_torchvision(ctor, expected):
    assert n_params(ctor(num_classes=1000)) == expected


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [32, 64])
def test_output_and_feature_shapes(models, arch, size):
    m = models[arch]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert m(x).shape == (2, 10)
        assert m.features(x).shape == (2, FEATURE_DIM[arch])
    assert m.feature_dim == FEATURE_DIM[arch]
    assert m.activation == ACTIVATION[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_head_is_projection_layer(models, arch):
    m = models[arch]
    head = projection_layer(m)
    assert head is m.head and isinstance(head, nn.Linear)
    assert head.in_features == m.feature_dim and head.out_features == 10
    assert head.bias is not None


def test_projection_layer_rejects_headless_model():
    with pytest.raises(LabelleakError):
        projection_layer(nn.Sequential(nn.Linear(2, 2)))


def test_feature_signs(models):
    torch.manual_seed(1)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (models["resnet50"].features(x) >= 0).all()
        h = models["efficientnet_b0"].features(x)
    assert (h < 0).any()  # swish lets small negatives through
    assert (h >= -0.2785).all()  # swish minimum


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_equals_head_of_features(models, arch):
    m = models[arch]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.head(m.features(x)))


def test_efficientnet_dropout_only_in_train_mode():
    torch.manual_seed(0)
    m = efficientnet_b0(num_classes=5, dropout=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.head(m.features(x)))
    assert efficientnet_b0(num_classes=5).dropout.p == 0.0


def test_build_model_kwargs_and_unknown_name():
    m = build_model("efficientnet_b0", 7, dropout=0.1)
    assert m.head.out_features == 7 and m.dropout.p == 0.1
    with pytest.raises(KeyError, match="efficientnet_b0.*resnet50"):
        build_model("vgg19", 10)  # vgg11 / vgg16 are registered (small models)


@pytest.mark.parametrize("arch", ARCHS)
def test_load_weights_round_trip(tmp_path, arch):
    torch.manual_seed(0)
    a = build_model(arch, 10)
    with torch.no_grad():  # make BN running stats non-trivial so they must be saved too
        a.train()(torch.randn(4, 3, 32, 32))
    a.eval()
    path = tmp_path / "w.pt"
    torch.save(a.state_dict(), path)
    torch.manual_seed(123)
    b = build_model(arch, 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
        assert load_weights(b, path) is b
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def one_line_error(fn) -> str:
    with pytest.raises(LabelleakError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_load_weights_errors(tmp_path):
    m = efficientnet_b0(num_classes=10)
    missing = tmp_path / "nope.pt"
    assert str(missing) in one_line_error(lambda: load_weights(m, missing))

    wrong = tmp_path / "wrong.pt"
    torch.save(efficientnet_b0(num_classes=3).state_dict(), wrong)
    msg = one_line_error(lambda: load_weights(m, wrong))
    assert "head.weight" in msg and str(wrong) in msg

    other = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(1)}, other)
    one_line_error(lambda: load_weights(m, other))

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file\n")
    assert str(junk) in one_line_error(lambda: load_weights(m, junk))


@pytest.mark.parametrize("arch", ARCHS)
def test_head_gradient_is_outer_product(arch):
    """d mean-CE / d head.weight == (1/N) G^T H, d / d head.bias == mean(G)."""
    torch.manual_seed(0)
    n, c = 6, 5
    m = build_model(arch, c).double().eval()
    x = torch.randn(n, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 3, 4, 4])
    h = m.features(x)
    logits = m.head(h)
    F.cross_entropy(logits, y).backward()
    g = (torch.softmax(logits, 1) - F.one_hot(y, c)).detach()
    h = h.detach()
    torch.testing.assert_close(m.head.weight.grad, g.T @ h / n, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.head.bias.grad, g.mean(0), rtol=1e-10, atol=1e-12)
