"""What both sides of a federated run share: the result record, the client split, test accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class FedResult:
    accuracy: float
    correct: np.ndarray  # (n_test,) 0/1 per test item, for a CI
    epsilon: float | None  # per-client DP epsilon (DP-SGD only)
    seconds: float
    history: list[float]  # test accuracy every eval_every rounds, and at the end


def split_clients(n_items: int, clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """IID shards: a seeded permutation of the item indices cut into ``clients`` near-equal parts."""
    if clients < 1 or clients > n_items:
        raise ValueError(f"cannot split {n_items} items among {clients} clients")
    return [np.sort(part) for part in np.array_split(rng.permutation(n_items), clients)]


def test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(y), 500)])
    return (pred == y).numpy().astype(float)
