"""Certificates: every RLG decision as evidence that plain linear algebra checks, no solver trusted.

For the columns ``u_j`` of Q scaled to unit norm (see :mod:`labelleak.attacks.rlg.lp`):

* **present** c: a vector r with ``u_c.r < 0`` and, scaled to ``u_c.r = -1/2``, ``u_j.r >= -FEAS_TOL``
  for every j != c and ``|r_i| <= R_MAX``: a feasible point of LP(c) with value -1/2;
* **absent** c: coefficients ``lam >= 0`` on other columns A with ``u_c = U_A lam + e`` and
  ``FEAS_TOL ||lam||_1 + R_MAX ||e||_1 < 1/2`` (weak duality: LP(c) cannot reach -1/2);
* **zero** c: a column of Q within the noise (``||q_c|| <= zero_tol``, and zero_tol at most twice
  the noise over sigma_min(dW Q^T), Wedin's bound): no observable sign.

The file also holds Q itself, so the verifier checks that Q is an orthonormal basis of dW's row
space up to the stated margin: sigma_min(dW Q^T) over the top singular value of dW's part outside
it is recomputed from the update. File format (``.npz``, ``kind = "labelleak-rlg-certificates"``,
``version = 1``): ``Q`` (S, C) float64; ``zero_tol``; ``present`` (p,) and ``separators`` (p, S);
``absent`` (m,) with CSR rows ``absent_ptr`` (m+1,), ``absent_cols``, ``absent_coef``; ``zero`` (z,).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labelleak.attacks.rlg.lp import FEAS_TOL, R_MAX, unit_columns
from labelleak.errors import LabelleakError

KIND = "labelleak-rlg-certificates"
VERSION = 1


@dataclass
class Certificates:
    """Evidence for one RLG answer (built by the search, checked by :func:`verify`)."""

    Q: np.ndarray
    zero_tol: float
    present: dict[int, np.ndarray] = field(default_factory=dict)  # class -> separator r (S,)
    absent: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # class -> (cols, lam)
    zero: set[int] = field(default_factory=set)

    def add_present(self, c: int, r: np.ndarray) -> None:
        self.present[int(c)] = np.asarray(r, dtype=np.float64)

    def add_absent(self, c: int, cols: np.ndarray, lam: np.ndarray) -> None:
        keep = lam > 0
        self.absent[int(c)] = (np.asarray(cols, dtype=np.int64)[keep], np.asarray(lam, dtype=np.float64)[keep])

    def add_absent_many(self, classes: np.ndarray, cols: np.ndarray, lam: np.ndarray) -> None:
        """Columns ``classes`` each with coefficients ``lam[:, i]`` on the same columns ``cols``."""
        for i, c in enumerate(classes):
            self.add_absent(int(c), cols, lam[:, i])

    def save(self, path) -> None:
        from labelleak.io import atomic_path

        absent = sorted(self.absent)
        ptr = np.cumsum([0] + [self.absent[c][0].size for c in absent])
        present = sorted(self.present)
        S = self.Q.shape[0]
        arrays = {
            "kind": np.asarray(KIND), "version": np.asarray(VERSION), "Q": self.Q, "zero_tol": np.asarray(self.zero_tol),
            "present": np.asarray(present, dtype=np.int64),
            "separators": np.asarray([self.present[c] for c in present], dtype=np.float64).reshape(len(present), S),
            "absent": np.asarray(absent, dtype=np.int64), "absent_ptr": ptr.astype(np.int64),
            "absent_cols": np.concatenate([self.absent[c][0] for c in absent] or [np.zeros(0, np.int64)]),
            "absent_coef": np.concatenate([self.absent[c][1] for c in absent] or [np.zeros(0)]),
            "zero": np.asarray(sorted(self.zero), dtype=np.int64),
        }
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path) -> Certificates:
        from labelleak.updates.format import read_npz

        a = read_npz(path, "an RLG certificate file")
        if str(a.get("kind", "")) != KIND or int(a.get("version", -1)) != VERSION:
            raise LabelleakError(f"{path}: not an RLG certificate file (kind {KIND!r}, version {VERSION})")
        try:
            cert = cls(np.asarray(a["Q"], dtype=np.float64), float(a["zero_tol"]))
            for c, r in zip(a["present"], a["separators"]):
                cert.present[int(c)] = r
            ptr = a["absent_ptr"]
            for i, c in enumerate(a["absent"]):
                cert.absent[int(c)] = (a["absent_cols"][ptr[i]:ptr[i + 1]], a["absent_coef"][ptr[i]:ptr[i + 1]])
            cert.zero = {int(c) for c in a["zero"]}
        except (KeyError, IndexError, ValueError) as exc:
            raise LabelleakError(f"{path}: malformed RLG certificate file ({exc})") from None
        return cert

    @property
    def labels(self) -> frozenset[int]:
        return frozenset(self.present)


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: ``ok`` when every class has a valid certificate."""

    ok: bool
    problems: list[str]
    worst_present_slack: float  # min over present of (min_j u_j.r + FEAS_TOL) at u_c.r = -1/2 (>= 0 valid)
    worst_absent_slack: float  # min over absent of 1/2 - bound (> 0 valid)
    margin: float  # recomputed sigma_min(dW Q^T) / ||dW (I - Q^T Q)||_2
    orthonormality: float  # ||Q Q^T - I||_max

    def describe(self) -> dict:
        return {"ok": self.ok, "problems": self.problems[:20], "num_problems": len(self.problems),
                "worst_present_slack": self.worst_present_slack, "worst_absent_slack": self.worst_absent_slack,
                "margin": self.margin if np.isfinite(self.margin) else None, "orthonormality": self.orthonormality}


def _outside_norm(A: np.ndarray, Q: np.ndarray, steps: int = 30) -> float:
    """Top singular value of A (I - Q^T Q), by power iteration from a seeded start."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(A.shape[1])
    top = 0.0
    for _ in range(steps):
        x = x - Q.T @ (Q @ x)
        y = A @ x
        x = A.T @ y
        x = x - Q.T @ (Q @ x)
        nx = np.linalg.norm(x)
        if nx == 0:
            return 0.0
        top = float(np.sqrt(nx))
        x = x / nx
    return top


def verify(dW: np.ndarray, cert: Certificates) -> Verification:
    """Check every certificate against the update; report the worst margins. Plain numpy only."""
    A = np.asarray(dW, dtype=np.float64)
    Q = cert.Q
    problems: list[str] = []
    C = A.shape[1]
    if Q.ndim != 2 or Q.shape[1] != C:
        return Verification(False, [f"Q has shape {Q.shape}, the update has {C} classes"], -np.inf, -np.inf, 0.0, np.inf)
    S = Q.shape[0]
    ortho = float(np.abs(Q @ Q.T - np.eye(S)).max()) if S else 0.0
    if ortho > 1e-8:
        problems.append(f"Q's rows are not orthonormal (error {ortho:.2g})")
    signal = float(np.linalg.svd(A @ Q.T, compute_uv=False)[-1]) if S else 0.0
    noise = _outside_norm(A, Q)
    margin = signal / noise if noise > 0 else np.inf
    if S and margin < 1 - 1e-6:  # Q must span dW's top S right singular directions
        problems.append(f"Q is not dW's top-S right singular subspace: sigma_min(dW Q^T) / outside = {margin:.3g} < 1")
    seen = [*cert.present, *cert.absent, *cert.zero]
    if sorted(seen) != list(range(C)):
        problems.append(f"{len(set(seen))} of {C} classes decided, {len(seen) - len(set(seen))} twice")
    norms = np.linalg.norm(Q, axis=0)
    zero = np.asarray(sorted(cert.zero), dtype=np.int64)
    if zero.size and norms[zero].max() > cert.zero_tol:
        problems.append(f"{int(np.sum(norms[zero] > cert.zero_tol))} 'zero' columns are longer than zero_tol")
    from labelleak.attacks.rlg.spectrum import rounding_floor

    allowed = 2 * max(noise, rounding_floor(dW)) / signal if signal > 0 else np.inf
    if zero.size and cert.zero_tol > allowed:
        problems.append(f"zero_tol {cert.zero_tol:.2g} is above the noise bound {allowed:.2g} (Wedin)")
    Qz = Q.copy()
    Qz[:, zero] = 0.0
    U = unit_columns(Qz)
    worst_p = np.inf
    for c, r in cert.present.items():
        a = float(U[:, c] @ r)
        if not a < 0:
            problems.append(f"class {c}: separator has u_c.r = {a:.3g} >= 0")
            worst_p = -np.inf
            continue
        rs = r * (0.5 / -a)
        v = rs @ U
        v[c] = np.inf
        slack = min(float(v.min()) + FEAS_TOL, R_MAX - float(np.abs(rs).max()))
        worst_p = min(worst_p, slack)
        if slack < 0:
            problems.append(f"class {c}: separator violates column {int(np.argmin(v))} by {-float(v.min()):.3g}")
    worst_a = np.inf
    for c, (cols, lam) in cert.absent.items():
        if np.any(lam < 0) or np.any(cols == c) or (cols.size and (cols.min() < 0 or cols.max() >= C)):
            problems.append(f"class {c}: cone coefficients negative or on c itself")
            worst_a = -np.inf
            continue
        e = U[:, c] - U[:, cols] @ lam
        slack = 0.5 - (FEAS_TOL * float(lam.sum()) + R_MAX * float(np.abs(e).sum()))
        worst_a = min(worst_a, slack)
        if slack <= 0:
            problems.append(f"class {c}: cone bound {0.5 - slack:.3g} >= 1/2")
    return Verification(not problems, problems, worst_p, worst_a, margin, ortho)
