"""Federated training (Flower engine): IID shards, training that learns, defenses applied to client updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyNet

from labelleak.federated import flower_train, split_clients


def _data(seed=0, n=400, classes=4):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, 32, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, 32, generator=g), y


def test_split_clients_is_a_partition():
    parts = split_clients(103, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    with pytest.raises(ValueError):
        split_clients(3, 4, np.random.default_rng(0))


@pytest.mark.parametrize("defense, steps", [("none", 1), ("signsgd", 3), ("dpsgd-1.0-0.5", 1)])
def test_training_learns_under_a_defense(defense, steps):
    torch.set_num_threads(1)
    x, y = _data()
    xt, yt = _data(seed=0)  # same centers: a test set from the same distribution
    fn = lambda: TinyNet(num_classes=4, activation="relu")  # noqa: E731
    server_lr = 0.002 if defense == "signsgd" else None
    res = flower_train(fn, x, y, xt, yt, defense=defense, clients=3, rounds=8, local_steps=steps,
                          batch_size=16, lr=0.1, server_lr=server_lr, seed=1)
    assert res.accuracy > 0.6  # chance: 0.25
    assert (res.epsilon is not None) == defense.startswith("dpsgd")
    again = flower_train(fn, x, y, xt, yt, defense=defense, clients=3, rounds=8, local_steps=steps,
                            batch_size=16, lr=0.1, server_lr=server_lr, seed=1)
    assert again.accuracy == res.accuracy  # seeded


def test_a_destructive_defense_costs_accuracy():
    torch.set_num_threads(1)
    x, y = _data()
    fn = lambda: TinyNet(num_classes=4, activation="relu")  # noqa: E731
    base = [flower_train(fn, x, y, x, y, clients=2, rounds=3, lr=0.1, seed=s).accuracy for s in (3, 4)]
    noisy = [flower_train(fn, x, y, x, y, defense="noise-10.0", clients=2, rounds=3, lr=0.1, seed=s).accuracy
             for s in (3, 4)]
    assert np.mean(noisy) < np.mean(base) - 0.2
