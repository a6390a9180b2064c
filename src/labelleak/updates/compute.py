"""Compute the projection-layer update a client would send, by autograd on the full model.

One step on N samples: the gradient of the mean cross-entropy, dW = H^T G / N (paper eq. 2).
K local steps of plain SGD with learning rate lr on the whole model: (W0 - WK) / lr, which is the
sum of the K step gradients (each taken at the weights of its step), i.e. H^T G over all K*N samples.
The model passed in is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ProjectionUpdate:
    """The projection layer's update in the file's orientation (d, C), plus its weights before it."""

    dW: np.ndarray
    db: np.ndarray
    W: np.ndarray
    b: np.ndarray


def set_bn_mode(model: nn.Module, bn_mode: str) -> None:
    """Train mode everywhere except BatchNorm, which follows ``bn_mode`` (eval = frozen statistics)."""
    model.train()
    if bn_mode == "eval":
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _mean_loss_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_size: int | None) -> None:
    """Accumulate grads of the mean CE over the batch, in chunks when that does not change the result."""
    n = len(y)
    chunks = [slice(0, n)] if not chunk_size else [slice(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]
    for sl in chunks:
        logits = model(x[sl])
        loss = F.cross_entropy(logits, y[sl], reduction="sum") / n
        loss.backward()


def projection_update(
    model: nn.Module,
    steps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float = 0.1,
    bn_mode: str = "eval",
    chunk_size: int | None = None,
) -> ProjectionUpdate:
    """The update of ``model.head`` after len(steps) local SGD steps (one step: the gradient).

    ``chunk_size`` splits a step's forward pass to save memory; it is ignored when BatchNorm uses
    batch statistics (bn_mode="train"), where splitting would change the update.
    """
    if not steps:
        raise ValueError("projection_update needs at least one step")
    if bn_mode == "train":
        chunk_size = None
    head: nn.Linear = model.head
    W0 = head.weight.detach().clone()
    b0 = head.bias.detach().clone()
    local = model if len(steps) == 1 else copy.deepcopy(model)
    set_bn_mode(local, bn_mode)
    params = [p for p in local.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    if len(steps) == 1:
        x, y = steps[0]
        _mean_loss_backward(local, x, y, chunk_size)
        dW = local.head.weight.grad.detach().clone()
        db = local.head.bias.grad.detach().clone()
        for p in params:
            p.grad = None
    else:
        with torch.enable_grad():
            for x, y in steps:
                _mean_loss_backward(local, x, y, chunk_size)
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p -= lr * p.grad
                            p.grad = None
        dW = (W0 - local.head.weight.detach()) / lr
        db = (b0 - local.head.bias.detach()) / lr
    model.eval()
    as_np = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return ProjectionUpdate(dW=as_np(dW.T), db=as_np(db), W=as_np(W0.T), b=as_np(b0))
