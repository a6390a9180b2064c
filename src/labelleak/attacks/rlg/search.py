"""RLG, Revealing Labels from Gradients (Dang et al. 2021, Algorithm 1), exact and fast.

The update of the projection layer is ``dW = H^T G`` (d, C). Every row of ``G`` has exactly one
negative entry, at its label, so with ``dW = P Sigma Q`` (``Q`` the first S right singular
vectors, columns ``q_c``) a present class ``c`` admits ``r`` with ``r.q_c < 0`` and ``r.q_j >= 0``
for all ``j != c`` (LP(c), eq. 4); RLG predicts exactly the classes whose LP(c) is feasible.

By Farkas' lemma LP(c) is infeasible iff ``q_c`` lies in the cone of the other columns. The rows
of ``G`` sum to zero, so the columns of ``Q`` sum to zero and together they positively span
``R^S``. Hence any small set ``K`` of columns that positively spans ``R^S`` certifies every class
outside ``K`` absent without an LP. Of the S + 1 to 2S classes in ``K``, the present ones get an
explicit separator (``-q_c``, made orthogonal to the columns it violates), the others a second
spanning set that avoids them; an LP (column generation) is left only where both shortcuts fail.
Where no spanning set exists (defended updates, S given above the rank), absent classes are
proven inside the cone of a few others, many columns per proof (:func:`_frame_search`).
:func:`reveal_labels_reference` is the plain per-class LP of the paper, the oracle the fast
method is tested against.

Shared feasibility rule (both methods). Columns are scaled to unit norm ``u_j`` (a positive
scaling of a homogeneous constraint changes nothing) and LP(c), eq. 4, is posed bounded and with
its tolerance written into the problem:

    min u_c.r   s.t.   u_c.r >= -1,   u_j.r >= -FEAS_TOL (j != c),   |r_i| <= R_MAX.

Class c is present iff the optimum is <= -1/2: some r reaches ``u_c.r = -1/2`` while every other
column has ``u_j.r >= -FEAS_TOL``, i.e. a hyperplane separates c up to a slack of 2 FEAS_TOL
relative to ``|u_c.r| = 1``. An exact separator gives -1, a column clearly inside the cone of the
others about 0. FEAS_TOL = 1e-6 is ten times HiGHS' own feasibility tolerance (set explicitly to
1e-7): LPs whose exact slack is within noise of 0 (peaked softmax, where HiGHS' simplex and
interior point disagree on the plain LP) are decided robustly. r = 0 is always feasible, and the
box keeps HiGHS off free variables, on which its simplex can stall; a separator longer than
R_MAX = 1/FEAS_TOL separates by less than the tolerance anyway.

The fast method's shortcuts are proven against this rule: an explicit r in the box with
``u_c.r = -1`` and no ``u_j.r < -FEAS_TOL`` is a feasible point of value -1 (present); a spanning
set K certifies absence when every r with ``u_k.r >= -(FEAS_TOL + 1e-7)`` on K has
``||r|| < 1/4`` (value >= -1/4); and column generation stops when no unseen column is violated
beyond ``FEAS_TOL + 1e-7``. So the two methods can only disagree on an LP whose optimum lies
within HiGHS' tolerance of -1/2; the tests check that they agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import linprog

from labelleak.attacks.base import Prediction, register
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

#: LP(c) tolerance, part of the problem: ``u_j.r >= -FEAS_TOL`` for unit columns, ``u_c.r = -1``.
FEAS_TOL = 1e-6
_HIGHS_TOL = 1e-7  # HiGHS' primal and dual feasibility tolerance, set explicitly
_ACCEPT = FEAS_TOL + _HIGHS_TOL  # the most a HiGHS solution can violate a row it enforced
#: Box on r: a separator longer than this separates by less than FEAS_TOL relative to its length.
R_MAX = 1 / FEAS_TOL
_HIGHS = {"primal_feasibility_tolerance": _HIGHS_TOL, "dual_feasibility_tolerance": _HIGHS_TOL}
_SKETCH_SEED = 0  # the range sketch below is random but seeded: results are deterministic
_OVERSAMPLE = 16


@dataclass(frozen=True)
class RLGResult:
    """Predicted label set plus how it was obtained (for diagnostics and benchmarks)."""

    labels: frozenset[int]
    num_labels: int  # S, the rank of dW or the given value
    certified_absent: int  # classes excluded by a positive-spanning certificate, no LP
    certified_present: int  # classes with an explicit separator, no LP
    lp_classes: int  # classes decided by an LP
    lp_solves: int  # LP solves, column-generation rounds included
    fallback: bool  # no spanning certificate: decided by _frame_search


# ----------------------------------------------------------------------------- spectrum


#: Safety factor of the rank tolerance over the rounding-noise floor of the stored update.
RANK_NOISE_FACTOR = 10.0


def _rank_tol(fro: float, dW: np.ndarray) -> float:
    """Singular values at or below this are rounding noise of the stored update.

    Storing dW in a float dtype perturbs each entry by up to eps/2 of its size; such a noise
    matrix E has ``||E||_2 ~ eps * ||dW||_F * (1/sqrt(d) + 1/sqrt(C))`` (random-matrix bound,
    sqrt(d) + sqrt(C) times the entrywise scale ``||dW||_F / sqrt(d C)``). The tolerance is
    RANK_NOISE_FACTOR times that. Unlike numpy's ``sigma_max * max(d, C) * eps``, it does not cut
    real directions of updates whose spectrum is very skewed (a shared feature mean makes
    sigma_1 / sigma_S ~ 1e5 in trained CNNs, while the noise floor sits near 1e-8 sigma_1).
    """
    dtype = dW.dtype if np.issubdtype(dW.dtype, np.floating) else np.float64
    d, C = dW.shape
    return RANK_NOISE_FACTOR * float(np.finfo(dtype).eps) * float(fro) * (d ** -0.5 + C ** -0.5)


def _spectrum(dW: np.ndarray, min_vectors: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Right singular vectors (rows, float64), singular values (descending) and the rank tolerance.

    dW has low rank, so a seeded range sketch ``Z`` (C, k) captures its row space and only the
    small ``dW Z`` is decomposed. The sketch is accepted only when the residual ``E = dW - dW Z Z^T``
    provably cannot change the rank count (Weyl: every singular value moves by at most ``||E||``,
    which must be below the tolerance and below every captured value's distance to it); else k
    doubles, and past half the full size the full LAPACK SVD is used.
    """
    A = np.asarray(dW, dtype=np.float64)
    tol = _rank_tol(np.linalg.norm(A), dW)
    rng = np.random.default_rng(_SKETCH_SEED)
    k = max(64, min_vectors + _OVERSAMPLE)
    while 2 * k <= min(A.shape):
        Z = np.linalg.qr((rng.standard_normal((k, A.shape[0])) @ A).T)[0]
        B = A @ Z
        _, s, Vt = np.linalg.svd(B, full_matrices=False)
        resid = float(np.linalg.norm(B @ Z.T - A))
        rank = int(np.sum(s > tol))
        if rank + _OVERSAMPLE <= k and resid < tol and np.all(np.abs(s - tol) > resid):
            return Vt @ Z.T, s, tol
        k *= 2
    _, s, Vt = np.linalg.svd(A, full_matrices=False)
    return Vt, s, tol


def estimate_rank(dW: np.ndarray) -> int:
    """Numerical rank of dW: the number of singular values above the rounding-noise tolerance
    ``10 * eps(dW.dtype) * ||dW||_F * (1/sqrt(d) + 1/sqrt(C))`` (see :func:`_rank_tol`). SVD in float64."""
    _, s, tol = _spectrum(dW)
    return int(np.sum(s > tol))


def right_singular_vectors(dW: np.ndarray, S: int) -> np.ndarray:
    """Q (S, C) float64: the first S right singular vectors of dW, one per row."""
    return _spectrum(dW, S)[0][:S].copy()


def _drop_noise_columns(Q: np.ndarray, s: np.ndarray, tol: float) -> np.ndarray:
    """Zero the columns of Q whose norm is within the noise of Q itself.

    Rounding noise E of norm <= tol moves the span of the first S right singular vectors by up to
    ``tol / sigma_S`` (Wedin's bound), so a column of Q shorter than that has no observable sign
    (e.g. classes with softmax probability ~1e-20 under a peaked model). Scaled to unit length it
    would be a random constraint; zeroed, it neither separates nor blocks. Both the reference and
    the fast method see the same Q.
    """
    S = Q.shape[0]
    if S == 0 or s[S - 1] <= 0:
        return Q
    noise = tol / s[S - 1]
    return np.where(np.linalg.norm(Q, axis=0) > noise, Q, 0.0)


def _resolve_rank(dW: np.ndarray, S: int | None) -> tuple[int, np.ndarray]:
    """S (given or the rank) and Q; NotApplicable where RLG's assumption S < min(d, C) fails.

    A given S (the number of samples or tokens) is an upper bound: repeated labels make
    rank(dW) = rank(G) the number of distinct ones, and the right singular vectors past the rank
    span rounding noise, not label directions. So S = min(given S, rank(dW)). Below the rank (e.g.
    GradDrop adds directions to the update) the given S stands, as in the paper's code (gt_k).
    """
    d, C = dW.shape
    if S is not None and S < 0:
        raise ValueError(f"S must be >= 0, got {S}")
    Vt, sv, tol = _spectrum(dW, S or 0)
    rank = int(np.sum(sv > tol))
    if S is not None:
        if S >= min(d, C):
            raise NotApplicable(f"RLG needs S < min(d, C) = {min(d, C)}, got S = {S}")
        S = min(S, rank)
    else:
        S = rank
        if C - 1 <= d and S >= C - 1:
            # rows of G sum to zero, so rank(dW) <= C - 1: a full rank only bounds S from below
            raise NotApplicable(f"RLG needs S < min(d, C); rank(dW) = {S} is saturated at C - 1 = {C - 1}")
    if S >= min(d, C):
        raise NotApplicable(f"RLG needs S < min(d, C) = {min(d, C)}, got S = {S}")
    return S, _drop_noise_columns(Vt[:S], sv, tol)


# ----------------------------------------------------------------------------- the LP


def _unit_columns(Q: np.ndarray) -> np.ndarray:
    """Columns scaled to unit norm (zero columns stay zero: they never separate nor violate)."""
    norms = np.linalg.norm(Q, axis=0)
    return Q / np.where(norms > 0, norms, 1.0)


def _solve(U: np.ndarray, c: int, rows: np.ndarray) -> np.ndarray:
    """HiGHS on LP(c) with the constraints of ``rows`` only (see the module docstring): optimal r.

    Simplex first, then interior point. Where both give up (seen only on degenerate updates, when
    u_c lies on the boundary of the other columns' cone to within the tolerance) r = 0 is returned:
    no separator is claimed, the class counts as absent.
    """
    A = np.vstack([-U[:, c], -U[:, rows].T])
    b = np.full(A.shape[0], FEAS_TOL)
    b[0] = 1.0
    for method in ("highs", "highs-ipm"):
        res = linprog(U[:, c], A_ub=A, b_ub=b, bounds=(-R_MAX, R_MAX), method=method, options=_HIGHS)
        if res.status == 0:
            return res.x
    return np.zeros(U.shape[0])


def _violations(U: np.ndarray, c: int, r: np.ndarray) -> np.ndarray:
    """``u_j . r`` for every column, with class c itself set to +inf (it is no constraint)."""
    v = r @ U
    v[c] = np.inf
    return v


def separable_reference(Q: np.ndarray, c: int) -> bool:
    """LP(c) of the paper with every other column as a constraint (HiGHS), under the shared rule."""
    U = _unit_columns(np.asarray(Q, dtype=np.float64))
    return bool(U[:, c] @ _solve(U, c, np.delete(np.arange(U.shape[1]), c)) <= -0.5)


def reveal_labels_reference(dW: np.ndarray, S: int | None = None) -> tuple[set[int], int]:
    """Algorithm 1 as written: one full LP per class (slow: tens of seconds at C = 1000)."""
    S, Q = _resolve_rank(dW, S)
    return {c for c in range(Q.shape[1]) if S > 0 and separable_reference(Q, c)}, S


def _separable(U: np.ndarray, c: int, seed: np.ndarray, batch: int, check=None) -> tuple[bool, int, np.ndarray]:
    """LP(c) by column generation: (present, number of LP solves, the constraint columns of the last LP).

    The restricted LP is a relaxation: an optimum above -1/2 there means absent. A restricted
    optimum that satisfies every other column (to HiGHS' tolerance on top of FEAS_TOL, as if
    HiGHS had enforced it) solves the full LP. Otherwise the ``batch`` most violated columns join
    the constraints and it re-solves.
    """
    rows = seed[seed != c]
    for solves in range(1, U.shape[1] + 1):
        if check is not None:
            check()
        r = _solve(U, c, rows)
        v = _violations(U, c, r)
        v[rows] = np.inf  # HiGHS enforced these itself (to its tighter tolerance)
        worst = np.argsort(v)[:batch]
        new = worst[v[worst] < -_ACCEPT]
        if U[:, c] @ r > -0.5 or not new.size:
            return bool(U[:, c] @ r <= -0.5), solves, rows
        rows = np.concatenate([rows, new])
    raise AssertionError("column generation cannot add more columns than there are")


# ----------------------------------------------------------------------------- certificates


def _spanning_radius(sigma_min: float, lam: np.ndarray, b: np.ndarray) -> float:
    """Bound on ||r|| over all r with ``u_k . r >= -tol`` (tol = FEAS_TOL + HiGHS') on basis + extras.

    With x = M^T r (x_i >= -tol) and b = sum_w lam_w M^-1 u_w < 0, the extras give
    ``b.x >= -tol ||lam||_1``, so ``|x_i| <= tol (||lam||_1 + ||b||_1) / min|b_i|`` and
    ``||r|| <= sqrt(S) max|x_i| / sigma_min(M)``. Below 1/4, no class outside can reach
    ``u_c . r <= -1/2`` while satisfying K: its LP(c) optimum is >= -1/4, it is absent.
    """
    if not np.all(b < 0) or sigma_min <= 0:
        return np.inf
    beta = (np.sum(lam) - np.sum(b)) / np.min(-b)
    return float(_ACCEPT * np.sqrt(b.size) * beta / sigma_min)


def _extra_columns(coef: np.ndarray, sigma_min: float) -> np.ndarray | None:
    """Indices W (into ``coef``'s columns) that with the basis positively span R^S, proven, or None.

    ``coef`` holds candidate columns in basis coordinates (M^-1 u_j). One column with all
    coordinates negative suffices when the S labels are distinct; otherwise the LP
    ``min 1.lam  s.t.  coef lam <= -1, lam >= 0`` picks at most S columns (repeated labels). With
    all non-basis columns it is feasible in exact arithmetic, since the columns of Q sum to zero.
    """
    worst = coef.max(axis=0)
    w = int(np.argmin(worst))
    if worst[w] < 0 and _spanning_radius(sigma_min, np.ones(1), coef[:, w]) < 0.25:
        return np.array([w])
    res = linprog(np.ones(coef.shape[1]), A_ub=coef, b_ub=-np.ones(coef.shape[0]), bounds=(0, None),
                  method="highs", options=_HIGHS)
    if res.status != 0:
        return None
    W = np.flatnonzero(res.x > 0)
    return W if _spanning_radius(sigma_min, res.x[W], coef[:, W] @ res.x[W]) < 0.25 else None


def _spanning_set(Q: np.ndarray, U: np.ndarray, exclude: np.ndarray) -> np.ndarray | None:
    """A set K of columns, none in ``exclude``, that positively spans R^S (so every class outside K
    is absent), or None where none is found.

    The basis is successive projection (QR with column pivoting: largest residual column first).
    Present classes have the largest columns (G entry about -1, absent ones about 1/C), so the
    basis takes them first; extra columns then close the cone (:func:`_extra_columns`).
    """
    S = Q.shape[0]
    allowed = np.flatnonzero(~exclude)
    if allowed.size <= S:
        return None
    piv = scipy.linalg.qr(Q[:, allowed], mode="r", pivoting=True)[1]
    basis, others = allowed[piv[:S]], allowed[piv[S:]]
    M = U[:, basis]
    sigma_min = float(np.linalg.svd(M, compute_uv=False)[-1])
    if sigma_min <= 4 * _ACCEPT * np.sqrt(S):  # the radius bound could not get below 1/4
        return None
    W = _extra_columns(np.linalg.solve(M, U[:, others]), sigma_min)
    return None if W is None else np.union1d(basis, others[W])


def _scaled_violations(U: np.ndarray, c: int, r: np.ndarray) -> np.ndarray:
    """``u_j . r`` with r scaled to ``u_c . r = -1`` (-inf everywhere where that r leaves the box)."""
    scale = -(U[:, c] @ r)
    if scale <= 0 or np.abs(r).max() > R_MAX * scale:
        return np.full(U.shape[1], -np.inf)
    return _violations(U, c, r / scale)


def _explicit_separator(U: np.ndarray, c: int, rounds: int = 4) -> float:
    """Worst ``u_j.r`` (j != c) of a hand-made r with ``u_c.r = -1``; >= -FEAS_TOL: present.

    r = -u_c separates c whenever u_c is obtuse to every other column (the batch version of Zhao
    et al.'s single-sample test). The columns it violates, typically other present classes at
    about 90 degrees, are projected out of u_c (which makes them tight) and the check repeats.
    """
    u = U[:, c]
    r, tight = -u, np.zeros(0, int)
    for _ in range(rounds):
        bad = np.flatnonzero(_scaled_violations(U, c, r) < -FEAS_TOL)
        if not bad.size or tight.size + bad.size >= U.shape[0]:
            break
        tight = np.union1d(tight, bad)
        B = U[:, tight]
        r = B @ np.linalg.lstsq(B, u, rcond=None)[0] - u
    return float(_scaled_violations(U, c, r).min())


def _cone_bound(lam: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """Lower bound on -min LP(c) slack: ``_ACCEPT ||lam||_1 + ||e||_1 R_MAX`` per column.

    If ``u_c = U_A lam + e`` with lam >= 0 and no column of A is c, every r that LP(c) admits (to
    HiGHS' tolerance) has ``u_c.r >= -(_ACCEPT ||lam||_1 + ||e||_1 R_MAX)``. Below 1/4 the optimum
    cannot reach -1/2: c is absent under the shared rule, with no LP.
    """
    return _ACCEPT * np.abs(lam).sum(axis=0) + np.abs(resid).sum(axis=0) * R_MAX


def _inside_cone(U: np.ndarray, A: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Mask over ``cols``: proven inside the cone of the columns ``A`` (and not among them), all at once.

    One least-squares solve for every column: the coefficients are clipped at 0 and the residual
    of the clipped combination is bounded (:func:`_cone_bound`), so the proof needs no trust in
    the solve.
    """
    B = U[:, A]
    lam = np.clip(np.linalg.lstsq(B, U[:, cols], rcond=None)[0], 0, None)
    return (_cone_bound(lam, U[:, cols] - B @ lam) < 0.25) & ~np.isin(cols, A)


def _frame_search(Q: np.ndarray, U: np.ndarray, undecided: np.ndarray, check_budget) -> tuple[set, int, int, int, int]:
    """Every class of ``undecided`` decided when no spanning set exists (defended, multi-step, S given).

    The present classes are exactly the extreme rays of the cone of all columns, so a class inside
    the cone of a few others is absent. Columns are visited longest first (present classes carry
    the largest columns of Q) and collected in E. A column inside cone(E) (NNLS, bounded by
    :func:`_cone_bound`) is absent, and the simplicial cone that proved it is tried at once on every
    undecided column; any other column is decided by an explicit separator or LP(c) and joins E.
    Sign-SGD and GradDrop updates have thousands of near-duplicate absent columns, so a handful of
    cones decides them. Returns (labels, certified absent, certified present, LP classes, LP solves).
    """
    from scipy.optimize import nnls

    S = Q.shape[0]
    order = undecided[np.argsort(-np.linalg.norm(Q[:, undecided], axis=0), kind="stable")]
    open_ = np.zeros(U.shape[1], bool)
    open_[undecided] = True
    basis = scipy.linalg.qr(Q, mode="r", pivoting=True)[1][:S]  # the LP seed while E is still small
    E: list[int] = []
    labels: set[int] = set()
    absent = present = lp_classes = solves = 0
    for c in order:
        if not open_[c]:
            continue
        check_budget(int(open_.sum()), lp_classes)
        open_[c] = False
        others = [j for j in E if j != c]  # an LP's columns may have brought c itself into E
        if others:
            lam, _ = nnls(U[:, others], U[:, c])
            if _cone_bound(lam, U[:, c] - U[:, others] @ lam) < 0.25:
                absent += 1
                A = np.asarray(others)[lam > 0]
                cols = np.flatnonzero(open_)
                hit = cols[_inside_cone(U, A, cols)]
                open_[hit] = False
                absent += hit.size
                continue
        if _explicit_separator(U, int(c)) >= -FEAS_TOL:
            labels.add(int(c))
            present += 1
        else:
            if undecided.size <= 4 * S:  # few columns: the plain LP beats column generation
                seed = undecided
            else:
                seed = np.asarray(E, int) if len(E) >= S else basis
            found, n, rows = _separable(U, int(c), seed, batch=max(S, 8),
                                        check=lambda: check_budget(int(open_.sum()) + 1, lp_classes))
            lp_classes, solves = lp_classes + 1, solves + n
            if found:
                labels.add(int(c))
            else:  # u_c lies in the cone of the LP's constraint columns: those that span it join E
                lam, _ = nnls(U[:, rows], U[:, c])
                E.extend(int(j) for j in rows[lam > 0] if j not in E)
                continue
        if c not in E:
            E.append(int(c))
    return labels, absent, present, lp_classes, solves


def reveal_labels(dW: np.ndarray, S: int | None = None, max_lp_seconds: float | None = None) -> RLGResult:
    """RLG with the same answer as :func:`reveal_labels_reference`, 100x to 10000x faster.

    1. A positive-spanning set K certifies every class outside K absent (no LP).
    2. A class of K with an explicit separator is present (no LP, :func:`_explicit_separator`).
    3. The rest of K ("suspects", mostly absent columns picked into the basis because of repeated
       labels) are certified absent together by a second spanning set that avoids them; while
       that fails, the most present-looking suspect is decided by LP(c) (column generation).
    ``max_lp_seconds`` caps the time after the SVD (steps 1-3): past it the update is NotApplicable
    (an explicit n/a row, never a partial set). Defended updates (GradDrop, Sign-SGD) can have a
    rank in the hundreds and no certificate, and then need minutes per update.

    Without a first spanning set (S above the true rank, a singular basis, Sign-SGD or GradDrop
    updates) :func:`_frame_search` decides the classes: a class inside the cone of a few others is
    absent, proven for many columns at once; the rest get an explicit separator or the
    column-generation LP. Zeroed columns (within the noise, :func:`_drop_noise_columns`) are absent
    under the shared rule and never get an LP: with repeated labels under an untrained model they
    are nearly all C columns.
    """
    S, Q = _resolve_rank(dW, S)
    C = Q.shape[1]
    if S == 0:
        return RLGResult(frozenset(), 0, C, 0, 0, 0, fallback=False)
    start = time.perf_counter()

    def check_budget(undecided: int, lp_classes: int = 0) -> None:
        if max_lp_seconds is not None and time.perf_counter() - start > max_lp_seconds:
            raise NotApplicable(f"RLG: {undecided} classes still undecided after {max_lp_seconds:g} s (S = {S}, "
                                f"{lp_classes} decided by LP); raise attacks.rlg.max_lp_seconds")

    U = _unit_columns(Q)
    zero = ~U.any(axis=0)  # no observable sign (_drop_noise_columns): u_c.r = 0 > -1/2, absent by the rule
    K = _spanning_set(Q, U, zero)
    if K is None:
        labels, absent, present, lp_classes, solves = _frame_search(Q, U, np.flatnonzero(~zero), check_budget)
        return RLGResult(frozenset(labels), S, int(zero.sum()) + absent, present, lp_classes, solves, fallback=True)
    candidates = K
    worst = np.empty(candidates.size)
    for i, c in enumerate(candidates):
        check_budget(candidates.size - i)
        worst[i] = _explicit_separator(U, int(c))
    shown = worst >= -FEAS_TOL
    labels = {int(c) for c in candidates[shown]}
    order = np.argsort(-worst, kind="stable")
    suspects = [int(c) for c in candidates[order][~shown[order]]]  # most present-looking first
    seed = candidates[~zero[candidates]]
    lp_classes = solves = 0
    next_try = 0  # the second spanning set is retried after 1, 2, 4, ... LPs (each try is an LP over C columns)
    while suspects:
        check_budget(len(suspects), lp_classes)
        if lp_classes == next_try:
            next_try = max(1, 2 * next_try)
            if _spanning_set(Q, U, np.isin(np.arange(C), suspects) | zero) is not None:
                break
        c = suspects.pop(0)
        present, n, _ = _separable(U, c, seed, batch=max(S, 8),
                                   check=lambda: check_budget(len(suspects) + 1, lp_classes))
        lp_classes, solves = lp_classes + 1, solves + n
        if present:
            labels.add(c)
    return RLGResult(frozenset(labels), S, C - candidates.size + len(suspects),
                     int(shown.sum()), lp_classes, solves, fallback=False)


@register(
    "rlg",
    paper="Dang et al., Revealing and Protecting Labels in Distributed Training, NeurIPS 2021 (Algorithm 1)",
    needs=(),
)
def rlg(obs: Observation, num_labels: int | None = None, max_lp_seconds: float | None = None) -> Prediction:
    """RLG: classes whose column of Q is separable from all others by a hyperplane through 0.

    ``num_labels`` is S when it is known (batch size times steps); by default, the rank of dW.
    """
    result = reveal_labels(obs.dW, num_labels, max_lp_seconds)
    info = {
        "fallback": result.fallback,
        "certified_absent": result.certified_absent,
        "certified_present": result.certified_present,
        "lp_classes": result.lp_classes,
        "lp_solves": result.lp_solves,
        "rank_given": num_labels is not None,
    }
    return Prediction(labels=result.labels, num_labels=result.num_labels, info=info)
