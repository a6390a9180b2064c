"""The rank of an update from its own spectrum: S sits at the signal/noise gap.

A real update is ``dW = H^T G + E``: rank S signal plus noise E from how it was made (storage in a
float dtype, the batch sum, and for K-step updates the weight difference (W0 - WK)/lr, whose
rounding scales with |W|/lr, not with |dW|). The noise singular values form a bulk past the
signal: flat for weight differences and additive noise (a Marchenko-Pastur bulk, its top within
a few times its lower quartile), spiky (S values up to ~100 times the bulk) for entrywise rounding,
but there of the order of ``eps * (max row norm + max column norm)`` (the Latala / Bandeira-van Handel bound on a matrix of independent
entries). So, with s the singular values in descending order:

* a value at or below that rounding floor is never signal (S <= the count above it);
* S = j is a candidate where the tail s[j:] looks like noise: s_j at or below the floor, or within
  ``FLAT`` times the tail's lower quartile (a value inside the signal is far above the lower
  quartile of the tail, which is noise whenever S <= min(d, C) / 2);
* S is the candidate with the largest gap s_{j-1} / s_j, the **margin**; a margin below
  ``MIN_MARGIN`` is no clear gap, and S is not guessed (:class:`NoClearGap`). Only S <= min(d, C) / 2
  is estimated: the noise bulk must be at least as large as the signal (else the lower quartile of
  the tail is signal, and bottom-edge gaps of a square noise bulk would pass). Structured updates
  (Sign-SGD, heavy GradDrop) have an exact rank in the hundreds: not a label count, so n/a; a
  larger S must be given.

Exact zero rows (dead features) and columns are left out first; then, when C <= d, the last
singular value is structurally zero (every row of G sums to zero, so dW 1 = 0) and takes no part.
The dtype only sets the floor; the estimate itself comes from the
spectrum, so float16/32/64 files and weight differences need no flag.

Large updates are sketched: a seeded range sketch Z (C, k) gives the top k values of dW Z; the
residual R = dW - dW Z Z^T is summarised by its RMS singular value (Hutchinson probes) and its top
singular value (block power iteration). A sketch is accepted when the gap falls at least
``OVERSAMPLE`` values before k and the residual's top value is below the last signal value by
the margin (nothing above the gap can hide in it); else k doubles, up to the full SVD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelleak.errors import NotApplicable

#: Values at or below ROUND_FACTOR * eps(dtype) * (max row norm + max column norm) are rounding noise.
ROUND_FACTOR = 1.0
#: A tail is noise-like when its first value is within FLAT times the tail's lower quartile.
FLAT = 100.0
#: The smallest signal/noise ratio s_{S-1} / s_S accepted as a gap.
MIN_MARGIN = 30.0
OVERSAMPLE = 16
_SKETCH_SEED = 0  # the sketch and the probes are random but seeded: results are deterministic
_PROBES = 4
_POWER_STEPS = 4


class NoClearGap(NotApplicable):
    """No signal/noise gap in the spectrum: S is not estimated (an explicit n/a, never a guess)."""


@dataclass(frozen=True)
class Spectrum:
    """Singular values of dW (descending; the top ``len(s)`` when sketched) and the gap read off them."""

    Vt: np.ndarray  # (k, C) float64 right singular vectors, one per row
    s: np.ndarray  # (k,) captured singular values, descending
    n: int  # min(d, C): how many singular values dW has
    floor: float  # rounding floor of the dtype (values at or below it are noise)
    rank: int | None  # S at the gap, or None where there is no clear gap
    margin: float  # s_{S-1} / (first noise value): inf for an exact zero tail, 0 with no signal
    noise: float  # the first noise singular value (or the residual's top, if larger)
    residual: float  # top singular value of the part of dW outside the captured subspace (0 if full)

    def describe(self) -> dict:
        """The estimate and its margin, as JSON-able numbers (for ``labelleak reveal``)."""
        return {"rank": self.rank, "margin": _finite(self.margin), "noise": float(self.noise),
                "signal": float(self.s[self.rank - 1]) if self.rank else 0.0, "floor": float(self.floor)}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def rounding_floor(dW: np.ndarray) -> float:
    """ROUND_FACTOR * eps(dtype) * (max row norm + max column norm) of dW (float64 for integer input)."""
    dtype = dW.dtype if np.issubdtype(dW.dtype, np.floating) else np.float64
    A = np.abs(np.asarray(dW, dtype=np.float64))
    rows = np.sqrt(np.einsum("ij,ij->i", A, A)).max(initial=0.0)
    cols = np.sqrt(np.einsum("ij,ij->j", A, A)).max(initial=0.0)
    return ROUND_FACTOR * float(np.finfo(dtype).eps) * float(rows + cols)


def find_gap(s: np.ndarray, n: int, floor: float, structural_zero: bool, tail_rms: float = 0.0,
             tail_count: int = 0) -> tuple[int | None, float]:
    """(S, margin) from singular values ``s`` (descending), or (None, best margin) with no clear gap.

    ``tail_rms`` and ``tail_count`` stand for the values past ``s`` that a sketch did not capture.
    With ``structural_zero`` the last of the n values (dW 1 = 0) is left out.
    """
    s = np.asarray(s, dtype=np.float64)
    m = s.size - 1 if structural_zero and s.size == n else s.size
    vals = s[:m]
    if vals.size == 0 or vals[0] <= floor:
        return 0, 0.0  # no signal at all (an all-zero update, or pure rounding)
    above = int(np.sum(vals > floor))
    tail = np.concatenate([vals, np.full(tail_count, tail_rms)])
    best, best_gap = None, 0.0
    # S = j needs a first noise value s_j, and a noise bulk at least as large as the signal: S <= min(d, C) / 2
    last = min(above, m - 1 + (tail_count > 0), n // 2)
    for j in range(1, last + 1):
        first_noise = vals[j] if j < m else tail_rms
        rest = tail[j:]
        flat = first_noise <= floor or first_noise <= FLAT * float(rest[(3 * rest.size) // 4])
        if not flat:
            continue
        gap = np.inf if first_noise <= 0 else vals[j - 1] / first_noise
        if gap > best_gap:
            best, best_gap = j, gap
    if best is None or best_gap < MIN_MARGIN:
        return None, best_gap
    return best, best_gap


def _residual_stats(A: np.ndarray, B: np.ndarray, Z: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """(RMS singular value, top singular value) of R = A - B Z^T, never formed: Hutchinson probes
    for ||R||_F and a block power iteration from them for ||R||_2."""
    d, C = A.shape
    count = min(d, C) - Z.shape[1]
    if count <= 0:
        return 0.0, 0.0

    def right(X):  # R X for X (C, p)
        return A @ X - B @ (Z.T @ X)

    def left(Y):  # R^T Y for Y (d, p)
        return A.T @ Y - Z @ (B.T @ Y)

    Y = right(rng.standard_normal((C, _PROBES)))
    rms = float(np.sqrt(np.sum(Y * Y) / _PROBES / count))
    top = 0.0
    for _ in range(_POWER_STEPS):
        Y = np.linalg.qr(Y)[0]
        X = left(Y)
        top = float(np.linalg.norm(X, 2))
        Y = right(X)
    return rms, top


def spectrum(dW: np.ndarray, min_vectors: int = 0) -> Spectrum:
    """The spectrum of dW with S at its gap (see the module docstring); ``min_vectors`` right
    singular vectors at least are returned (for a given S above the estimate)."""
    full = np.asarray(dW, dtype=np.float64)
    floor = rounding_floor(dW)
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    A = full[np.ix_(rows, cols)]  # exact zero rows (dead features) and columns carry neither signal nor noise
    d, C = A.shape
    n = min(d, C)
    structural = C <= d

    def embed(Vt: np.ndarray) -> np.ndarray:  # right singular vectors over all classes (zero where dropped)
        out = np.zeros((Vt.shape[0], full.shape[1]))
        out[:, cols] = Vt
        return out

    if n == 0:
        return Spectrum(np.zeros((0, full.shape[1])), np.zeros(0), 0, floor, 0, 0.0, 0.0, 0.0)
    rng = np.random.default_rng(_SKETCH_SEED)
    k = max(64, min_vectors + OVERSAMPLE)
    while 2 * k <= n:
        Z = np.linalg.qr((rng.standard_normal((k, d)) @ A).T)[0]
        B = A @ Z
        _, s, Vt = np.linalg.svd(B, full_matrices=False)
        rms, top = _residual_stats(A, B, Z, rng)
        rank, margin = find_gap(s, n, floor, False, rms, n - k)
        if rank is not None and rank + OVERSAMPLE <= k:
            signal = s[rank - 1] if rank else 0.0
            noise = max(s[rank] if rank < k else 0.0, top)
            if rank == 0 or signal >= MIN_MARGIN * top:
                margin = signal / noise if noise > 0 else (np.inf if rank else 0.0)
                return Spectrum(embed(Vt @ Z.T), s, n, floor, rank, margin, noise, top)
        k *= 2
    _, s, Vt = np.linalg.svd(A, full_matrices=False)
    rank, margin = find_gap(s, n, floor, structural)
    noise = float(s[rank]) if rank is not None and rank < s.size else 0.0
    return Spectrum(embed(Vt), s, n, floor, rank, margin, noise, 0.0)


def estimate_rank(dW: np.ndarray) -> int:
    """S at the signal/noise gap of dW's spectrum; :class:`NoClearGap` where there is none."""
    spec = spectrum(dW)
    if spec.rank is None:
        raise NoClearGap(no_gap_reason(spec))
    return spec.rank


def no_gap_reason(spec: Spectrum) -> str:
    return (f"no clear signal/noise gap in the spectrum of dW (best margin {spec.margin:.3g} < {MIN_MARGIN:g}; "
            f"RLG needs S < min(d, C) = {spec.n} and estimates S <= {spec.n // 2}): S is not estimated "
            "(give S if it is known)")
