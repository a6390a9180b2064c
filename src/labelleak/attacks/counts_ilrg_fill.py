"""iLRG's counts of the samples ``rlg_counts`` did not find, on the part of the update they leave unexplained.

An unproven answer still gives K N counts: the samples found, plus iLRG (real-valued, then
rounded and corrected to sum to the number missing) on the residual of their simulation. Kept
apart so that the exact method and its fallback are not mixed up.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.counts_model import Reconstruction, simulate
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation


def ilrg_estimate(obs: Observation, n: int) -> np.ndarray:
    """iLRG's real-valued counts (C,): the pseudoinverse solution of :func:`labelleak.attacks.ilrg.solve_counts`
    before it is rounded (the same system: class-wise probabilities, sum of the counts = n)."""
    from labelleak.attacks.ilrg import class_probabilities

    probs = class_probabilities(obs)
    C = probs.shape[0]
    A = np.vstack([probs.T - np.eye(C), np.ones((1, C))])
    v = np.concatenate([obs.batch_size * np.asarray(obs.db, dtype=np.float64), [n]])
    with np.errstate(over="ignore", invalid="ignore"):
        k = np.linalg.pinv(A) @ v
    if not np.all(np.isfinite(k)):
        raise NotApplicable("rlg_counts: iLRG's counts of the samples not found are not finite")
    return k


def sum_to_n(estimate: np.ndarray, n: int) -> np.ndarray:
    """iLRG's integer counts (negatives 0, rounded, above n 0) corrected to sum to n, as the reference
    code's ``mod_res`` means to: a shortfall of m adds one to the m classes rounded down the most, an
    excess of m takes one from the m counted classes rounded up the most (another pass where m is more
    than the classes). The reference slices ``inds[:num_mod]`` with a negative ``num_mod`` on a
    shortfall, which adds one to all classes but m."""
    est = np.asarray(estimate, dtype=np.float64)
    k = np.rint(np.maximum(est, 0))
    dropped = k > n  # iLRG's "no count at all": not a class to add to either
    k[dropped] = 0
    kept = np.flatnonzero(~dropped)
    m = int(k.sum()) - int(n)
    while m != 0:  # one unit per class a pass (the reference's single pass where |m| <= the classes)
        err = k - est  # > 0: rounded up
        cand = kept if m < 0 else np.flatnonzero(k > 0)
        if cand.size == 0:
            break
        if m < 0:
            k[cand[np.argsort(err[cand], kind="stable")[:-m]]] += 1
        else:
            k[cand[np.argsort(-err[cand], kind="stable")[:m]]] -= 1
        m = int(k.sum()) - int(n)
    return k.astype(np.int64)


def fill_missing(obs: Observation, recon: Reconstruction, missing: int) -> dict[int, int]:
    """iLRG's counts of the samples not found, on the part of the update they leave unexplained,
    corrected to sum to the number missing (:func:`sum_to_n`)."""
    N, K = int(obs.batch_size), int(obs.steps or 1)
    mW, mb = simulate(obs.W, obs.b, recon.features, recon.labels, recon.steps, N, K, recon.lr or 0.0)
    rest = Observation(dW=np.asarray(obs.dW, dtype=np.float64) - mW, db=np.asarray(obs.db, dtype=np.float64) - mb,
                       W=obs.W, b=obs.b, batch_size=N, steps=K)
    try:
        k = sum_to_n(ilrg_estimate(rest, missing), missing)
    except NotApplicable:
        return {}
    return {int(c): int(k[c]) for c in np.flatnonzero(k > 0)}
