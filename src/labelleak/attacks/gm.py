"""Gradients matching (DLG, Zhu et al. NeurIPS 2019): the one implementation every GM attack uses.

The attacker optimises dummy variables (inputs, context vectors, soft labels, ...) so that the
gradient they produce matches the observed one. Selection between restarts uses only
attacker-side quantities (the final gradient distance), never the ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


def gradient_distance(grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over parameter tensors of the squared Euclidean distance (DLG's objective)."""
    if len(grads) != len(target):
        raise ValueError(f"{len(grads)} gradients for {len(target)} target tensors")
    return sum(((g - t) ** 2).sum() for g, t in zip(grads, target))


@dataclass
class GMResult:
    """The matched variables (detached), the final distance, the steps taken and the decoded answer."""

    variables: list[torch.Tensor]
    distance: float
    steps: int
    decoded: Any = None
    history: list[float] = field(default_factory=list)


def match_gradients(
    grad_fn: Callable[[], Sequence[torch.Tensor]],
    variables: list[torch.Tensor],
    target: Sequence[torch.Tensor],
    *,
    steps: int,
    lr: float,
    halve_every: int | None = None,
    min_lr: float = 0.0,
    penalty: Callable[[], torch.Tensor] | None = None,
    penalty_weight: float = 1.0,
    decode: Callable[[], Any] | None = None,
    patience: int | None = None,
    log_every: int = 0,
    logger: Callable[[str], None] | None = None,
) -> GMResult:
    """Minimise ``||grad_fn() - target||^2 + penalty_weight * penalty()`` over ``variables`` with Adam.

    ``grad_fn`` must build its gradients with ``create_graph=True`` so the distance is
    differentiable in the variables. The learning rate halves every ``halve_every`` steps down to
    ``min_lr``. With ``decode`` and ``patience``, stops once the decoded answer (e.g. the argmax
    transcript) has not changed for ``patience`` steps (the RLG paper's stopping rule).
    """
    for v in variables:
        v.requires_grad_(True)
    opt = torch.optim.Adam(variables, lr=lr)
    last, unchanged, history = None, 0, []
    step = 0
    for step in range(1, steps + 1):
        if halve_every and step > 1 and (step - 1) % halve_every == 0:
            for group in opt.param_groups:
                group["lr"] = max(min_lr, group["lr"] / 2)
        opt.zero_grad(set_to_none=True)
        loss = gradient_distance(grad_fn(), target)
        if penalty is not None:
            loss = loss + penalty_weight * penalty()
        loss.backward(inputs=variables)  # only the variables: no second-order grads into the model
        opt.step()
        history.append(float(loss.detach()))
        if logger and log_every and step % log_every == 0:
            logger(f"gm step {step}/{steps} objective {history[-1]:.4g}")
        if decode is not None and patience:
            now = decode()
            unchanged = unchanged + 1 if now == last else 0
            last = now
            if unchanged >= patience:
                break
    with torch.enable_grad():
        final = float(gradient_distance(grad_fn(), target).detach())
    return GMResult([v.detach().clone() for v in variables], final, step, decode() if decode else None, history)


def best_of(runs: Sequence[GMResult]) -> GMResult:
    """The run with the lowest final gradient distance (an attacker-side choice)."""
    if not runs:
        raise ValueError("best_of needs at least one run")
    return min(runs, key=lambda r: r.distance)
