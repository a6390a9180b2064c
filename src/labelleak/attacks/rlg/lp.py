"""LP(c), the per-class feasibility problem of RLG, posed once for every method and check.

Columns of Q are scaled to unit norm ``u_j`` (a positive scaling of a homogeneous constraint
changes nothing) and LP(c), eq. 4 of the paper, is posed bounded with its tolerance written into
the problem:

    min u_c.r   s.t.   u_c.r >= -1,   u_j.r >= -FEAS_TOL (j != c),   |r_i| <= R_MAX.

Class c is present iff the optimum is <= -1/2. An exact separator gives -1, a column clearly
inside the cone of the others about 0. FEAS_TOL = 1e-6 is ten times HiGHS' own feasibility
tolerance (set explicitly to 1e-7), so LPs whose exact slack is within noise of 0 are decided
robustly; the box keeps HiGHS off free variables, and a separator longer than R_MAX = 1/FEAS_TOL
separates by less than the tolerance anyway. Weak duality gives the absence bound that every
certificate uses: if ``u_c = U_A lam + e`` with lam >= 0 and c not in A, every r that LP(c)
admits has ``u_c.r >= -(FEAS_TOL ||lam||_1 + R_MAX ||e||_1)`` (:func:`cone_bound`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

#: LP(c) tolerance, part of the problem: ``u_j.r >= -FEAS_TOL`` for unit columns.
FEAS_TOL = 1e-6
HIGHS_TOL = 1e-7  # HiGHS' primal and dual feasibility tolerance, set explicitly
ACCEPT = FEAS_TOL + HIGHS_TOL  # the most a HiGHS solution can violate a row it enforced
#: Box on r: a separator longer than this separates by less than FEAS_TOL relative to its length.
R_MAX = 1 / FEAS_TOL
_HIGHS = {"primal_feasibility_tolerance": HIGHS_TOL, "dual_feasibility_tolerance": HIGHS_TOL}


def unit_columns(Q: np.ndarray) -> np.ndarray:
    """Columns scaled to unit norm (zero columns stay zero: they never separate nor violate)."""
    norms = np.linalg.norm(Q, axis=0)
    return Q / np.where(norms > 0, norms, 1.0)


def cone_bound(lam: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """``ACCEPT ||lam||_1 + R_MAX ||e||_1`` per column: -u_c.r is below it for every r that LP(c)
    admits to HiGHS' tolerance, if ``u_c = U_A lam + e`` (lam >= 0). Below 1/2: absent."""
    return ACCEPT * np.abs(lam).sum(axis=0) + np.abs(resid).sum(axis=0) * R_MAX


def solve(U: np.ndarray, c: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """HiGHS on LP(c) with the constraints of ``rows`` only: (optimal r, cone coefficients on ``rows``).

    The coefficients are the LP's duals (weak duality: ``u_c ~ U_rows lam``), None where HiGHS
    gave none. Simplex first, then interior point; where both give up (degenerate updates, u_c on
    the boundary of the cone to within the tolerance) r = 0 is returned: no separator is claimed.
    """
    A = np.vstack([-U[:, c], -U[:, rows].T])
    b = np.full(A.shape[0], FEAS_TOL)
    b[0] = 1.0
    for method in ("highs", "highs-ipm"):
        res = linprog(U[:, c], A_ub=A, b_ub=b, bounds=(-R_MAX, R_MAX), method=method, options=_HIGHS)
        if res.status == 0:
            y = -np.asarray(res.ineqlin.marginals)
            lam = np.clip(y[1:], 0, None) / (1 - y[0]) if y[0] < 1 else None
            return res.x, lam
    return np.zeros(U.shape[0]), None


def violations(U: np.ndarray, c: int, r: np.ndarray) -> np.ndarray:
    """``u_j . r`` for every column, with class c itself set to +inf (it is no constraint)."""
    v = r @ U
    v[c] = np.inf
    return v


def separable_reference(Q: np.ndarray, c: int) -> bool:
    """LP(c) of the paper with every other column as a constraint (HiGHS), under the shared rule."""
    U = unit_columns(np.asarray(Q, dtype=np.float64))
    return bool(U[:, c] @ solve(U, c, np.delete(np.arange(U.shape[1]), c))[0] <= -0.5)


def separable(U: np.ndarray, c: int, seed: np.ndarray, batch: int, check=None):
    """LP(c) by column generation: (present, LP solves, constraint columns of the last LP, r, duals).

    The restricted LP is a relaxation: an optimum above -1/2 there means absent. A restricted
    optimum that satisfies every other column (to HiGHS' tolerance on top of FEAS_TOL, as if
    HiGHS had enforced it) solves the full LP. Otherwise the ``batch`` most violated columns join
    the constraints and it re-solves.
    """
    rows = seed[seed != c]
    for solves in range(1, U.shape[1] + 1):
        if check is not None:
            check()
        r, lam = solve(U, c, rows)
        v = violations(U, c, r)
        v[rows] = np.inf  # HiGHS enforced these itself (to its tighter tolerance)
        worst = np.argsort(v)[:batch]
        new = worst[v[worst] < -ACCEPT]
        if U[:, c] @ r > -0.5 or not new.size:
            return bool(U[:, c] @ r <= -0.5), solves, rows, r, lam
        rows = np.concatenate([rows, new])
    raise AssertionError("column generation cannot add more columns than there are")
