"""The per-step peeling of ``rlg_counts``: find one step's samples in what is left of the update, subtract them.

The search of one step, round after round (search the residual's spaces, polish in the whole
update's, accept, subtract, check the gap the samples left), with the near misses kept for the
refinement (:mod:`labelleak.attacks.counts_refine`).
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.counts_lm_search import dedupe, seeded_starts, solve
from labelleak.attacks.counts_model import step_gradient
from labelleak.attacks.counts_space import Space, moved, rank_drop, sample_tol
from labelleak.attacks.counts_tolerances import (
    IDLE_ROUNDS,
    LM_ITERS,
    MAX_ACCEPT_TOL,
    MAX_BANNED,
    MAX_NOISE_RATIO,
    POLISH_ITERS,
    RANK_DROP_TOL,
    ROUNDS,
    SEARCH_TOL,
    STARTS,
    STEP_CHECK_RATIO,
)


def peel_step(R_W, R_b, W, b, classes, N, need, floor, cap, gen, full: Space, pool, *, prev=None,
              starts=STARTS, rounds=ROUNDS):
    """Find ``need`` samples of one step (weights W, b) in the residual (R_W, R_b), subtracting them.

    Each round searches the residual's spaces (where the samples found are no solutions any more),
    then polishes what it finds in ``full``, the spaces of the whole update (where every sample is an
    exact solution at its step's weights: nothing inexact accumulates from round to round), and keeps
    the polished points that are samples of the residual (tolerance, rank drop). A point that
    polishes to a near solution only (a later step's sample, when the weights hardly change) goes to
    ``pool``: it is deflated in the next searches and is a start of the refinement. ``prev`` =
    (dW_prev, db_prev): the learning rate is unknown and W, b are the weights before the previous
    step, the step's weights W - lr dW_prev (lr is one more unknown of every sample). Returns
    (features, labels, lr or None, rounds used, pool); R_W, R_b are updated in place.
    """
    C = W.shape[1]
    feats, labs, lrs, resid, grads = [], [], [], [], []
    banned: list[tuple[int, np.ndarray]] = []
    weights = (lambda lr_i: (W, b)) if prev is None else (lambda lr_i: (W - lr_i * prev[0], b - lr_i * prev[1]))

    def lr_guess(n):
        return np.exp(gen.uniform(np.log(1e-3), np.log(1.0), size=(n, 1)))

    def take(sol, res, ys, space):
        """Keep the samples of this step among polished points; return the near misses."""
        hs = [full.U @ sol[i, : full.S] for i in range(len(ys))]
        tols = np.array([sample_tol(full, hs[i], *weights(float(sol[i, -1])), ys[i], N) if np.isfinite(res[i])
                         else 0.0 for i in range(len(ys))])
        good = np.isfinite(res) & (res <= tols)
        near = np.flatnonzero(np.isfinite(res) & ~good & (res < MAX_ACCEPT_TOL))
        missed = [(int(ys[i]), hs[i]) for i in near[dedupe(sol[near], ys[near])]]
        ok = [i for i in np.flatnonzero(good) if not any(
            c == ys[i] and np.linalg.norm(hs[i] - h) <= 1e-3 * np.linalg.norm(h) for c, h in banned)]
        if not ok:
            return missed
        ok = np.array(ok)[np.argsort(res[ok], kind="stable")]
        keep = ok[dedupe(sol[ok], ys[ok])]
        # rank drop: a sample (h, g) of the residual has g^T R^+ h = N (a sample found before, or a point
        # far out with a vanishing gradient, has ~0 there)
        back = moved(sol[keep], full, space, False)
        drop = np.array([rank_drop(space, x, *weights(float(sol[i, -1])), ys[i], N) for x, i in zip(back, keep)])
        keep = keep[np.abs(drop - 1.0) <= RANK_DROP_TOL]
        if prev is not None and keep.size:  # one learning rate for all: the median of the samples' estimates
            lr = float(np.median(sol[keep, -1]))
            keep = keep[np.abs(sol[keep, -1] - lr) <= 1e-6 * abs(lr)]
        for i in keep[: need - len(labs)]:
            lr_i = float(sol[i, -1])
            if prev is not None:
                lrs.append(lr_i)
            gW, gb = step_gradient(*weights(lr_i), hs[i][None], np.array([ys[i]]), N, C)
            R_W[...] -= gW
            R_b[...] -= gb
            feats.append(hs[i])
            labs.append(int(ys[i]))
            resid.append(float(res[i] / max(tols[i], 1e-300)))
            grads.append((gW, gb))
        return missed

    idle, used = 0, 0
    for used in range(1, rounds + 1):  # noqa: B007  (the rounds used are returned)
        if idle >= IDLE_ROUNDS:
            break  # the starts keep missing what is left
        idle += 1
        before = len(labs)
        left = cap - len(labs)
        space = Space(R_W, R_b, floor, left) if left > 0 else None  # one direction per sample left, at most
        gap = space is None or space.S == 0 or space.noise_ratio <= STEP_CHECK_RATIO
        while not gap and labs and len(banned) < MAX_BANNED:
            # what the samples taken leave must have a gap after the samples left (the exact residual of a
            # right subset does): one sample taken is not of this step (a later step's, when the weights
            # hardly change, or an inexact one): drop the worst fit, ban it, and look again
            worst = int(np.argmax(resid))
            banned.append((labs[worst], feats[worst]))
            pool.append((labs[worst], feats[worst]))
            R_W += grads[worst][0]
            R_b += grads[worst][1]
            for lst in (feats, labs, resid, grads):
                del lst[worst]
            if lrs:
                del lrs[worst]
            space = Space(R_W, R_b, floor, cap - len(labs))
            gap = space.S == 0 or space.noise_ratio <= STEP_CHECK_RATIO
        if len(labs) >= need or space is None or space.S == 0 or space.noise_ratio > MAX_NOISE_RATIO:
            break  # done; or nothing left, or no gap after the samples left: their equations are not resolved
        pts, ys = seeded_starts(space, R_W, R_b, W, classes, gen, starts)
        if prev is not None:
            pts = np.hstack([pts, lr_guess(len(pts))])
        sol, res = solve(space, W, b, prev, pts, ys, LM_ITERS, avoid=pool)
        near = np.flatnonzero(np.isfinite(res) & (res < SEARCH_TOL))
        if near.size == 0:
            continue
        near = near[dedupe(sol[near], ys[near])]
        sol, res = solve(full, W, b, prev, moved(sol[near], space, full, prev is not None), ys[near],
                         POLISH_ITERS, avoid=pool)
        for c, h in take(sol, res, ys[near], space):
            if not any(c == c2 and np.linalg.norm(h - h2) <= 1e-3 * np.linalg.norm(h) for c2, h2 in pool):
                pool.append((c, h))
        if len(labs) > before:
            idle = 0
    lr = float(np.median(lrs)) if lrs else None
    return feats, labs, lr, used, pool
