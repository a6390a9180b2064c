"""Architecture names -> constructors, weight loading, and the projection layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from labelleak.errors import LabelleakError
from labelleak.models.efficientnet import efficientnet_b0
from labelleak.models.resnet import resnet50
from labelleak.models.small import fcn3, lenet5, vgg11, vgg16
from labelleak.registry import Registry

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture", KeyError, {
    "resnet50": resnet50,
    "efficientnet_b0": efficientnet_b0,
    "fcn3": fcn3,
    "lenet5": lenet5,
    "vgg11": vgg11,
    "vgg16": vgg16,
})


def build_model(arch: str, num_classes: int, **kwargs) -> nn.Module:
    """Build ``arch`` with ``num_classes`` outputs; unknown names raise KeyError."""
    return ARCHITECTURES.lookup(arch)(num_classes=num_classes, **kwargs)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``torch.save``d state_dict into ``model`` (in place; also returned).

    Missing/unreadable files and key or shape mismatches raise a one-line LabelleakError.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelleakError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle of something else, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabelleakError(f"cannot read weights file {path}: {msg}") from None
    if not isinstance(state, dict):
        raise LabelleakError(f"weights file {path} does not hold a state_dict")
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise LabelleakError(f"weights file {path} lacks key {key!r}")
        got = getattr(state[key], "shape", None)
        if got != value.shape:
            raise LabelleakError(
                f"weights file {path}: shape mismatch at {key!r}: "
                f"file {tuple(got) if got is not None else type(state[key]).__name__}, "
                f"model {tuple(value.shape)}"
            )
    extra = next((k for k in state if k not in own), None)
    if extra is not None:
        raise LabelleakError(f"weights file {path} has unexpected key {extra!r}")
    model.load_state_dict(state)
    return model


def projection_layer(model: nn.Module) -> nn.Linear:
    """The last Linear layer, whose gradient the attacks read."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise LabelleakError(f"{type(model).__name__} has no nn.Linear 'head' projection layer")
    return head
