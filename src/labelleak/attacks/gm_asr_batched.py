"""The batched gradients-matching reconstruction on an ASR decoder: all R runs in one forward/backward a step.

Every run of an utterance goes through one call of the closed-form, run-batched distance
(:class:`~labelleak.attacks.gm_asr_objective._Batch`) a step, with a per-element optimiser (so per
run), a learning-rate schedule and per-run early stopping (attacker-side: distance, plateau,
unchanged transcript). This is the reconstruction the attacks run; the former run-after-run one is
:mod:`labelleak.attacks.gm_asr_sequential`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from labelleak.attacks.gm_asr_objective import _Batch
from labelleak.attacks.gm_asr_runs import (
    MATCHES,
    OPTIMIZERS,
    PAPER_DEFAULTS,
    SCHEDULES,
    Run,
    decode_rows,
    finished,
    initial_variables,
    problem,
    rounded,
)
from labelleak.errors import NotApplicable


def _lr_at(step: int, *, lr: float, schedule: str, halve_every: int | None, min_lr: float, max_steps: int) -> float:
    """Learning rate of step ``step`` (1-based): halving every ``halve_every`` steps, cosine, or constant."""
    if schedule == "halving":
        k = (step - 1) // halve_every if halve_every else 0
        return lr if k == 0 else max(min_lr, lr / 2 ** k)  # as match_gradients
    if schedule == "cosine":
        frac = (step - 1) / max(1, max_steps - 1)
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
    if schedule == "constant":
        return lr
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def _descend(vars_, grads, state, state2, idx, *, optimizer: str, step: int, rate: float, momentum: float) -> None:
    """One optimiser step, in place, of the runs ``idx``: torch's Adam (betas .9/.999) or heavy-ball SGD
    (torch.optim.SGD's buffer), per element (hence per run). Call it under ``torch.no_grad()``."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    for var, g, m, v in zip(vars_, grads, state, state2):
        if optimizer == "adam":
            mi = m[idx].mul_(b1).add_(g, alpha=1 - b1)
            vi = v[idx].mul_(b2).addcmul_(g, g, value=1 - b2)
            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
            denom = (vi.sqrt() / math.sqrt(bc2)).add_(eps)
            var[idx] = var[idx].addcdiv(mi, denom, value=-rate / bc1)
            m[idx], v[idx] = mi, vi
        else:  # sgd with heavy-ball momentum (torch.optim.SGD's buffer)
            mi = g.clone() if step == 1 else m[idx].mul_(momentum).add_(g)
            var[idx] = var[idx] - rate * mi
            m[idx] = mi


class _Book:
    """Per-run bookkeeping of :func:`reconstruct`: each run's distance history, steps, best objective
    and last transcript, and the runs still active under the stop rules (tol, plateau, patience)."""

    def __init__(self, runs: int, *, tol, plateau, plateau_factor: float, patience, columns):
        self.tol, self.plateau, self.plateau_factor, self.patience, self.columns = \
            tol, plateau, plateau_factor, patience, columns
        self.histories = [[] for _ in range(runs)]
        self.steps = [0] * runs
        self.stop = [""] * runs
        self.best = [math.inf] * runs
        self.since_best = [0] * runs
        self.last = [None] * runs
        self.unchanged = [0] * runs
        self.active = list(range(runs))

    def record(self, r: int, step: int, obj: float, dist: float) -> None:
        """Run ``r``'s objective and relative distance at ``step``."""
        self.histories[r].append(rounded(dist))
        self.steps[r] = step
        if self.best[r] == math.inf or obj < self.best[r] * self.plateau_factor:
            self.best[r], self.since_best[r] = obj, 0
        else:
            self.since_best[r] += 1

    def check(self, P) -> None:
        """Retire the runs a stop rule ends (labels ``P`` (R, S, K) give the transcripts)."""
        for r in list(self.active):
            if self.tol is not None and self.histories[r][-1] < self.tol:
                self.stop[r] = "tol"
            elif self.plateau and self.since_best[r] >= self.plateau:
                self.stop[r] = "plateau"
            if self.patience:
                now = decode_rows(P[r], self.columns)
                self.unchanged[r] = self.unchanged[r] + 1 if now == self.last[r] else 0
                self.last[r] = now
                if self.unchanged[r] >= self.patience and not self.stop[r]:
                    self.stop[r] = "patience"
            if self.stop[r]:
                self.active.remove(r)


def reconstruct(model, decoder_update: Mapping[str, np.ndarray], num_positions: int, *,
                bow: Sequence[int] | None = None, runs: int = 1, seed: int = 0,
                lr: float = PAPER_DEFAULTS["lr"], halve_every: int | None = PAPER_DEFAULTS["halve_every"],
                min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int | None = PAPER_DEFAULTS["patience"],
                max_steps: int = PAPER_DEFAULTS["max_steps"], reg_weight: float = PAPER_DEFAULTS["reg_weight"],
                context_scale: float = 0.1, optimizer: str = "adam", schedule: str = "halving",
                momentum: float = 0.9, tol: float | None = None, plateau: int | None = None,
                plateau_factor: float = 0.99, batch_runs: int | None = None,
                context_subspace: bool = False, match: str = "decoder",
                free_cotangents: bool = False) -> list[Run]:
    """``runs`` GM reconstructions (eq. 8) of S = ``num_positions`` decoder positions, in run order.

    ``bow`` restricts the smooth labels to those piece ids (GM + BoW); ``None`` optimises over the
    whole vocabulary (the GM baseline). ``context_scale`` is the std of the initial contexts
    (attention outputs are averages of LSTM outputs, well inside (-1, 1)). Runs on the model's device.

    All runs go through one forward/backward per step (:class:`_Batch`; ``batch_runs`` caps how
    many at once, the result is the same). ``optimizer``: ``adam`` (torch's Adam, betas .9/.999)
    or ``sgd`` (heavy ball, ``momentum``), both per element, hence per run. ``schedule``:
    ``halving`` (lr halved every ``halve_every`` steps down to ``min_lr``, the paper's), ``cosine``
    (lr to ``min_lr`` over ``max_steps``) or ``constant``. A run stops, attacker-side, when its
    relative distance is below ``tol``, when its best distance has not dropped below
    ``plateau_factor`` x itself for ``plateau`` steps, or when its transcript has not changed for
    ``patience`` steps (the paper's rule); each :class:`Run` keeps its relative distance per step.
    """
    import torch

    S = int(num_positions)
    if S < 1:
        raise NotApplicable("no decoder positions to reconstruct (S = 0)")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    _lr_at(1, lr=lr, schedule=schedule, halve_every=halve_every, min_lr=min_lr, max_steps=max_steps)
    prob = problem(model, decoder_update, bow)
    device, columns, K = prob.device, prob.columns, prob.num_columns
    names = list(model.decoder_parameters())
    if columns is not None and (not columns or min(columns) < 0 or max(columns) >= prob.vocab_size):
        raise NotApplicable(f"bag of words must be non-empty piece ids in [0, {prob.vocab_size})")
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    eng = _Batch(model, dict(zip(names, prob.target)), columns, device, prob.scale,
                 projection_only=match == "projection")
    starts = [initial_variables(S, K, model.context_dim, seed, r, context_scale) for r in range(runs)]
    A = torch.stack([a for a, _ in starts]).to(device)
    P = torch.stack([p for _, p in starts]).to(device)
    basis = None
    if context_subspace:  # contexts as C @ basis: the context part of the update's row space
        dh = eng.W.shape[1] - model.context_dim
        Q, _ = torch.linalg.qr(eng.TM[: min(S, eng.TM.shape[0]), dh:].T)  # (d_A, r) orthonormal
        basis = Q.T.contiguous()  # (r, d_A)
        A = (A @ basis.T) * math.sqrt(model.context_dim / basis.shape[0])  # the same scale per context
    to_ctx = (lambda c: c) if basis is None else (lambda c: c @ basis)
    vars_ = [A, P]
    if free_cotangents and match == "decoder":  # start at 0: the surrogate's own gradient
        vars_.append(A.new_zeros(runs, S, eng.W.shape[1] - model.context_dim))
    state = [torch.zeros_like(v) for v in vars_]
    state2 = [torch.zeros_like(v) for v in vars_]
    book = _Book(runs, tol=tol, plateau=plateau, plateau_factor=plateau_factor, patience=patience, columns=columns)
    chunk = int(batch_runs) if batch_runs else runs
    with torch.enable_grad():
        for step in range(1, max_steps + 1):
            if not book.active:
                break
            rate = _lr_at(step, lr=lr, schedule=schedule, halve_every=halve_every, min_lr=min_lr,
                          max_steps=max_steps)
            active = book.active
            for c0 in range(0, len(active), chunk):
                idx = torch.tensor(active[c0:c0 + chunk], device=device)
                sub = [v[idx].requires_grad_(True) for v in vars_]
                a, p = sub[0], sub[1]
                dist = eng.distance(to_ctx(a), p, U=sub[2] if len(sub) > 2 else None)
                obj = dist + reg_weight * (p.sum(dim=2) - 1).abs().sum(dim=1)
                grads = torch.autograd.grad(obj.sum(), sub)
                with torch.no_grad():
                    _descend(vars_, grads, state, state2, idx, optimizer=optimizer, step=step, rate=rate,
                             momentum=momentum)
                objs, dists = obj.detach().tolist(), dist.detach().tolist()
                for j, r in enumerate(active[c0:c0 + chunk]):
                    book.record(r, step, objs[j], dists[j])
            book.check(P)
        final = torch.cat([eng.distance(to_ctx(A[i:i + chunk]), P[i:i + chunk], exact=True,
                                        U=vars_[2][i:i + chunk] if len(vars_) > 2 else None)
                           for i in range(0, runs, chunk)])
    return [finished(decode_rows(P[r], columns), float(final[r]), prob.norm2, book.steps[r], book.histories[r],
                     book.stop[r]) for r in range(runs)]
