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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.rlg import reveal_labels
from labelleak.attacks.rlg.spectrum import rounding_floor
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

#: Counts are proven when the samples found reproduce dW and db to this relative residual.
PROVEN_TOL = 1e-6
#: A polished point is a sample when its per-sample residual is at most SAMPLE_NOISE_FACTOR times
#: the noise of dW (its first singular value past S, at least ARITH_NOISE * max(d, C) * eps * |dW|)
#: over the sample's own size |h| |g| / N, never above MAX_ACCEPT_TOL.
SAMPLE_NOISE_FACTOR = 30.0
ARITH_NOISE = 1.0
MAX_ACCEPT_TOL = 1e-3
#: A search point is polished when its residual (in the residual's spaces) is below this.
SEARCH_TOL = 1e-3
#: The residual of a K-step simulation of inexact samples is inexact: the refinement polishes its
#: search points up to this residual.
REFINE_SEARCH_TOL = 5e-2
#: A residual whose first left-out singular value is above this fraction of the last kept one has no
#: gap after the samples left: the search stops.
MAX_NOISE_RATIO = 1e-2
#: A step's samples are checked: the residual they leave must have a gap (first left-out over last
#: kept singular value below this) after the samples left; else the worst fit is dropped and banned,
#: MAX_BANNED times at most.
STEP_CHECK_RATIO = 1e-4
MAX_BANNED = 4
#: |g^T R^+ h / N - 1| at most this for a sample of the residual R (exactly 0 in exact arithmetic).
RANK_DROP_TOL = 1e-2
STARTS = 12  # seeded starts per class and round
ROUNDS = 12  # search rounds per step, at most
IDLE_ROUNDS = 2  # a step stops after this many rounds that find nothing
REFINE_ITERS = 8  # all-steps rounds, at most (when the steps one by one leave samples out)
LM_ITERS = 60
POLISH_ITERS = 200
REFINE_POLISH_ITERS = 60
#: Deflation radius, relative to the norm of the point deflated.
DEFLATION_RADIUS = 0.05

_DT = torch.float64


def max_samples(num_classes: int, num_features: int) -> int:
    """The largest K N the method takes: the per-sample system (C - S equations, S unknowns) must be
    overdetermined, S < C / 2, and the features must span an S-dimensional space, S < d."""
    return int(min((num_classes - 1) // 2, num_features - 1))


@dataclass(frozen=True)
class Reconstruction:
    """The samples found: features (n, d), labels (n,) and the step (n,) of each; anyone can re-simulate
    the update from them with :func:`simulate` and compare it with the observation (the evidence)."""

    features: np.ndarray
    labels: np.ndarray
    steps: np.ndarray
    lr: float | None
    residual: float
    residual_db: float


def simulate(W: np.ndarray, b: np.ndarray, features: np.ndarray, labels: np.ndarray, steps: np.ndarray,
             batch_size: int, num_steps: int, lr: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The update file's (dW, db) of ``num_steps`` SGD steps of mean CE over ``batch_size`` samples a
    step, from (W, b) (d, C), (C,): the sum of the step gradients, each at its step's weights."""
    W = np.asarray(W, dtype=np.float64).copy()
    b = np.asarray(b, dtype=np.float64).copy()
    features = np.asarray(features, dtype=np.float64).reshape(-1, W.shape[0])
    labels, steps = np.asarray(labels, dtype=np.int64), np.asarray(steps, dtype=np.int64)
    C = W.shape[1]
    dW, db = np.zeros_like(W), np.zeros_like(b)
    for k in range(num_steps):
        sel = steps == k
        gW, gb = _step_gradient(W, b, features[sel], labels[sel], batch_size, C)
        dW += gW
        db += gb
        if k + 1 < num_steps:
            W -= lr * gW
            b -= lr * gb
    return dW, db


def _step_gradient(W, b, H, y, n, C):
    """(dW, db) of mean CE over n samples of which (H, y) are some: H^T (softmax - Y) / n."""
    if len(y) == 0:
        return np.zeros_like(W), np.zeros_like(b)
    z = H @ W + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return H.T @ p / n, p.sum(axis=0) / n


class _Space:
    """The column and row spaces of an update (or what is left of it) and the plane a.beta = 1."""

    def __init__(self, R_W: np.ndarray, R_b: np.ndarray, floor: float, cap: int):
        U, s, Vt = np.linalg.svd(R_W, full_matrices=True)
        S = int(min(np.sum(s > floor), cap))
        self.S = S
        self.top = float(s[0]) if s.size else 0.0
        self.noise = float(s[S]) if S < s.size else 0.0
        if S == 0:
            return
        # Wedin: the first value left out (noise, or what inexact earlier samples left) over the last kept
        # bounds how far the kept subspaces are off, hence the residual of a true sample
        self.noise_ratio = self.noise / float(s[S - 1])
        self.U = U[:, :S]
        self.s = s[:S]
        self.V = Vt[:S].T
        M = s[:S, None] * Vt[:S]  # U^T R_W
        self.beta = np.linalg.lstsq(M.T, R_b, rcond=None)[0]
        self.Vp = torch.tensor(Vt[S:].T, dtype=_DT)  # (C, C - S): the complement of the row space
        self.beta_t = torch.tensor(self.beta, dtype=_DT)


def _res_jac(a, onehot, Wp, bb, Vp, beta, dWp=None, dbb=None):
    """Per-sample residuals (B, R) and Jacobians (B, R, P): ``[V_perp^T g / |g| ; a.beta - 1]``.

    With ``dWp`` (S, C), ``dbb`` (C,), the last column of ``a`` is the learning rate and the weights
    are ``Wp - lr dWp``, ``bb - lr dbb`` (step 1 of a K-step update with an unknown lr).
    """
    if dWp is None:
        x = a
        z = x @ Wp + bb
        WkT = Wp.T[None]  # (1, C, S)
    else:
        x, lr = a[:, :-1], a[:, -1:]
        WkT = (Wp[None] - lr[:, :, None] * dWp[None]).transpose(1, 2)  # (B, C, S)
        z = torch.einsum("bs,bcs->bc", x, WkT) + bb[None] - lr * dbb[None]
    p = torch.softmax(z, dim=1)
    g = p - onehot
    n = g.norm(dim=1, keepdim=True).clamp_min(1e-300)
    # dg/dz = diag(p) - p p^T; dz/dx = Wk^T
    pW = torch.einsum("bc,bcs->bs", p, WkT.expand(len(x), -1, -1))
    dg = p[:, :, None] * (WkT - pW[:, None, :])
    if dWp is not None:
        dz_lr = -(torch.einsum("bs,sc->bc", x, dWp) + dbb[None])  # (B, C)
        dg_lr = p * (dz_lr - (p * dz_lr).sum(dim=1, keepdim=True))
        dg = torch.cat([dg, dg_lr[:, :, None]], dim=2)
    q = g @ Vp
    gdg = torch.einsum("bc,bcs->bs", g, dg)
    Jq = torch.einsum("cr,bcs->brs", Vp, dg) / n[:, :, None] - q[:, :, None] * gdg[:, None, :] / n[:, :, None] ** 3
    r = torch.cat([q / n, (x @ beta - 1.0)[:, None]], dim=1)
    Jb = beta.expand(len(x), -1)
    if dWp is not None:
        Jb = torch.cat([Jb, torch.zeros(len(x), 1, dtype=_DT)], dim=1)
    return r, torch.cat([Jq, Jb[:, None, :]], dim=1)


def _deflated(r, J, x, defl, rho2):
    """Deflation (Farrell et al. 2015): r m(x), m = prod_j (1 + rho_j^2 / |x - d_j|^2), so that the
    points d_j (samples found, near misses) repel the solver instead of attracting it again."""
    diff = x[:, None, :] - defl  # (B, D, S)
    q = (diff * diff).sum(dim=2).clamp_min(1e-300)
    term = rho2 / q
    m = torch.exp(torch.log1p(term).sum(dim=1, keepdim=True))  # (B, 1)
    # d log m / dx = sum_j -2 rho^2 (x - d_j) / (q (q + rho^2))
    dlog = (-2.0 * (rho2 / (q * (q + rho2)))[:, :, None] * diff).sum(dim=1)  # (B, S)
    P = J.shape[2]
    grad = torch.zeros(len(x), P, dtype=_DT)
    grad[:, : x.shape[1]] = dlog
    return r * m, J * m[:, :, None] + r[:, :, None] * (m * grad)[:, None, :]


def _levenberg_marquardt(a, onehot, Wp, bb, Vp, beta, dWp=None, dbb=None, iters=LM_ITERS, defl=None, rho2=None):
    """Batched LM on independent per-sample problems; returns (solutions, residual norms).

    ``defl`` (B, D, S), ``rho2`` (B, D): points each problem is deflated at (rho2 = 0: none); the
    residual norms returned are those of the plain (undeflated) equations.
    """
    a = a.clone()
    B, P = a.shape
    S = Wp.shape[0]

    def evaluate(x, rows):
        r, J = _res_jac(x, onehot[rows], Wp, bb, Vp, beta, dWp, dbb)
        if defl is not None:
            r, J = _deflated(r, J, x[:, :S], defl[rows], rho2[rows])
        return r, J

    lam = torch.full((B,), 1e-3, dtype=_DT)
    every = torch.arange(B)
    r, Jall = evaluate(a, every)
    f = (r * r).sum(dim=1)
    active = torch.isfinite(f)
    eye = torch.eye(P, dtype=_DT)
    checkpoint = f.clone()
    for it in range(iters):
        if it >= 10 and it % 5 == 0:  # stalled (less than a factor 4 in 5 iterations): a local minimum, or done
            active &= f < 0.25 * checkpoint
            checkpoint = f.clone()
        idx = torch.nonzero(active).squeeze(1)
        if idx.numel() == 0:
            break
        Ji, ri = Jall[idx], r[idx]
        JtJ = Ji.transpose(1, 2) @ Ji
        Jtr = (Ji.transpose(1, 2) @ ri[:, :, None])[:, :, 0]
        diag = torch.diagonal(JtJ, dim1=1, dim2=2)
        damp = lam[idx, None, None] * (diag[:, :, None] * eye + 1e-12 * diag.mean(dim=1)[:, None, None] * eye)
        try:
            step = -torch.linalg.solve(JtJ + damp, Jtr[:, :, None])[:, :, 0]
        except RuntimeError:  # a singular system: take the gradient step
            step = -Jtr / (diag.max(dim=1, keepdim=True).values + 1e-300)
        an = a[idx] + step
        rn, Jn = evaluate(an, idx)
        fn = (rn * rn).sum(dim=1)
        ok = torch.isfinite(fn) & (fn < f[idx])
        good = idx[ok]
        a[good], r[good], f[good] = an[ok], rn[ok], fn[ok]
        Jall[good] = Jn[ok]
        lam[idx] = torch.where(ok, lam[idx] / 3, lam[idx] * 4).clamp(1e-15, 1e12)
        tiny = step.norm(dim=1) <= 1e-13 * a[idx].norm(dim=1)  # converged to rounding: no move left
        done = (f[idx] < 1e-28) | (lam[idx] >= 1e8) | tiny
        active[idx[done]] = False
    if defl is not None:
        r, _ = _res_jac(a, onehot, Wp, bb, Vp, beta, dWp, dbb)
        f = (r * r).sum(dim=1)
    return a, f.sqrt()


def _starts(space: _Space, R_W, R_b, W, classes, gen, count):
    """Seeded start points (in the space's coordinates), ``count`` for each class: W's column, iLRG's
    class embedding R_c / Rb_c and their random perturbations (up to 3 times their norm), all moved
    onto the plane a.beta = 1 (scaled, or projected where a.beta <= 0)."""
    U, beta = space.U, space.beta
    S = space.S
    pts, labs = [], []
    for c in classes:
        bases = [U.T @ W[:, c]]
        if abs(R_b[c]) > 0:
            bases.append(U.T @ (R_W[:, c] / R_b[c]))
        scale = np.mean([np.linalg.norm(x) for x in bases]) or 1.0
        cand = []
        for i in range(count):
            base = bases[i % len(bases)]
            level = (0.0, 0.1, 0.3, 1.0, 3.0)[(i // len(bases)) % 5]
            x = base + level * scale * gen.standard_normal(S) / np.sqrt(S)
            cand.append(x)
        for x in cand:
            t = float(x @ beta)
            if t > 1e-12 * np.linalg.norm(x) * np.linalg.norm(beta):
                x = x / t
            else:
                x = x + (1.0 - t) * beta / float(beta @ beta)
            pts.append(x)
            labs.append(c)
    return np.array(pts), np.array(labs, dtype=np.int64)


def _rank_drop(space: _Space, x: np.ndarray, W: np.ndarray, b: np.ndarray, y: int, N: int) -> float:
    """g^T R^+ h / N for the atom (h = U x, y) of the residual R = U diag(s) V^T: 1 for its samples."""
    return float((_gradient_of(space.U @ x, W, b, y) @ space.V) @ (x / space.s) / N)


def _dedupe(points: np.ndarray, labels: np.ndarray, rel: float = 1e-3):
    keep: list[int] = []
    for i in range(len(points)):
        if all(labels[j] != labels[i] or np.linalg.norm(points[i] - points[j]) > rel * np.linalg.norm(points[i])
               for j in keep):
            keep.append(i)
    return keep


def _solve(space: _Space, W, b, prev, pts: np.ndarray, ys: np.ndarray, iters: int, avoid=()):
    """Batched LM of the per-sample equations in ``space`` from ``pts`` (their last column the learning
    rate when ``prev`` is given), deflated at the points ``avoid`` ((label, feature) pairs) of each
    start's class; returns numpy (solutions, residual norms)."""
    C = W.shape[1]
    Wp = torch.tensor(space.U.T @ W, dtype=_DT)
    bb = torch.tensor(b, dtype=_DT)
    dWp = dbb = None
    if prev is not None:
        dWp = torch.tensor(space.U.T @ prev[0], dtype=_DT)
        dbb = torch.tensor(prev[1], dtype=_DT)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(ys), C).to(_DT)
    defl = rho2 = None
    by_class: dict[int, list[np.ndarray]] = {}
    for c, h in avoid:
        by_class.setdefault(int(c), []).append(space.U.T @ h)
    D = max((len(by_class.get(int(c), [])) for c in ys), default=0)
    if D:
        dp = np.zeros((len(ys), D, space.S))
        r2 = np.zeros((len(ys), D))
        for i, c in enumerate(ys):
            pts_c = by_class.get(int(c), [])
            for j, x in enumerate(pts_c):
                dp[i, j] = x
                r2[i, j] = (DEFLATION_RADIUS * np.linalg.norm(x)) ** 2
        defl, rho2 = torch.tensor(dp, dtype=_DT), torch.tensor(r2, dtype=_DT)
    sol, res = _levenberg_marquardt(torch.tensor(pts, dtype=_DT), onehot, Wp, bb, space.Vp, space.beta_t, dWp, dbb,
                                    iters=iters, defl=defl, rho2=rho2)
    return sol.numpy(), res.numpy()


def _moved(x: np.ndarray, src: _Space, dst: _Space, lr_column: bool) -> np.ndarray:
    """Points (n, S_src [+ 1]) of one space's coordinates in another's (features h = U x)."""
    out = (x[:, : src.S] @ src.U.T) @ dst.U
    return np.hstack([out, x[:, src.S:]]) if lr_column else out


def _gradient_of(h: np.ndarray, W: np.ndarray, b: np.ndarray, y: int) -> np.ndarray:
    z = h @ W + b
    p = np.exp(z - z.max())
    p /= p.sum()
    p[y] -= 1.0
    return p


def _sample_tol(full: _Space, h: np.ndarray, W: np.ndarray, b: np.ndarray, y: int, N: int) -> float:
    """How small the per-sample residual of a true sample (h, y) is: dW's noise over its size."""
    noise = max(full.noise, ARITH_NOISE * max(W.shape) * float(np.finfo(np.float64).eps) * full.top)
    size = np.linalg.norm(h) * np.linalg.norm(_gradient_of(h, W, b, y)) / N
    return float(min(MAX_ACCEPT_TOL, SAMPLE_NOISE_FACTOR * noise / max(size, 1e-300)))


def _peel_step(R_W, R_b, W, b, classes, N, need, floor, cap, gen, full: _Space, pool, *, prev=None,
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
        tols = np.array([_sample_tol(full, hs[i], *weights(float(sol[i, -1])), ys[i], N) if np.isfinite(res[i])
                         else 0.0 for i in range(len(ys))])
        good = np.isfinite(res) & (res <= tols)
        near = np.flatnonzero(np.isfinite(res) & ~good & (res < MAX_ACCEPT_TOL))
        missed = [(int(ys[i]), hs[i]) for i in near[_dedupe(sol[near], ys[near])]]
        ok = [i for i in np.flatnonzero(good) if not any(
            c == ys[i] and np.linalg.norm(hs[i] - h) <= 1e-3 * np.linalg.norm(h) for c, h in banned)]
        if not ok:
            return missed
        ok = np.array(ok)[np.argsort(res[ok], kind="stable")]
        keep = ok[_dedupe(sol[ok], ys[ok])]
        # rank drop: a sample (h, g) of the residual has g^T R^+ h = N (a sample found before, or a point
        # far out with a vanishing gradient, has ~0 there)
        back = _moved(sol[keep], full, space, False)
        drop = np.array([_rank_drop(space, x, *weights(float(sol[i, -1])), ys[i], N) for x, i in zip(back, keep)])
        keep = keep[np.abs(drop - 1.0) <= RANK_DROP_TOL]
        if prev is not None and keep.size:  # one learning rate for all: the median of the samples' estimates
            lr = float(np.median(sol[keep, -1]))
            keep = keep[np.abs(sol[keep, -1] - lr) <= 1e-6 * abs(lr)]
        for i in keep[: need - len(labs)]:
            lr_i = float(sol[i, -1])
            if prev is not None:
                lrs.append(lr_i)
            gW, gb = _step_gradient(*weights(lr_i), hs[i][None], np.array([ys[i]]), N, C)
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
        space = _Space(R_W, R_b, floor, left) if left > 0 else None  # one direction per sample left, at most
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
            space = _Space(R_W, R_b, floor, cap - len(labs))
            gap = space.S == 0 or space.noise_ratio <= STEP_CHECK_RATIO
        if len(labs) >= need or space is None or space.S == 0 or space.noise_ratio > MAX_NOISE_RATIO:
            break  # done; or nothing left, or no gap after the samples left: their equations are not resolved
        pts, ys = _starts(space, R_W, R_b, W, classes, gen, starts)
        if prev is not None:
            pts = np.hstack([pts, lr_guess(len(pts))])
        sol, res = _solve(space, W, b, prev, pts, ys, LM_ITERS, avoid=pool)
        near = np.flatnonzero(np.isfinite(res) & (res < SEARCH_TOL))
        if near.size == 0:
            continue
        near = near[_dedupe(sol[near], ys[near])]
        sol, res = _solve(full, W, b, prev, _moved(sol[near], space, full, prev is not None), ys[near],
                          POLISH_ITERS, avoid=pool)
        for c, h in take(sol, res, ys[near], space):
            if not any(c == c2 and np.linalg.norm(h - h2) <= 1e-3 * np.linalg.norm(h) for c2, h2 in pool):
                pool.append((c, h))
        if len(labs) > before:
            idle = 0
    lr = float(np.median(lrs)) if lrs else None
    return feats, labs, lr, used, pool


def _step_weights(W0, b0, atoms, N, K, lr):
    """[(W_k, b_k)] for k < K from the samples (h, y, k) found so far (a step's missing ones left out)."""
    out = [(W0, b0)]
    d, C = W0.shape
    for k in range(K - 1):
        H = np.array([h for h, _, j in atoms if j == k]).reshape(-1, d)
        y = np.array([c for _, c, j in atoms if j == k], dtype=np.int64)
        gW, gb = _step_gradient(*out[-1], H, y, N, C)
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
        sol, r = _solve(full, *Ws[k], None, pts, ys, REFINE_POLISH_ITERS)
        for j, i in enumerate(rows):
            if np.isfinite(r[j]) and r[j] < MAX_ACCEPT_TOL and \
                    abs(_rank_drop(full, sol[j], *Ws[k], ys[j], N) - 1.0) <= RANK_DROP_TOL:
                res[i, k], feat[i, k] = r[j], full.U @ sol[j]
    return res, feat


def _refine(dW, db, W0, b0, atoms, pool, classes, N, K, lr, full, floor, gen, starts, iters):
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
                if exact and res_k[i] > _sample_tol(full, h, *Ws[k], cand[i][0], N):
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
        space = _Space(R_W, R_b, floor, N * K - len(atoms))
        found = []
        if space.S:
            avoid = [(c, h) for h, c, _ in atoms]
            for k in [j for j in range(K) if per_step[j] < N]:
                pts, ys = _starts(space, R_W, R_b, Ws[k][0], classes, gen, starts)
                sol, r = _solve(space, *Ws[k], None, pts, ys, LM_ITERS, avoid=avoid)
                near = np.flatnonzero(np.isfinite(r) & (r < REFINE_SEARCH_TOL))
                near = near[_dedupe(sol[near], ys[near])]
                found += [(int(ys[i]), space.U @ sol[i]) for i in near]
        cand = [(c, h) for h, c, _ in atoms] + [cand[i] for i in range(len(cand)) if i not in taken] + found
    return atoms, it


def _learning_rate(obs: Observation, lr: float | None) -> float | None:
    if lr is not None:
        return float(lr)
    meta_lr = obs.meta.get("local_lr") if isinstance(obs.meta, dict) else None
    return float(meta_lr) if isinstance(meta_lr, (int, float)) and not isinstance(meta_lr, bool) and meta_lr > 0 \
        else None


def recover(obs: Observation, lr: float | None = None, seed: int = 0, starts: int = STARTS,
            rounds: int = ROUNDS, classes=None) -> tuple[Reconstruction, dict]:
    """The samples of the update (see the module docstring) and diagnostics."""
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
    full = _Space(dW, db, floor, total)
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
        f_k, l_k, lr_k, used, pool = _peel_step(R_W, R_b, W_prev if unknown_lr else Wk, b_prev if unknown_lr else bk,
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
        gW, gb = _step_gradient(Wk, bk, np.array(f_k), np.array(l_k), N, C)
        W_prev, b_prev, prev = Wk, bk, (gW, gb)
        if lr is not None:
            Wk, bk = Wk - lr * gW, bk - lr * gb
    refined = 0
    if len(labs) < total and (K == 1 or lr is not None):
        # the steps one by one left samples out (a later step's sample fits an earlier step's weights
        # nearly as well when they hardly change, and hides its small samples): all steps at once
        atoms, refined = _refine(dW, db, W0, b0, list(zip(feats, labs, stp)), pool, classes, N, K, lr or 0.0,
                                 full, floor, gen, starts, REFINE_ITERS)
        if len(atoms) >= len(labs):
            feats, labs, stp = [a[0] for a in atoms], [a[1] for a in atoms], [a[2] for a in atoms]
    features = np.array(feats).reshape(-1, d)
    labels = np.array(labs, dtype=np.int64)
    steps = np.array(stp, dtype=np.int64)
    mW, mb = simulate(W0, b0, features, labels, steps, N, K, lr if lr is not None else 0.0)
    res = float(np.linalg.norm(mW - dW) / max(np.linalg.norm(dW), 1e-300))
    res_b = float(np.linalg.norm(mb - db) / max(np.linalg.norm(db), 1e-300))
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
    proven = recon.residual <= PROVEN_TOL and recon.residual_db <= PROVEN_TOL and len(recon.labels) == N * K
    info = {**info, "proven": bool(proven), "residual": recon.residual, "residual_db": recon.residual_db,
            "tolerance": PROVEN_TOL}
    if not proven:
        info["unproven_reason"] = (f"{len(recon.labels)} of {N * K} samples found; relative residual "
                                   f"{recon.residual:.3g} (db {recon.residual_db:.3g}), tolerance {PROVEN_TOL:g}")
        missing = N * K - len(recon.labels)
        if missing > 0:
            fill = _fill_missing(obs, recon, missing)
            if fill:
                info["filled_by_ilrg"] = {str(c): v for c, v in sorted(fill.items())}
                for c, v in fill.items():
                    counts[c] = counts.get(c, 0) + v
    return Prediction(labels=frozenset(c for c, v in counts.items() if v > 0), num_labels=int(sum(counts.values())),
                      counts={c: v for c, v in sorted(counts.items()) if v > 0}, info=info, evidence=recon)


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


def _fill_missing(obs: Observation, recon: Reconstruction, missing: int) -> dict[int, int]:
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
