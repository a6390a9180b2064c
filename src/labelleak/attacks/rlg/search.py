"""The fast exact search: the same answer as one LP(c) per class, mostly without LPs.

The columns of Q sum to zero (every row of G does), so together they positively span R^S. Any
small set K of columns that positively spans R^S proves every class outside K absent: each such
u_c is a non-negative combination of K's columns (closed form, :func:`_spanning_cone`). Of the
S + 1 to 2S classes in K, the present ones get an explicit separator (``-u_c``, made orthogonal to
the columns it violates), the others a second spanning set that avoids them; LP(c) (column
generation) is left only where both shortcuts fail. Where no spanning set exists (defended
updates, S given above or below the rank) absent classes are proven inside the cone of a few
others, many columns per proof (:func:`_frame_search`). Every decision leaves its certificate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import linprog, nnls

from labelleak.attacks.rlg.certificates import Certificates
from labelleak.attacks.rlg.lp import (
    _HIGHS,  # noqa: F401  (one HiGHS setting for every LP)
    ACCEPT,
    FEAS_TOL,
    R_MAX,
    cone_bound,
    separable,
    unit_columns,
    violations,
)
from labelleak.errors import NotApplicable


@dataclass(frozen=True)
class _Cone:
    """A positively spanning set: basis M (S columns), extra columns W with weights lam, b = M^-1 U_W lam < 0."""

    basis: np.ndarray
    extra: np.ndarray
    lam: np.ndarray
    b: np.ndarray

    @property
    def members(self) -> np.ndarray:
        return np.union1d(self.basis, self.extra)


def _spanning_radius(sigma_min: float, lam: np.ndarray, b: np.ndarray) -> float:
    """Bound on ||r|| over all r with ``u_k . r >= -ACCEPT`` on basis + extras (below 1/4: every
    class outside reaches at most ``u_c.r >= -1/4``, absent). With x = M^T r (x_i >= -tol) and
    b = sum_w lam_w M^-1 u_w < 0, ``|x_i| <= tol (||lam||_1 + ||b||_1) / min|b_i|``."""
    if not np.all(b < 0) or sigma_min <= 0:
        return np.inf
    beta = (np.sum(lam) - np.sum(b)) / np.min(-b)
    return float(ACCEPT * np.sqrt(b.size) * beta / sigma_min)


def _extra_columns(coef: np.ndarray, sigma_min: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(indices W into ``coef``'s columns, weights) that with the basis positively span R^S, or None.

    One column with all basis coordinates negative suffices when the labels are distinct; else the
    LP ``min 1.lam  s.t.  coef lam <= -1, lam >= 0`` picks at most S columns (repeated labels).
    """
    worst = coef.max(axis=0)
    w = int(np.argmin(worst))
    if worst[w] < 0 and _spanning_radius(sigma_min, np.ones(1), coef[:, w]) < 0.25:
        return np.array([w]), np.ones(1)
    res = linprog(np.ones(coef.shape[1]), A_ub=coef, b_ub=-np.ones(coef.shape[0]), bounds=(0, None),
                  method="highs", options=_HIGHS)
    if res.status != 0:
        return None
    W = np.flatnonzero(res.x > 0)
    ok = _spanning_radius(sigma_min, res.x[W], coef[:, W] @ res.x[W]) < 0.25
    return (W, res.x[W]) if ok else None


def _spanning_set(Q: np.ndarray, U: np.ndarray, exclude: np.ndarray) -> _Cone | None:
    """A positively spanning set of columns, none in ``exclude``, or None where none is found.

    The basis is successive projection (QR with column pivoting: largest residual column first);
    present classes have the largest columns, so the basis takes them first.
    """
    S = Q.shape[0]
    allowed = np.flatnonzero(~exclude)
    if allowed.size <= S:
        return None
    piv = scipy.linalg.qr(Q[:, allowed], mode="r", pivoting=True)[1]
    basis, others = allowed[piv[:S]], allowed[piv[S:]]
    M = U[:, basis]
    sigma_min = float(np.linalg.svd(M, compute_uv=False)[-1])
    if sigma_min <= 4 * ACCEPT * np.sqrt(S):  # the radius bound could not get below 1/4
        return None
    coef = np.linalg.solve(M, U[:, others])
    found = _extra_columns(coef, sigma_min)
    if found is None:
        return None
    W, lam = found
    return _Cone(basis, others[W], lam, coef[:, W] @ lam)


def _spanning_cone(U: np.ndarray, cone: _Cone, classes: np.ndarray, cert: Certificates) -> None:
    """Absence certificates for ``classes`` (outside the cone's members) from a spanning set.

    With x = M^-1 u_c and t = max(0, max_i -x_i / |b_i|): ``u_c = M (x + t|b|) + t U_W lam``, every
    coefficient non-negative (b = M^-1 U_W lam < 0)."""
    if not classes.size:
        return
    M = U[:, cone.basis]
    X = np.linalg.solve(M, U[:, classes])
    t = np.maximum(0.0, np.max(-X / -cone.b[:, None], axis=0))
    lam = np.vstack([X + t * -cone.b[:, None], np.outer(cone.lam, t)])
    cert.add_absent_many(classes, np.concatenate([cone.basis, cone.extra]), lam)


def _scaled_violations(U: np.ndarray, c: int, r: np.ndarray) -> np.ndarray:
    """``u_j . r`` with r scaled to ``u_c . r = -1`` (-inf everywhere where that r leaves the box)."""
    scale = -(U[:, c] @ r)
    if scale <= 0 or np.abs(r).max() > R_MAX * scale:
        return np.full(U.shape[1], -np.inf)
    return violations(U, c, r / scale)


def _explicit_separator(U: np.ndarray, c: int, rounds: int = 4) -> tuple[float, np.ndarray]:
    """(worst ``u_j.r`` for j != c, r) of a hand-made r with ``u_c.r = -1``; worst >= -FEAS_TOL: present.

    r = -u_c separates c whenever u_c is obtuse to every other column (the batch version of Zhao
    et al.'s single-sample test). The columns it violates are projected out of u_c and it repeats.
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
    return float(_scaled_violations(U, c, r).min()), r


def _nnls_decide(U: np.ndarray, c: int, seed: np.ndarray, batch: int, cert: Certificates, check) -> tuple[bool | None, np.ndarray]:
    """LP(c)'s answer from non-negative least squares of u_c on a growing set of columns, or None.

    NNLS's optimality conditions make its residual e = u_c - U_A lam a separator: ``U_A^T e <= 0``
    and ``u_c.e = ||e||^2``, so r = -e / ||e||^2 has ``u_c.r = -1`` and ``u_j.r >= 0`` on A. If r
    also holds on every other column, c is present; a residual small enough for the cone bound
    proves c absent; the columns r violates most join A and it repeats (column generation, as
    :func:`~labelleak.attacks.rlg.lp.separable`, at a fraction of an LP's cost). None: r leaves
    LP(c)'s box before either proof (c within the tolerance of the cone's boundary), LP(c) decides.
    """
    rows = seed[seed != c]
    u = U[:, c]
    while True:
        check()
        lam, _ = nnls(U[:, rows], u) if rows.size else (np.zeros(0), 0.0)
        e = u - U[:, rows] @ lam
        if cone_bound(lam, e) < 0.25:
            cert.add_absent(c, rows, lam)
            return False, rows
        ee = float(e @ e)
        if ee <= 0 or np.abs(e).max() > R_MAX * ee:
            return None, rows
        r = -e / ee
        v = violations(U, c, r)
        worst = np.argsort(v)[:batch]
        new = worst[(v[worst] < -FEAS_TOL) & ~np.isin(worst, rows)]
        if not new.size:
            if v.min() >= -FEAS_TOL:
                cert.add_present(c, r)
                return True, rows
            return None, rows
        rows = np.concatenate([rows, new])


def _lp_decide(U: np.ndarray, c: int, seed: np.ndarray, S: int, cert: Certificates, check) -> tuple[bool, int, np.ndarray]:
    """LP(c), with its certificate: (present, LP solves, constraint columns). NNLS first
    (:func:`_nnls_decide`, no LP solve where it decides), then HiGHS by column generation."""
    decided, rows = _nnls_decide(U, c, seed, max(S, 8), cert, check)
    if decided is not None:
        return decided, 0, rows
    found, n, rows, r, lam = separable(U, c, seed, batch=max(S, 8), check=check)
    if found:
        cert.add_present(c, r)
        return True, n, rows
    if lam is None or cone_bound(lam, U[:, c] - U[:, rows] @ lam) >= 0.5:
        lam, _ = nnls(U[:, rows], U[:, c])
    cert.add_absent(c, rows, lam)
    return False, n, rows


def _inside_cone(U: np.ndarray, A: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask over ``cols`` proven inside the cone of the columns ``A``, their clipped coefficients)."""
    B = U[:, A]
    lam = np.clip(np.linalg.lstsq(B, U[:, cols], rcond=None)[0], 0, None)
    return (cone_bound(lam, U[:, cols] - B @ lam) < 0.25) & ~np.isin(cols, A), lam


def _frame_search(Q: np.ndarray, U: np.ndarray, undecided: np.ndarray, cert: Certificates, check_budget,
                  check_labels):
    """Every class of ``undecided`` decided when no spanning set exists (defended, multi-step, S given).

    The present classes are the extreme rays of the cone of all columns, so a class inside the cone
    of a few others is absent. Columns are visited longest first and collected in E. A column inside
    cone(E) (NNLS) is absent, and the simplicial cone that proved it is tried at once on every
    undecided column; any other column is decided by an explicit separator or LP(c) and joins E.
    Returns (labels, classes shown present without an LP, LP classes, LP solves).
    """
    S = Q.shape[0]
    order = undecided[np.argsort(-np.linalg.norm(Q[:, undecided], axis=0), kind="stable")]
    open_ = np.zeros(U.shape[1], bool)
    open_[undecided] = True
    basis = scipy.linalg.qr(Q, mode="r", pivoting=True)[1][:S]  # the LP seed while E is still small
    E: list[int] = []
    labels: set[int] = set()
    lp_classes = solves = shown = 0
    for c in order:
        if not open_[c]:
            continue
        check_budget()
        open_[c] = False
        others = [j for j in E if j != c]
        if others:
            lam, _ = nnls(U[:, others], U[:, c])
            if cone_bound(lam, U[:, c] - U[:, others] @ lam) < 0.25:
                cert.add_absent(int(c), np.asarray(others), lam)
                A = np.asarray(others)[lam > 0]
                cols = np.flatnonzero(open_)
                hit, coef = _inside_cone(U, A, cols)
                cert.add_absent_many(cols[hit], A, coef[:, hit])
                open_[cols[hit]] = False
                continue
        worst, r = _explicit_separator(U, int(c))
        if worst >= -FEAS_TOL:
            labels.add(int(c))
            cert.add_present(int(c), r)
            shown += 1
            check_labels(labels)
        else:
            seed = undecided if undecided.size <= 4 * S else (np.asarray(E, int) if len(E) >= S else basis)
            found, n, rows = _lp_decide(U, int(c), seed, S, cert, check_budget)
            lp_classes, solves = lp_classes + 1, solves + n
            if found:
                labels.add(int(c))
                check_labels(labels)
            else:  # u_c lies in the cone of the LP's constraint columns: those that span it join E
                cols, lam = cert.absent[int(c)]
                E.extend(int(j) for j in cols if j not in E)
                continue
        if c not in E:
            E.append(int(c))
    return labels, shown, lp_classes, solves


@dataclass(frozen=True)
class SearchResult:
    labels: frozenset[int]
    certified_absent: int  # classes decided absent without an LP
    certified_present: int  # classes with an explicit separator, no LP
    lp_classes: int
    lp_solves: int
    fallback: bool  # no spanning set: decided by _frame_search
    certificates: Certificates


def search(Q: np.ndarray, zero_tol: float, max_seconds: float | None = None,
           max_labels: int | None = None) -> SearchResult:
    """Decide every class of Q (S, C) with certificates; columns no longer than ``zero_tol`` are noise
    (no observable sign: zeroed, absent under the rule, no LP).

    1. A positive-spanning set K certifies every class outside K absent.
    2. A class of K with an explicit separator is present.
    3. The rest of K ("suspects") are certified absent together by a second spanning set that
       avoids them; while that fails, the most present-looking suspect is decided by LP(c).
    Without a first spanning set :func:`_frame_search` decides. ``max_seconds`` (None: no limit) makes
    an update that needs longer NotApplicable, never a partial set. ``max_labels`` (S when S comes
    from the spectrum): more classes proven present than that is NotApplicable as soon as it is found.
    """
    S, C = Q.shape
    cert = Certificates(Q, zero_tol)
    Q = np.where(np.linalg.norm(Q, axis=0) > zero_tol, Q, 0.0)
    start = time.perf_counter()

    def check_budget() -> None:
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            raise NotApplicable(f"RLG: still undecided after {max_seconds:g} s (S = {S}); "
                                "raise attacks.rlg.max_lp_seconds or set it to null")

    def check_labels(labels) -> None:
        if max_labels is not None and len(labels) > max_labels:
            raise NotApplicable(
                f"RLG: more than S = {max_labels} classes are separable, but dW = H^T G of rank S holds at most S "
                "labels: the update is not a softmax gradient's projection (a defense, e.g. GradDrop, broke the "
                "linear dependency); give S to decide at that rank")

    U = unit_columns(Q)
    zero = ~U.any(axis=0)
    cert.zero = {int(c) for c in np.flatnonzero(zero)}
    if S == 0:
        cert.zero = set(range(C))
        return SearchResult(frozenset(), C, 0, 0, 0, False, cert)
    cone = _spanning_set(Q, U, zero)
    if cone is None:
        labels, shown, lp_classes, solves = _frame_search(Q, U, np.flatnonzero(~zero), cert, check_budget,
                                                         check_labels)
        return SearchResult(frozenset(labels), C - shown - lp_classes, shown, lp_classes, solves, True, cert)
    K = cone.members
    outside = np.flatnonzero(~np.isin(np.arange(C), K) & ~zero)
    _spanning_cone(U, cone, outside, cert)
    worst = np.empty(K.size)
    for i, c in enumerate(K):
        check_budget()
        worst[i], r = _explicit_separator(U, int(c))
        if worst[i] >= -FEAS_TOL:
            cert.add_present(int(c), r)
    shown = worst >= -FEAS_TOL
    labels = {int(c) for c in K[shown]}
    order = np.argsort(-worst, kind="stable")
    suspects = [int(c) for c in K[order][~shown[order]]]  # most present-looking first
    seed = K[~zero[K]]
    lp_classes = solves = 0
    next_try = 0  # the second spanning set is retried after 1, 2, 4, ... LPs
    while suspects:
        check_budget()
        if lp_classes == next_try:
            next_try = max(1, 2 * next_try)
            second = _spanning_set(Q, U, np.isin(np.arange(C), suspects) | zero)
            if second is not None:
                _spanning_cone(U, second, np.asarray(suspects), cert)
                break
        c = suspects.pop(0)
        present, n, _ = _lp_decide(U, c, seed, S, cert, check_budget)
        lp_classes, solves = lp_classes + 1, solves + n
        if present:
            labels.add(c)
    check_labels(labels)
    return SearchResult(frozenset(labels), C - int(shown.sum()) - lp_classes, int(shown.sum()), lp_classes, solves,
                        False, cert)
