"""The spaces of an update (or of what is left of it) that ``rlg_counts`` searches its samples in.

Every feature lies in the column space of dW and every per-sample gradient in its row space; a
sample is a point ``a`` (h = U a) on the plane ``a . beta = 1``. Here: those spaces, moving points
between two of them, and the two tests a polished point must pass to be a sample (the per-sample
tolerance set by dW's noise, and the rank drop ``g^T R^+ h = N``).
"""

from __future__ import annotations

import numpy as np
import torch

from labelleak.attacks.counts_model import sample_gradient
from labelleak.attacks.counts_tolerances import ARITH_NOISE, MAX_ACCEPT_TOL, SAMPLE_NOISE_FACTOR

DT = torch.float64


class Space:
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
        self.Vp = torch.tensor(Vt[S:].T, dtype=DT)  # (C, C - S): the complement of the row space
        self.beta_t = torch.tensor(self.beta, dtype=DT)


def moved(x: np.ndarray, src: Space, dst: Space, lr_column: bool) -> np.ndarray:
    """Points (n, S_src [+ 1]) of one space's coordinates in another's (features h = U x)."""
    out = (x[:, : src.S] @ src.U.T) @ dst.U
    return np.hstack([out, x[:, src.S:]]) if lr_column else out


def rank_drop(space: Space, x: np.ndarray, W: np.ndarray, b: np.ndarray, y: int, N: int) -> float:
    """g^T R^+ h / N for the atom (h = U x, y) of the residual R = U diag(s) V^T: 1 for its samples."""
    return float((sample_gradient(space.U @ x, W, b, y) @ space.V) @ (x / space.s) / N)


def sample_tol(full: Space, h: np.ndarray, W: np.ndarray, b: np.ndarray, y: int, N: int) -> float:
    """How small the per-sample residual of a true sample (h, y) is: dW's noise over its size."""
    noise = max(full.noise, ARITH_NOISE * max(W.shape) * float(np.finfo(np.float64).eps) * full.top)
    size = np.linalg.norm(h) * np.linalg.norm(sample_gradient(h, W, b, y)) / N
    return float(min(MAX_ACCEPT_TOL, SAMPLE_NOISE_FACTOR * noise / max(size, 1e-300)))
