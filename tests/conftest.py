"""Shared fixtures: small real computations (a tiny network's projection-layer update)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from labelleak.updates.compute import projection_update
from labelleak.updates.format import save_update

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "tanh": nn.Tanh}


class TinyNet(nn.Module):
    """x -> activation(Linear) -> head: the smallest model with the project's model contract."""

    def __init__(self, d_in: int = 32, d: int = 64, num_classes: int = 50, activation: str = "relu"):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, d), ACTIVATIONS[activation]())
        self.head = nn.Linear(d, num_classes)
        self.feature_dim = d

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def make_update(activation="relu", d=64, num_classes=50, labels=(1, 7, 7, 20), steps=1, seed=0, lr=0.1):
    """A real update of a TinyNet: ``steps`` local steps over ``labels`` split evenly."""
    torch.manual_seed(seed)
    model = TinyNet(d=d, num_classes=num_classes, activation=activation)
    y = torch.as_tensor(labels)
    x = torch.randn(len(y), 32)
    per = len(y) // steps
    batches = [(x[i * per:(i + 1) * per], y[i * per:(i + 1) * per]) for i in range(steps)]
    return model, batches, projection_update(model, batches, lr=lr)


@pytest.fixture
def one_torch_thread():
    """Small models on a shared CPU: one thread is faster than an oversubscribed two (use with usefixtures)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def update_file(tmp_path):
    """Write an update file of a TinyNet (swish features) and return (path, true labels)."""

    def _make(activation="swish", labels=(3, 11, 11, 40), **kw):
        _, _, upd = make_update(activation=activation, labels=labels, **kw)
        path = tmp_path / f"update_{activation}_{len(labels)}.npz"
        save_update(path, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(labels), steps=1,
                    labels=np.asarray(labels), meta={"test": True})
        return path, sorted(set(labels))

    return _make
