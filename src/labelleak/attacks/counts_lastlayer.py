"""rlg_counts (ours, no paper): the exact count of every label from the projection layer alone.

**Model.** One step of mean cross-entropy over N samples with features h_i (d,) and labels y_i:
``dW = H^T G / N`` and ``db = 1^T G / N`` with ``g_i = softmax(W^T h_i + b) - e_{y_i}``. A K-step
update (the update file's convention, (W0 - WK) / lr) is the sum of K such gradients, step k on its
own N samples at the weights W_k = W_{k-1} - lr dW_{k-1}, as
:func:`labelleak.updates.compute.projection_update` makes it (a fresh batch per step; the features
of a step are free unknowns, so a body that trains along is covered). Only dW, db, W, b, N and K
(and for K > 1 the learning rate) are used; the counts are those of the samples found.

**Per-sample equations.** With S = rank(dW) = K N (distinct samples), every feature lies in the
column space of dW (h = U a, a in R^S) and every g_i in its row space: ``V_perp^T g(a, y) = 0``
(C - S equations) and ``a . beta = 1`` (db = M^T beta, M = U^T dW). For one sample that is C - S
equations in S unknowns, *decoupled from the other samples*: for S < C / 2 (:func:`max_samples`)
the solutions are isolated and the samples are among them (generically the only ones; a point far
out with a vanishing gradient is one more, which the rank-drop test ``g^T dW^+ h = N`` rejects).

**Search.** For each class of RLG's set (:func:`labelleak.attacks.rlg.reveal_labels` with S = K N; a
superset is fine), batched Levenberg-Marquardt from seeded starts (the class's column of W, iLRG's
class embedding dW_c / db_c, perturbations) finds solutions; they are polished in the spaces of the
whole update (where every sample is exact: no error accumulates), accepted within a tolerance set
by the noise of dW relative to the sample's own size, subtracted, and the search goes on in what is
left (where the samples found are no solutions any more and the small ones surface), with the
near misses deflated. Steps are found in order: step k's N samples give W_{k+1}. When a step's
weights hardly change (a trained head: a later step's sample fits an earlier step nearly as well)
the steps one by one can stall; then all steps are refined together (each candidate at its best
step, the weights from the current samples, the residual of the K-step simulation searched).

**Proof.** The samples found are simulated forward (K steps from W0, b0) and the relative residuals
``||dW_model - dW|| / ||dW||`` and ``||db_model - db|| / ||db||`` go into ``info``; the counts are
``proven`` when all K N samples are found and both residuals are at most :data:`PROVEN_TOL`. An
unproven answer says so, with the residuals, and the counts of the samples it did not find come
from iLRG on the part of the update the samples found leave unexplained (``info["filled_by_ilrg"]``).

The learning rate of a K-step update: option ``lr``, else ``meta["local_lr"]`` (the pipeline writes
it), else estimated with step 1's samples as one more unknown of each. n/a: no batch size; K N at or
above C / 2 or d; RLG gives no set. Deterministic: seeded starts, float64 torch on the CPU.

This module registers the attack and drives it (:func:`recover`); the pieces live next to it:
``counts_model`` (the K-step model, the proof's residuals), ``counts_space`` (an update's spaces and
the sample tests), ``counts_lm_search`` (the batched LM search), ``counts_peel`` (one step's samples),
``counts_refine`` (all steps at once), ``counts_ilrg_fill`` (iLRG for the samples not found) and
``counts_tolerances``.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.counts_ilrg_fill import fill_missing, ilrg_estimate, sum_to_n
from labelleak.attacks.counts_model import Reconstruction, is_proven, relative_residuals, simulate, step_gradient
from labelleak.attacks.counts_tolerances import PROVEN_TOL, REFINE_ITERS, ROUNDS, STARTS
from labelleak.attacks.rlg import reveal_labels
from labelleak.attacks.rlg.spectrum import rounding_floor
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

# the pieces tests, benchmarks and readers of the evidence use, at the attack's path
__all__ = ["PROVEN_TOL", "Reconstruction", "ilrg_estimate", "max_samples", "recover", "rlg_counts", "simulate",
           "sum_to_n"]


def max_samples(num_classes: int, num_features: int) -> int:
    """The largest K N the method takes: the per-sample system (C - S equations, S unknowns) must be
    overdetermined, S < C / 2, and the features must span an S-dimensional space, S < d."""
    return int(min((num_classes - 1) // 2, num_features - 1))


def _learning_rate(obs: Observation, lr: float | None) -> float | None:
    if lr is not None:
        return float(lr)
    meta_lr = obs.meta.get("local_lr") if isinstance(obs.meta, dict) else None
    return float(meta_lr) if isinstance(meta_lr, (int, float)) and not isinstance(meta_lr, bool) and meta_lr > 0 \
        else None


def recover(obs: Observation, lr: float | None = None, seed: int = 0, starts: int = STARTS,
            rounds: int = ROUNDS, classes=None) -> tuple[Reconstruction, dict]:
    """The samples of the update (see the module docstring) and diagnostics."""
    # torch (the batched search) loads here, not when labelleak.attacks is imported by every attack job
    from labelleak.attacks.counts_peel import peel_step
    from labelleak.attacks.counts_refine import refine
    from labelleak.attacks.counts_space import Space

    if obs.batch_size is None:
        raise NotApplicable("rlg_counts needs the batch size N")
    N, K = int(obs.batch_size), int(obs.steps or 1)
    d, C = obs.dW.shape
    total = N * K
    bound = max_samples(C, d)
    if total > bound:
        raise NotApplicable(f"rlg_counts needs K N < C / 2 and K N < d (at most {bound} samples for C = {C}, "
                            f"d = {d}); this update has K N = {total}: the per-sample system is not overdetermined")
    if classes is None:
        classes = sorted(reveal_labels(obs.dW, total).labels)
    if not classes:
        raise NotApplicable("rlg_counts: RLG gives no label set for this update")
    lr = _learning_rate(obs, lr)
    dW = np.asarray(obs.dW, dtype=np.float64)
    db = np.asarray(obs.db, dtype=np.float64)
    W0 = np.asarray(obs.W, dtype=np.float64)
    b0 = np.asarray(obs.b, dtype=np.float64)
    floor = max(rounding_floor(obs.dW), float(np.finfo(np.float64).eps) * np.linalg.norm(dW, 2) * max(d, C))
    gen = np.random.default_rng(seed)
    R_W, R_b = dW.copy(), db.copy()
    full = Space(dW, db, floor, total)
    if full.S == 0:
        raise NotApplicable("rlg_counts: dW is zero or within rounding noise of zero")
    feats, labs, stp = [], [], []
    pool: list = []
    Wk, bk = W0.copy(), b0.copy()
    W_prev = b_prev = prev = None
    used_rounds = []
    estimated = False
    for k in range(K):
        unknown_lr = k >= 1 and lr is None
        f_k, l_k, lr_k, used, pool = peel_step(R_W, R_b, W_prev if unknown_lr else Wk, b_prev if unknown_lr else bk,
                                               classes, N, N, floor, total - len(labs), gen, full, pool,
                                               prev=prev if unknown_lr else None, starts=starts, rounds=rounds)
        used_rounds.append(used)
        if unknown_lr:
            if lr_k is None:
                break
            lr, estimated = lr_k, True
            Wk, bk = W_prev - lr * prev[0], b_prev - lr * prev[1]
        feats += f_k
        labs += l_k
        stp += [k] * len(l_k)
        if len(l_k) < N or k + 1 == K:
            break
        gW, gb = step_gradient(Wk, bk, np.array(f_k), np.array(l_k), N, C)
        W_prev, b_prev, prev = Wk, bk, (gW, gb)
        if lr is not None:
            Wk, bk = Wk - lr * gW, bk - lr * gb
    refined = 0
    if len(labs) < total and (K == 1 or lr is not None):
        # the steps one by one left samples out (a later step's sample fits an earlier step's weights
        # nearly as well when they hardly change, and hides its small samples): all steps at once
        atoms, refined = refine(dW, db, W0, b0, list(zip(feats, labs, stp)), pool, classes, N, K, lr or 0.0,
                                full, floor, gen, starts, REFINE_ITERS)
        if len(atoms) >= len(labs):
            feats, labs, stp = [a[0] for a in atoms], [a[1] for a in atoms], [a[2] for a in atoms]
    features = np.array(feats).reshape(-1, d)
    labels = np.array(labs, dtype=np.int64)
    steps = np.array(stp, dtype=np.int64)
    mW, mb = simulate(W0, b0, features, labels, steps, N, K, lr if lr is not None else 0.0)
    res, res_b = relative_residuals(dW, db, mW, mb)
    recon = Reconstruction(features, labels, steps, lr, res, res_b)
    info = {"samples_found": len(labels), "samples": total, "rounds": used_rounds, "refine_rounds": refined,
            "classes_searched": len(classes), "lr": lr, "lr_estimated": estimated, "bound": bound,
            # dW's own noise (its first singular value past K N, relative): a float32 update's floor
            "noise": float(full.noise / max(full.top, 1e-300))}
    return recon, info


@register("rlg_counts", paper="ours (labelleak, issue 16), no paper: RLG's label set, then every sample's "
          "own equations solved and peeled off the last layer's update", needs=("db", "W", "b", "batch_size", "steps"),
          gives_counts=True)
def rlg_counts(obs: Observation, lr: float | None = None, seed: int = 0, starts: int = STARTS,
               rounds: int = ROUNDS) -> Prediction:
    """Exact label counts: the samples (features, labels) that reproduce dW and db, found one by one."""
    recon, info = recover(obs, lr=lr, seed=seed, starts=starts, rounds=rounds)
    N, K = int(obs.batch_size), int(obs.steps or 1)
    counts: dict[int, int] = {}
    for c in recon.labels.tolist():
        counts[c] = counts.get(c, 0) + 1
    proven = is_proven(recon, N * K)
    info = {**info, "proven": bool(proven), "residual": recon.residual, "residual_db": recon.residual_db,
            "tolerance": PROVEN_TOL}
    if not proven:
        info["unproven_reason"] = (f"{len(recon.labels)} of {N * K} samples found; relative residual "
                                   f"{recon.residual:.3g} (db {recon.residual_db:.3g}), tolerance {PROVEN_TOL:g}")
        missing = N * K - len(recon.labels)
        if missing > 0:
            fill = fill_missing(obs, recon, missing)
            if fill:
                info["filled_by_ilrg"] = {str(c): v for c, v in sorted(fill.items())}
                for c, v in fill.items():
                    counts[c] = counts.get(c, 0) + v
    return Prediction(labels=frozenset(c for c, v in counts.items() if v > 0), num_labels=int(sum(counts.values())),
                      counts={c: v for c, v in sorted(counts.items()) if v > 0}, info=info, evidence=recon)
