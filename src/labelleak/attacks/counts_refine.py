"""The all-steps refinement of ``rlg_counts``, for when the steps one by one leave samples out.

When a step's weights hardly change (a trained head), a later step's sample fits an earlier step
nearly as well and the peeling (:mod:`labelleak.attacks.counts_peel`) stalls; here every candidate
goes to the step it fits best, the weights come from the current samples, and the exact residual of
the K-step simulation is searched for what is missing.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.counts_lm_search import dedupe, seeded_starts, solve
from labelleak.attacks.counts_model import simulate, step_gradient
from labelleak.attacks.counts_space import Space, rank_drop, sample_tol
from labelleak.attacks.counts_tolerances import (
    IDLE_ROUNDS,
    LM_ITERS,
    MAX_ACCEPT_TOL,
    PROVEN_TOL,
    RANK_DROP_TOL,
    REFINE_POLISH_ITERS,
    REFINE_SEARCH_TOL,
)


def _step_weights(W0, b0, atoms, N, K, lr):
    """[(W_k, b_k)] for k < K from the samples (h, y, k) found so far (a step's missing ones left out)."""
    out = [(W0, b0)]
    d, C = W0.shape
    for k in range(K - 1):
        H = np.array([h for h, _, j in atoms if j == k]).reshape(-1, d)
        y = np.array([c for _, c, j in atoms if j == k], dtype=np.int64)
        gW, gb = step_gradient(*out[-1], H, y, N, C)
        out.append((out[-1][0] - lr * gW, out[-1][1] - lr * gb))
    return out


def _polish_all(full, Ws, steps, cand, N, only=None):
    """(residuals (n, K), features (n, K, d)) of the candidates (those in ``only``, default all)
    polished at the weights of ``steps`` (inf where a candidate polishes to no sample: residual above
    MAX_ACCEPT_TOL or no rank drop)."""
    K, d = len(Ws), Ws[0][0].shape[0]
    res = np.full((len(cand), K), np.inf)
    feat = np.zeros((len(cand), K, d))
    rows = np.arange(len(cand)) if only is None else np.asarray(sorted(only), dtype=np.int64)
    if rows.size == 0:
        return res, feat
    ys = np.array([cand[i][0] for i in rows], dtype=np.int64)
    pts = np.array([full.U.T @ cand[i][1] for i in rows])
    for k in steps:
        sol, r = solve(full, *Ws[k], None, pts, ys, REFINE_POLISH_ITERS)
        for j, i in enumerate(rows):
            if np.isfinite(r[j]) and r[j] < MAX_ACCEPT_TOL and \
                    abs(rank_drop(full, sol[j], *Ws[k], ys[j], N) - 1.0) <= RANK_DROP_TOL:
                res[i, k], feat[i, k] = r[j], full.U @ sol[j]
    return res, feat


def refine(dW, db, W0, b0, atoms, pool, classes, N, K, lr, full, floor, gen, starts, iters):
    """All steps at once, when the steps one by one leave samples out: every candidate (samples found,
    near misses, new finds) is polished at every step's weights (from the current samples) and goes
    to the step it fits best; steps are filled in order, within the sample tolerance while every
    earlier step is complete (its weights are then exact), the best fits otherwise; then the exact
    residual of the K-step simulation is searched for what is missing, and so on. As the weights of
    the steps converge, what their errors leave in the residual shrinks and the small samples show."""
    d = W0.shape[0]
    cand = [(c, h) for h, c, _ in atoms] + list(pool)
    it, best_state, stale = 0, (len(atoms), np.inf), 0
    for it in range(1, iters + 1):  # noqa: B007  (the iterations run are reported)
        keep = []
        for c, h in cand:  # two candidates of one sample count once
            if not any(c == c2 and np.linalg.norm(h - h2) <= 1e-3 * np.linalg.norm(h) for c2, h2 in keep):
                keep.append((c, h))
        cand = keep
        res_old, feat_old = _polish_all(full, _step_weights(W0, b0, atoms, N, K, lr), range(K), cand, N)
        best = np.argmin(res_old, axis=1) if cand else np.zeros(0, dtype=np.int64)
        new_atoms, exact, taken = [], True, set()
        for k in range(K):
            Ws = _step_weights(W0, b0, new_atoms, N, K, lr)
            if k == 0:
                res_k, feat_k = res_old[:, 0], feat_old[:, 0]
            else:  # this step's weights from this pass's earlier steps: polish its candidates again
                only = [i for i in range(len(cand)) if i not in taken and np.isfinite(res_old[i, k])
                        and (exact or best[i] == k)]
                r, f = _polish_all(full, Ws, [k], cand, N, only)
                res_k, feat_k = r[:, k], f[:, k]
            order = [i for i in np.argsort(res_k, kind="stable") if np.isfinite(res_k[i]) and i not in taken
                     and (exact or best[i] == k)]
            count = 0
            for i in order:
                if count >= N:
                    break
                h = feat_k[i]
                if exact and res_k[i] > sample_tol(full, h, *Ws[k], cand[i][0], N):
                    continue
                if any(c == cand[i][0] and j == k and np.linalg.norm(h - h2) <= 1e-3 * np.linalg.norm(h)
                       for h2, c, j in new_atoms):
                    continue
                taken.add(i)
                count += 1
                new_atoms.append((h, int(cand[i][0]), k))
            exact = exact and count == N
        atoms = new_atoms
        Ws = _step_weights(W0, b0, atoms, N, K, lr)
        mW, mb = simulate(W0, b0, np.array([h for h, _, _ in atoms]).reshape(-1, d),
                          np.array([c for _, c, _ in atoms], dtype=np.int64),
                          np.array([k for _, _, k in atoms], dtype=np.int64), N, K, lr)
        R_W, R_b = dW - mW, db - mb
        per_step = np.bincount(np.array([k for _, _, k in atoms], dtype=np.int64), minlength=K)
        rel = float(np.linalg.norm(R_W) / np.linalg.norm(dW))
        if len(atoms) == N * K and rel <= PROVEN_TOL:
            break
        if len(atoms) > best_state[0] or rel < 0.9 * best_state[1]:
            best_state, stale = (len(atoms), rel), 0
        else:
            stale += 1
            if stale >= IDLE_ROUNDS:
                break  # no more samples and no better fit: the search keeps missing what is left
        space = Space(R_W, R_b, floor, N * K - len(atoms))
        found = []
        if space.S:
            avoid = [(c, h) for h, c, _ in atoms]
            for k in [j for j in range(K) if per_step[j] < N]:
                pts, ys = seeded_starts(space, R_W, R_b, Ws[k][0], classes, gen, starts)
                sol, r = solve(space, *Ws[k], None, pts, ys, LM_ITERS, avoid=avoid)
                near = np.flatnonzero(np.isfinite(r) & (r < REFINE_SEARCH_TOL))
                near = near[dedupe(sol[near], ys[near])]
                found += [(int(ys[i]), space.U @ sol[i]) for i in near]
        cand = [(c, h) for h, c, _ in atoms] + [cand[i] for i in range(len(cand)) if i not in taken] + found
    return atoms, it
