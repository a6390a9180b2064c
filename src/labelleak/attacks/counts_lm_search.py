"""The batched Levenberg-Marquardt search of ``rlg_counts``: many independent per-sample problems at once.

One sample's equations ``[V_perp^T g / |g| ; a.beta - 1] = 0`` are decoupled from the other
samples', so every seeded start (per class: W's column, iLRG's class embedding, perturbations) is
solved in one batch, deflated at the points already found so that they repel the solver. Kept
apart from the peeling and the refinement, which both drive it.
"""

from __future__ import annotations

import numpy as np
import torch

from labelleak.attacks.counts_space import DT, Space
from labelleak.attacks.counts_tolerances import DEFLATION_RADIUS, LM_ITERS


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
        Jb = torch.cat([Jb, torch.zeros(len(x), 1, dtype=DT)], dim=1)
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
    grad = torch.zeros(len(x), P, dtype=DT)
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

    lam = torch.full((B,), 1e-3, dtype=DT)
    every = torch.arange(B)
    r, Jall = evaluate(a, every)
    f = (r * r).sum(dim=1)
    active = torch.isfinite(f)
    eye = torch.eye(P, dtype=DT)
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


def seeded_starts(space: Space, R_W, R_b, W, classes, gen, count):
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


def dedupe(points: np.ndarray, labels: np.ndarray, rel: float = 1e-3):
    keep: list[int] = []
    for i in range(len(points)):
        if all(labels[j] != labels[i] or np.linalg.norm(points[i] - points[j]) > rel * np.linalg.norm(points[i])
               for j in keep):
            keep.append(i)
    return keep


def solve(space: Space, W, b, prev, pts: np.ndarray, ys: np.ndarray, iters: int, avoid=()):
    """Batched LM of the per-sample equations in ``space`` from ``pts`` (their last column the learning
    rate when ``prev`` is given), deflated at the points ``avoid`` ((label, feature) pairs) of each
    start's class; returns numpy (solutions, residual norms)."""
    C = W.shape[1]
    Wp = torch.tensor(space.U.T @ W, dtype=DT)
    bb = torch.tensor(b, dtype=DT)
    dWp = dbb = None
    if prev is not None:
        dWp = torch.tensor(space.U.T @ prev[0], dtype=DT)
        dbb = torch.tensor(prev[1], dtype=DT)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(ys), C).to(DT)
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
        defl, rho2 = torch.tensor(dp, dtype=DT), torch.tensor(r2, dtype=DT)
    sol, res = _levenberg_marquardt(torch.tensor(pts, dtype=DT), onehot, Wp, bb, space.Vp, space.beta_t, dWp, dbb,
                                    iters=iters, defl=defl, rho2=rho2)
    return sol.numpy(), res.numpy()
