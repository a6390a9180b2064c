"""RLG, Revealing Labels from Gradients (Dang et al. 2021, Algorithm 1): exact, certified, fast.

**The rule, once.** The update of the projection layer is ``dW = H^T G`` (d, C) plus noise. Every
row of G has exactly one negative entry, at its label. With S at the signal/noise gap of dW's
spectrum (:mod:`.spectrum`; given S is an upper bound) and ``Q`` the first S right singular
vectors (columns ``q_c``; those within the noise, ``||q_c|| <= noise / sigma_S``, zeroed), class c
is present iff LP(c) (:mod:`.lp`) finds r with ``u_c.r <= -1/2`` and ``u_j.r >= -FEAS_TOL`` for
all j != c (u = unit columns). RLG predicts exactly those classes.

Modules: :mod:`.spectrum` (rank and margin), :mod:`.lp` (LP(c), the per-class reference and column
generation), :mod:`.search` (the fast exact search), :mod:`.certificates` (evidence for every
decision and its independent check). The released code's variant is :mod:`labelleak.attacks.rlg.official`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.rlg.certificates import Certificates, Verification, verify
from labelleak.attacks.rlg.lp import separable_reference, unit_columns
from labelleak.attacks.rlg.search import search
from labelleak.attacks.rlg.spectrum import NoClearGap, Spectrum, estimate_rank, no_gap_reason, spectrum
from labelleak.errors import LabelleakError, NotApplicable
from labelleak.updates.format import Observation

__all__ = ["RLGResult", "reveal_labels", "reveal_labels_reference", "estimate_rank", "right_singular_vectors",
           "separable_reference", "unit_columns", "Certificates", "Verification", "verify", "NoClearGap", "spectrum"]


@dataclass(frozen=True)
class RLGResult:
    """Predicted label set plus how it was obtained (for diagnostics, benchmarks and certificates)."""

    labels: frozenset[int]
    num_labels: int  # S used: the gap's rank, or the given value (clipped to the rank)
    certified_absent: int  # classes decided absent without an LP
    certified_present: int  # classes with an explicit separator, no LP
    lp_classes: int  # classes decided by an LP
    lp_solves: int  # LP solves, column-generation rounds included
    fallback: bool  # no spanning set: decided by the frame search
    spectrum: dict  # the rank estimate and its margin (Spectrum.describe)
    certificates: Certificates | None = field(default=None, compare=False, repr=False)


def resolve_rank(dW: np.ndarray, S: int | None) -> tuple[int, np.ndarray, float, Spectrum]:
    """(S, Q, the norm below which a column of Q is noise, the spectrum); NotApplicable where
    RLG's assumptions fail: no clear gap (S not given), no signal, S >= min(d, C).

    A given S (the number of samples or tokens) is an upper bound: repeated labels under a peaked
    model make rank(dW) smaller, and the right singular vectors past the gap span noise. So
    S = min(given S, rank) when the gap is clear; below the rank (e.g. GradDrop adds directions),
    or with no clear gap, the given S stands, as in the paper's code (gt_k).
    """
    if S is not None and (int(S) != S or S < 1):
        raise LabelleakError(f"the number of labels S must be a positive integer, got {S}")
    d, C = dW.shape
    spec = spectrum(dW, S or 0)
    if spec.rank == 0:
        raise NotApplicable("no signal: dW is zero or within rounding noise of zero")
    if S is None:
        if spec.rank is None:
            raise NoClearGap(no_gap_reason(spec))
        S = spec.rank
        if C - 1 <= d and S >= C - 1:  # rows of G sum to zero: a full rank only bounds S from below
            raise NotApplicable(f"RLG needs S < min(d, C); rank(dW) = {S} is saturated at C - 1 = {C - 1}")
    else:
        if S >= min(d, C):
            raise NotApplicable(f"RLG needs S < min(d, C) = {min(d, C)}, got S = {S}")
        S = min(S, spec.rank if spec.rank is not None else spec.n)
    if S >= min(d, C, spec.n + 1) or (spec.rank is not None and S > spec.rank):
        raise NotApplicable(f"RLG needs S < min(d, C) = {min(d, C, spec.n)} (nonzero rows and columns), got S = {S}")
    s = spec.s
    # Wedin: noise of norm ||E|| moves the span of the first S right singular vectors by ||E|| / sigma_S
    noise = spec.noise if spec.rank is not None else spec.floor
    # with no clear gap a given S may reach past the signal into values at the noise (repeated labels): the
    # Wedin scale is then the last value before the largest drop among the first S, not s_S itself
    k = S if spec.rank is not None or S < 2 else int(np.argmax(s[:S - 1] / np.maximum(s[1:S], 1e-300))) + 1
    zero_tol = noise / float(s[k - 1]) if s[k - 1] > 0 else np.inf
    Q = spec.Vt[:S].copy()
    return S, Q, zero_tol, spec


def reveal_labels(dW: np.ndarray, S: int | None = None, max_lp_seconds: float | None = None) -> RLGResult:
    """RLG with the same answer as :func:`reveal_labels_reference`, 100x to 10000x faster, with a
    certificate for every class (``result.certificates``, checked by :func:`verify`)."""
    given = S is not None
    S, Q, zero_tol, spec = resolve_rank(np.asarray(dW), S)
    found = search(Q, zero_tol, max_lp_seconds, max_labels=None if given else S)
    return RLGResult(found.labels, S, found.certified_absent, found.certified_present, found.lp_classes,
                     found.lp_solves, found.fallback, spec.describe(), found.certificates)


def reveal_labels_reference(dW: np.ndarray, S: int | None = None) -> tuple[set[int], int]:
    """Algorithm 1 as written: one full LP per class (slow: tens of seconds at C = 1000)."""
    S, Q, _, _ = resolve_rank(np.asarray(dW), S)
    return {c for c in range(Q.shape[1]) if separable_reference(Q, c)}, S


def right_singular_vectors(dW: np.ndarray, S: int) -> np.ndarray:
    """Q (S, C) float64: the first S right singular vectors of dW, one per row."""
    return spectrum(dW, S).Vt[:S].copy()


@register(
    "rlg",
    paper="Dang et al., Revealing and Protecting Labels in Distributed Training, NeurIPS 2021 (Algorithm 1)",
    needs=(),
)
def rlg(obs: Observation, num_labels: int | None = None, max_lp_seconds: float | None = None) -> Prediction:
    """RLG: classes whose column of Q is separable from all others by a hyperplane through 0.

    ``num_labels`` is S when it is known (batch size times steps); by default, S at the gap of dW's spectrum.
    """
    result = reveal_labels(obs.dW, num_labels, max_lp_seconds)
    info = {
        "fallback": result.fallback,
        "certified_absent": result.certified_absent,
        "certified_present": result.certified_present,
        "lp_classes": result.lp_classes,
        "lp_solves": result.lp_solves,
        "rank_given": num_labels is not None,
        "spectrum": result.spectrum,
    }
    return Prediction(labels=result.labels, num_labels=result.num_labels, info=info,
                      evidence=result.certificates)
