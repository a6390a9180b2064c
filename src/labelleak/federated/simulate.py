"""Simulated federated training (FedSGD / FedAvg) with every client's update passed through a defense.

M clients hold IID shards of the training set. Each round every client starts from the global
model, takes K local SGD steps on batches of B of its own items (FedSGD: K = 1), and sends its
update over all parameters, (w_global - w_local) / lr (the update file's sign convention: one step
is the gradient). The update goes through the update-stage defense (per layer, like the attacked
projection layer); DP-SGD (a compute-stage defense) instead replaces each local gradient by its
per-sample-clipped, noised version. The server averages the defended updates and steps
w <- w - server_lr * mean. Sign-SGD sends +-1 per entry, so its server step needs a much smaller
server_lr than the gradient-scale defenses (a config choice, reported with the result).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.defenses import apply, compute_step
from labelleak.defenses.dpsgd import dp_step_gradient, epsilon


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


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(y), 500)])
    return (pred == y).numpy().astype(float)


def federated_train(model_fn: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                    y_test: torch.Tensor, *, defense: str = "none", clients: int = 4, rounds: int = 10,
                    local_steps: int = 1, batch_size: int = 32, lr: float = 0.05, server_lr: float | None = None,
                    delta: float = 1e-5, seed: int = 0, eval_every: int | None = None) -> FedResult:
    """Train ``model_fn()`` for ``rounds`` rounds; return test accuracy (and DP epsilon for DP-SGD).

    ``eval_every``: also record the test accuracy every that many rounds (default: at the end only).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(int(rng.integers(2**31)))
    model = model_fn()
    shards = split_clients(len(y), clients, rng)
    dp = compute_step(defense)
    server_lr = lr if server_lr is None else server_lr
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    history = []
    for rnd in range(1, rounds + 1):
        total = [torch.zeros_like(p) for p in model.parameters() if p.requires_grad]
        for shard in shards:
            local = model_fn()
            local.load_state_dict(model.state_dict())
            local.train()
            params = dict(local.named_parameters())
            for _ in range(local_steps):
                idx = torch.as_tensor(rng.choice(shard, size=min(batch_size, len(shard)), replace=False))
                if dp is not None:
                    grads = dp_step_gradient(local, x[idx], y[idx], *dp.values, rng=rng)
                else:
                    local.zero_grad(set_to_none=True)
                    F.cross_entropy(local(x[idx]), y[idx]).backward()
                    grads = {n: params[n].grad for n in names}
                with torch.no_grad():
                    for n in names:
                        params[n] -= lr * grads[n]
            sent = [((model.state_dict()[n] - params[n].detach()) / lr).numpy() for n in names]
            sent = apply(defense, sent, rng)
            for acc, s in zip(total, sent):
                acc += torch.from_numpy(np.asarray(s, dtype=np.float32))
        with torch.no_grad():
            for p, acc in zip((p for p in model.parameters() if p.requires_grad), total):
                p -= server_lr * acc / len(shards)
        if eval_every and rnd % eval_every == 0 and rnd < rounds:
            history.append(float(_accuracy(model, x_test, y_test).mean()))
    correct = _accuracy(model, x_test, y_test)
    history.append(float(correct.mean()))
    eps = None
    if dp is not None:
        rate = min(1.0, batch_size / min(len(s) for s in shards))
        eps = epsilon(dp.values[1], rate, rounds * local_steps, delta)
    return FedResult(float(correct.mean()), correct, eps, time.perf_counter() - start, history)
