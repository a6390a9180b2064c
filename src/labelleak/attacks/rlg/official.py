"""RLG as the authors' released code runs it (googleinterns/learning-bag-of-words, image_recognition/rlg.py).

Why a second RLG: the numbers printed in Dang et al. (NeurIPS 2021) were made with the released
script, and the script is not Algorithm 1. :mod:`labelleak.attacks.rlg` is the exact method (S =
rank(dW), one LP per class against *every* other column); this module is the released variant, so a
reader sees where the paper's published numbers and the exact algorithm part. It is written from
the description in the benchmark's reference notes (attacks.md sec. 2.2; the script was read only to
pin down what its LP check counts), not copied, and it is deterministic under our seeds where the
script draws from numpy's global, unseeded generator (and needs scikit-learn and cvxopt: not here).

What the released script does, and how each step is mapped here:

1. k, the number of label positions, is *given*: the script passes the ground-truth batch size
   (``gt_k``), not the number of distinct labels. Without a given k it falls back to
   ``numpy.linalg.matrix_rank(dW)`` with numpy's default tolerance (``sigma_max * max(d, C) * eps`` of
   dW's dtype; here applied to the float64 singular values), the rank the script prints. With
   repeated labels a given k exceeds the rank and Q_k takes noise directions in: as in the script.
   0 < k < min(d, C) is required (NotApplicable otherwise).
2. Thin SVD of dW (float64); Q_k = the first k right singular vectors, column q_c per class.
3. ``seed_negative_columns`` (the script: ResNet50 only, its features are post-ReLU): classes whose
   column of dW has a negative minimum (the Yin rule) skip the perceptron screen and go straight to
   the LP. As in the script they are *candidates*, not accepted: the LP still confirms every
   candidate. A list of names turns it on for updates whose provenance (``obs.meta['model']`` or
   ``['arch']``, what the server knows anyway) is in the list, like the script's model-name switch.
4. Perceptron screen for every other class: 1 positive (q_c) vs ``perceptron_sample_size`` (999,
   capped at C - 1) other columns drawn without replacement by ``numpy.random.default_rng([seed,
   c])``. A numpy re-implementation of scikit-learn's ``Perceptron(fit_intercept=True, eta0=1,
   max_iter=1000, tol=1e-3)`` (no penalty, constant rate, labels +1 / -1, zero start): each epoch
   visits the samples in a fresh permutation from the same generator; a sample with ``y (w.x + b)
   <= 0`` adds ``eta0 y`` to the intercept and ``eta0 y x`` to w, and costs ``-y (w.x + b)``; after
   each epoch, training stops once the summed loss has failed 5 epochs in a row (sklearn's
   ``n_iter_no_change``) to fall below the best so far minus ``tol * n_samples`` (sklearn's rule), or
   after max_iter epochs. The class passes if the training accuracy (prediction +1 iff ``w.x + b >
   0``) is > ``perceptron_accept`` (script: 0.9, which predicting everything negative already meets,
   so the screen is nearly vacuous there); ``perceptron_accept = 1.0`` means every sample right (the
   ASR script's ``== 1.0``). All classes train side by side (vectorised over classes); each class'
   result depends only on (seed, c, Q_k).
5. LP confirmation of every candidate (scipy ``linprog``, HiGHS, where the script uses cvxopt):
   ``min q_c.x`` s.t. ``q_c.x <= -1e-10`` and ``-q_j.x <= 0`` for only the ``lp_constraints`` (199)
   other classes with the largest ``||q_j||`` (not all C - 1: the script's approximation), with
   ``|x_i| <= 5`` (the box of the ASR script's scipy path; the homogeneous LP is unbounded whenever
   it is feasible, where cvxopt returns a ray). The script's check on ``A x``, A the constraint
   matrix (rows q_c, then -q_j), maps to: ``q_c.x < -0.1``; ``max_j (-q_j.x) < 1e-2``; and the rows
   ``-q_j.x <= 0`` number more than half of A's rows (the script's denominator counts q_c's row
   too). "<= 0" is read to HiGHS' primal feasibility tolerance (1e-7): a simplex vertex has up to
   k rows tight at rounding noise of either sign, which cvxopt's interior-point ray does not.
   An infeasible LP (no separator against the constrained columns) rejects the class, and so does
   ``5 ||q_c||_1 <= 0.1`` without an LP (no x in the box reaches ``q_c.x < -0.1``: the same answer).

Where this departs from the exact method: the perceptron threshold, the 199-column restriction
(an absent class separable from the largest columns but not from all is accepted), the box and
magnitude checks (a separator with ``q_c.x > -0.1`` inside the box is rejected), and k = N with
repeated labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linprog, nnls

from labelleak.attacks.base import Prediction, register
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

#: The released script's constants.
LP_EPS = 1e-10  # q_c.x <= -LP_EPS
LP_BOX = 5.0  # |x_i| <= LP_BOX (the ASR script's scipy path)
LP_MIN_DEPTH = -0.1  # accept only if q_c.x < LP_MIN_DEPTH
LP_MAX_VIOLATION = 1e-2  # ... and every constrained row -q_j.x < LP_MAX_VIOLATION
ROW_TOL = 1e-7  # "-q_j.x <= 0" to HiGHS' default primal feasibility tolerance
PERCEPTRON = {"eta0": 1.0, "max_iter": 1000, "tol": 1e-3, "n_iter_no_change": 5}


def script_rank(s: np.ndarray, shape: tuple[int, int], dtype) -> int:
    """numpy's default ``matrix_rank``: singular values above ``sigma_max * max(d, C) * eps(dtype)``."""
    if not s.size:
        return 0
    eps = np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps
    return int(np.sum(s > s.max() * max(shape) * eps))


def perceptron_screen(Q: np.ndarray, classes: np.ndarray, seed: int, sample_size: int,
                      eta0: float = 1.0, max_iter: int = 1000, tol: float = 1e-3,
                      n_iter_no_change: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Training accuracy and epochs of the one-vs-sample perceptron of each class of ``classes``.

    See the module docstring (step 4). Returns (accuracy, epochs), one entry per class.
    """
    k, C = Q.shape
    classes = np.asarray(classes, dtype=int)
    m = min(sample_size, C - 1)
    n = m + 1
    X = np.ascontiguousarray(Q.T)  # (C, k)
    y = -np.ones(n)
    y[0] = 1.0
    rngs = [np.random.default_rng([seed, int(c)]) for c in classes]
    idx = np.empty((classes.size, n), dtype=int)  # the class ids of each problem's samples, positive first
    for i, c in enumerate(classes):
        idx[i, 0] = c
        idx[i, 1:] = rngs[i].choice(np.delete(np.arange(C), c), size=m, replace=False)
    w = np.zeros((classes.size, k))
    b = np.zeros(classes.size)
    best = np.full(classes.size, np.inf)
    stale = np.zeros(classes.size, dtype=int)
    epochs = np.zeros(classes.size, dtype=int)
    active = np.arange(classes.size)
    for _ in range(max_iter):
        if not active.size:
            break
        perm = np.stack([rngs[i].permutation(n) for i in active])
        samples = np.take_along_axis(idx[active], perm, axis=1)
        signs = y[perm]
        wa, ba = w[active], b[active]
        loss = np.zeros(active.size)
        for t in range(n):
            x = X[samples[:, t]]
            yt = signs[:, t]
            z = yt * (np.einsum("ij,ij->i", wa, x) + ba)
            wrong = z <= 0
            loss -= np.where(wrong, z, 0.0)
            step = np.where(wrong, eta0 * yt, 0.0)
            wa += step[:, None] * x
            ba += step
        w[active], b[active] = wa, ba
        epochs[active] += 1
        no_gain = loss > best[active] - tol * n
        stale[active] = np.where(no_gain, stale[active] + 1, 0)
        best[active] = np.minimum(best[active], loss)
        active = active[stale[active] < n_iter_no_change]
    acc = np.empty(classes.size)
    for lo in range(0, classes.size, 256):  # (w.x + b) of every training sample, a block of classes at a time
        hi = lo + 256
        decision = np.take_along_axis(w[lo:hi] @ Q, idx[lo:hi], axis=1) + b[lo:hi, None]
        acc[lo:hi] = (np.where(decision > 0, 1.0, -1.0) == y).mean(axis=1)
    return acc, epochs


def lp_confirms(Q: np.ndarray, c: int, rows: np.ndarray) -> bool:
    """The released script's LP for class c against the columns ``rows`` and its acceptance check (step 5)."""
    q = Q[:, c]
    if LP_BOX * np.abs(q).sum() <= -LP_MIN_DEPTH:  # min of q.x over the box is -5 |q|_1: cannot pass, no LP needed
        return False
    # weak duality: with q = Q_rows lam + e (lam >= 0, NNLS), every x the LP admits (rows enforced to
    # HiGHS' tolerance, 1e-7; 1e-6 here to be safe) has q.x >= -(1e-6 |lam|_1 + 5 |e|_1): when that is
    # above LP_MIN_DEPTH the check below fails whatever vertex HiGHS returns, so no LP is needed
    lam, _ = nnls(Q[:, rows], q)
    if 1e-6 * lam.sum() + LP_BOX * np.abs(q - Q[:, rows] @ lam).sum() < -LP_MIN_DEPTH:
        return False
    A = np.vstack([q, -Q[:, rows].T])
    b = np.zeros(A.shape[0])
    b[0] = -LP_EPS
    res = linprog(q, A_ub=A, b_ub=b, bounds=(-LP_BOX, LP_BOX), method="highs")
    if res.status != 0 or res.x is None:
        return False
    ret = A @ res.x
    others = ret[1:]
    return bool(ret[0] < LP_MIN_DEPTH and (not others.size or others.max() < LP_MAX_VIOLATION)
                and np.count_nonzero(others <= ROW_TOL) > 0.5 * ret.size)


def _seeding_on(option, obs: Observation) -> bool:
    if isinstance(option, (bool, np.bool_)) or option is None:
        return bool(option)
    names = [option] if isinstance(option, str) else list(option)
    return any(obs.meta.get(key) in names for key in ("model", "arch") if obs.meta.get(key) is not None)


@register("rlg_official",
          paper="Dang et al. NeurIPS 2021, released code (googleinterns/learning-bag-of-words, image_recognition/rlg.py)",
          needs=())
def rlg_official(obs: Observation, num_labels: int | None = None, seed: int = 0,
                 seed_negative_columns: bool | Sequence[str] = False, perceptron_sample_size: int = 999,
                 perceptron_accept: float = 0.9, lp_constraints: int = 199) -> Prediction:
    """RLG as the released script runs it: k given, perceptron screen, LP against the 199 largest columns.

    ``num_labels`` is k (the script: the batch size); by default numpy's matrix_rank of dW.
    ``seed_negative_columns``: True, False, or the model / arch names (update provenance) it is on for.
    """
    if perceptron_sample_size < 1 or lp_constraints < 1:
        raise ValueError("perceptron_sample_size and lp_constraints must be >= 1")
    if not 0 < perceptron_accept <= 1:
        raise ValueError(f"perceptron_accept must lie in (0, 1], got {perceptron_accept}")
    A = np.asarray(obs.dW, dtype=np.float64)
    d, C = A.shape
    _, s, Vt = np.linalg.svd(A, full_matrices=False)
    rank = script_rank(s, A.shape, obs.dW.dtype)
    k = rank if num_labels is None else int(num_labels)
    if k <= 0 or k >= min(d, C):
        raise NotApplicable(f"rlg_official needs 0 < k < min(d, C) = {min(d, C)}, got k = {k}"
                            + ("" if num_labels is not None else " (matrix_rank of dW)"))
    Q = Vt[:k]
    seeding = _seeding_on(seed_negative_columns, obs)
    seeded = np.flatnonzero(A.min(axis=0) < 0) if seeding else np.zeros(0, dtype=int)
    screened = np.setdiff1d(np.arange(C), seeded)
    passed = np.zeros(0, dtype=int)
    if screened.size:
        acc, _ = perceptron_screen(Q, screened, seed, perceptron_sample_size, **PERCEPTRON)
        ok = acc >= 1.0 if perceptron_accept >= 1 else acc > perceptron_accept
        passed = screened[ok]
    candidates = np.union1d(seeded, passed)
    by_norm = np.argsort(-np.linalg.norm(Q, axis=0), kind="stable")
    labels = set()
    for c in candidates:
        rows = by_norm[by_norm != c][:lp_constraints]
        if lp_confirms(Q, int(c), rows):
            labels.add(int(c))
    info = {"k": k, "k_given": num_labels is not None, "rank": rank, "seeded": int(seeded.size),
            "screened": int(screened.size), "screen_passed": int(passed.size),
            "candidates": int(candidates.size), "lp_confirmed": len(labels)}
    return Prediction(labels=frozenset(labels), num_labels=k, info=info)
