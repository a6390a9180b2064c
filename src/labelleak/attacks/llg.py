"""LLG, LLG+ and LLG* (Wainakh et al., PETS 2022): label counts from dW's column sums.

With s_c the sum of dW's column c (update-file orientation) and N = batch_size * steps labels:

* every occurrence of class c adds about the same negative *impact* m to s_c, and every sample
  of another class a small positive *offset*;
* stage 1 outputs each class whose s_c < 0 once (most negative first, at most N) and adds -m to
  its s_c; stage 2 then repeatedly outputs the class with the smallest s and adds -m to *that
  class* (breaching's port decrements a stale stage-1 index instead; we do not).

LLG estimates m from the update itself: m = (sum of the negative s_c) / N * (1 + 1/C). LLG+
measures m and the offsets on the current model with the attacker's own data of each class,
LLG* with dummy inputs (no data at all): for a batch of B inputs labelled i, the column sums are
computed exactly from the softmax and feature sums (:mod:`labelleak.attacks.dummy`); the impact
is the mean over i of column i divided by B, the offset of j the mean of column j over i != j.
The update file's K-step dW is the *sum* of the step gradients, so the per-occurrence impact
needs no 1/K and the offset is subtracted K times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.dummy import column_sums, dummy_inputs, forward_stats
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

PAPER = ("Wainakh, Ventola, Müßig, Keim, Garcia Cordero, Zimmer, Grube, Kersting, Mühlhäuser, "
         "User-Level Label Leakage from Gradients in Federated Learning, PETS 2022")


def _column_sums(obs: Observation) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        s = obs.dW.astype(np.float64).sum(axis=0)
    if not np.all(np.isfinite(s)):
        raise NotApplicable("llg: dW's column sums overflow (not finite)")
    return s


def _finite_impact(impact: float, offset: np.ndarray | None = None) -> None:
    if not np.isfinite(impact) or (offset is not None and not np.all(np.isfinite(offset))):
        raise NotApplicable(f"llg: the impact per label occurrence ({impact:g}) or the offsets are not finite")


def assign(s: np.ndarray, impact: float, n: int, first: np.ndarray | None = None,
           offset: np.ndarray | None = None) -> Counter:
    """LLG's two stages on column sums ``s``: n labels, with repeats (impact m < 0)."""
    s = np.asarray(s, dtype=np.float64)
    first = np.flatnonzero(s < 0) if first is None else np.asarray(first)
    first = first[np.argsort(s[first], kind="stable")][:n]
    if offset is not None:
        s = s - offset
    s = s.copy()
    counts: Counter = Counter()
    for c in first:
        counts[int(c)] += 1
        s[c] -= impact
    for _ in range(n - len(first)):
        c = int(np.argmin(s))
        counts[c] += 1
        s[c] -= impact  # the class just selected (not a stale stage-1 index)
    return counts


def _prediction(counts: Counter, n: int, **info) -> Prediction:
    return Prediction(labels=frozenset(counts), num_labels=n, counts=dict(counts), info=info)


@register("llg", paper=PAPER, needs=("batch_size",), gives_counts=True)
def llg(obs: Observation) -> Prediction:
    """Impact from the update's own negative column sums; no model."""
    s = _column_sums(obs)
    n = obs.batch_size * (obs.steps or 1)
    neg = s[s < 0]
    if neg.size == 0:
        return _prediction(Counter(), n, impact=0.0)
    impact = float(neg.sum()) / n * (1 + 1 / obs.num_classes)
    _finite_impact(impact)
    return _prediction(assign(s, impact, n), n, impact=impact)


def estimate(stats_of_class: Callable[[int], object], num_classes: int, batch_size: int,
             repetitions: int) -> tuple[float, np.ndarray]:
    """(impact per occurrence, offset per class) from per-class batches on the current model."""
    impact, offset = 0.0, np.zeros(num_classes)
    for rep in range(repetitions):
        for i in range(num_classes):
            col = column_sums(stats_of_class(i, rep), i)
            impact += col[i]
            offset += col
            offset[i] -= col[i]
    impact /= repetitions * num_classes * batch_size
    offset /= repetitions * (num_classes - 1)
    return impact * (1 + 1 / num_classes), offset


def _llg_model(obs: Observation, stats_of_class, repetitions: int, method: str) -> Prediction:
    s = _column_sums(obs)
    n, k = obs.batch_size * (obs.steps or 1), obs.steps or 1
    impact, offset = estimate(stats_of_class, obs.num_classes, obs.batch_size, repetitions)
    _finite_impact(impact, offset)
    counts = assign(s, impact, n, first=np.flatnonzero(s < 0), offset=k * offset)
    return _prediction(counts, n, impact=impact, estimate=method)


@register("llg_plus", paper=PAPER, needs=("batch_size", "model", "aux_data"), gives_counts=True)
def llg_plus(obs: Observation, model=None, aux_data=None, repetitions: int = 10) -> Prediction:
    """Impact and offsets measured on the current model with the attacker's own data of each class.

    ``aux_data(c, n, rep)`` returns n inputs of class c (the attacker's data, not the client's).
    """
    cache: dict = {}

    def stats(i: int, rep: int):
        if (i, rep) not in cache:
            cache[(i, rep)] = forward_stats(model, aux_data(i, obs.batch_size, rep))
        return cache[(i, rep)]

    return _llg_model(obs, stats, repetitions, "aux_data")


@register("llg_star", paper=PAPER, needs=("batch_size", "model"), gives_counts=True)
def llg_star(obs: Observation, model=None, dummy: str = "random", repetitions: int = 1, seed: int = 0) -> Prediction:
    """Impact and offsets measured on the current model with dummy inputs (zero / one / random)."""
    per_rep = [forward_stats(model, dummy_inputs(model, obs.batch_size, dummy, seed + r)) for r in range(repetitions)]
    return _llg_model(obs, lambda i, rep: per_rep[rep], repetitions, f"dummy-{dummy}")
