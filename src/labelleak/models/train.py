"""Train a model on a dataset and save checkpoints at given steps (the paper's training stages)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.io import atomic_path

log = logging.getLogger(__name__)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **info) -> None:
    """Atomically save ``{"state_dict": ..., **info}``."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"state_dict": model.state_dict(), **info}, tmp)


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``; returns its info."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


@torch.no_grad()
def softmax_stats(model: nn.Module, dataset, *, n: int = 256, device: torch.device | None = None) -> dict[str, float]:
    """How peaked the model is on the first ``n`` held-out items: accuracy, mean max / true-class softmax."""
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    idx = np.arange(min(n, len(dataset)))
    x = dataset.images(idx).to(device, memory_format=torch.channels_last)
    y = torch.as_tensor(dataset.labels[idx], device=device)
    p = F.softmax(model(x), dim=1)
    model.train(was_training)
    return {"accuracy": float((p.argmax(1) == y).float().mean()), "max_softmax": float(p.max(1).values.mean()),
            "true_softmax": float(p[torch.arange(len(y)), y].mean())}


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float):
    factories = {
        "sgd": lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0),
        "adam": lambda p: torch.optim.Adam(p, lr=lr, weight_decay=weight_decay),
    }
    return factories[name](model.parameters())


def batch_order(num_items: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Index batches from a seeded permutation, epoch after epoch (a short last batch is skipped)."""
    if batch_size > num_items:
        raise ValueError(f"batch size {batch_size} > {num_items} training items")
    while True:
        order = rng.permutation(num_items)
        for pos in range(0, num_items - batch_size + 1, batch_size):
            yield order[pos:pos + batch_size]


def lr_factor(step: int, total: int, warmup: int | None = None) -> float:
    """Linear warm-up over ``warmup`` steps (default: the first 5%), then cosine decay to 0 at ``total``."""
    warmup = max(1, total // 20) if warmup is None else max(1, warmup)
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def train(
    model: nn.Module,
    dataset,
    *,
    checkpoint_steps: list[int],
    on_checkpoint: Callable[[int, nn.Module], None],
    batch_size: int,
    lr: float,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | None = None,
    log_every: int = 10,
) -> None:
    """Train for max(checkpoint_steps) steps, calling ``on_checkpoint`` at each.

    Learning rate: linear warm-up over the first 5% of the steps, then cosine decay to zero.

    Batches are drawn from a seeded permutation of the training items, epoch after epoch.
    """
    device = device or torch.device("cpu")
    steps = sorted(set(checkpoint_steps))
    total = steps[-1]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.to(device, memory_format=torch.channels_last)  # 2.5x faster depthwise convs on CPU
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total))
    batches = batch_order(len(dataset), batch_size, rng)
    if 0 in steps:
        on_checkpoint(0, model)
    start = time.perf_counter()
    for step in range(1, total + 1):
        idx = next(batches)
        x = dataset.images(idx).to(device, memory_format=torch.channels_last)
        y = torch.as_tensor(dataset.labels[idx], device=device)
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == total:
            acc = (logits.argmax(1) == y).float().mean().item()
            elapsed = time.perf_counter() - start
            log.info("step %d/%d  loss %.4f  batch acc %.3f  %.1fs elapsed, ~%.0fs left",
                     step, total, loss.item(), acc, elapsed, elapsed / step * (total - step))
        if step in steps:
            on_checkpoint(step, model)
    model.eval()
