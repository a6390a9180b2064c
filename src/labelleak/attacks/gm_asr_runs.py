"""What every gradients-matching run on an ASR decoder shares: its options, start, problem and result.

The batched reconstruction (:mod:`labelleak.attacks.gm_asr_batched`) and the sequential reference
(:mod:`labelleak.attacks.gm_asr_sequential`) must start from the same seeded variables, match the
same normalised target and report their runs alike (so that the benchmark compares like with
like): those pieces are here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelleak.attacks.gm_asr_objective import EOS, _target
from labelleak.errors import NotApplicable

OPTIMIZERS = ("adam", "sgd")
#: Options of :func:`~labelleak.attacks.gm_asr_batched.reconstruct` the attacks pass through beyond the paper's.
EXTRA_OPTIONS = ("optimizer", "schedule", "momentum", "tol", "plateau", "plateau_factor", "batch_runs",
                 "context_scale", "context_subspace", "match", "free_cotangents")
MATCHES = ("decoder", "projection")
SCHEDULES = ("halving", "cosine", "constant")

#: Paper values (sec. 4.2). ``max_steps`` is a cap the paper does not state.
PAPER_DEFAULTS = dict(lr=0.05, halve_every=4000, min_lr=0.005, patience=2000, max_steps=100_000, reg_weight=1.0)


@dataclass(frozen=True)
class Run:
    """One reconstruction: decoded piece ids (without </s>), final gradient distance, steps taken."""

    transcript: list[int]
    distance: float  # squared distance to the observed decoder update (gm.gradient_distance)
    relative_distance: float  # the same divided by the observed update's squared norm
    steps: int
    history: list[float] = field(default_factory=list)  # relative distance at each step (4 digits)
    stopped: str = ""  # why the run ended: tol, plateau, patience (transcript unchanged) or max_steps


def run_seed(seed: int, run: int) -> int:
    """The torch seed of run ``run`` under base seed ``seed`` (derived from the pair, not seed + run)."""
    return int(np.random.SeedSequence([int(seed), int(run)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def decode_rows(P, columns: Sequence[int] | None = None) -> list[int]:
    """Argmax piece id of each row of ``P`` (column k is piece ``columns[k]``), cut at the first </s>."""
    idx = P.argmax(dim=1).tolist()
    ids = [int(columns[k]) for k in idx] if columns is not None else [int(k) for k in idx]
    return ids[: ids.index(EOS)] if EOS in ids else ids


def initial_variables(S: int, K: int, context_dim: int, seed: int, run: int, context_scale: float):
    """Run ``run``'s start (the reference code's): small random contexts and random one-hot label rows."""
    import torch

    gen = torch.Generator().manual_seed(run_seed(seed, run))
    A = torch.randn(S, context_dim, generator=gen) * context_scale
    P = torch.zeros(S, K)
    P[torch.arange(S), torch.randint(0, K, (S,), generator=gen)] = 1.0
    return A, P


@dataclass(frozen=True)
class Problem:
    """The observed decoder update as both reconstructions match it: divided by its norm (``scale``,
    so that the regulariser's weight means the same for every model), and the label columns."""

    params: list  # model.decoder_parameters() in order
    target: list  # the observed update in that order, divided by scale
    norm2: float  # the observed update's squared norm
    scale: float  # norm2 ** 0.5
    device: Any
    columns: list[int] | None  # the bag of words (sorted piece ids), None: the whole vocabulary
    num_columns: int  # K: the columns of the smooth labels
    vocab_size: int  # V


def problem(model, decoder_update: Mapping[str, np.ndarray], bow: Sequence[int] | None) -> Problem:
    """The :class:`Problem` of ``model``'s decoder update (NotApplicable when it lacks a tensor or is zero)."""
    E = model.embedding.weight
    device, V = E.device, E.shape[0]
    params, target = _target(model, decoder_update, device)
    norm2 = float(sum((t.double() ** 2).sum() for t in target))
    if not norm2 > 0:
        raise NotApplicable("the decoder update is zero")
    scale = norm2 ** 0.5
    columns = None if bow is None else sorted({int(c) for c in bow})
    K = V if columns is None else len(columns)
    return Problem(params, [t / scale for t in target], norm2, scale, device, columns, K, V)


def rounded(distance: float) -> float:
    """A distance as the history keeps it (4 significant digits)."""
    return float(f"{distance:.4g}")


def finished(transcript: list[int], relative: float, norm2: float, steps: int, history: list[float],
             stopped: str) -> Run:
    """The :class:`Run` of a relative distance (the squared distance scaled back by ``norm2``);
    a run that no rule stopped ran to ``max_steps``."""
    return Run(transcript, relative * norm2, relative, steps, history, stopped or "max_steps")
