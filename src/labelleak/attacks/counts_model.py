"""The model of a K-step update of the projection layer, which ``rlg_counts`` inverts and its proof re-runs.

One step of mean cross-entropy over N samples gives ``dW = H^T G / N``, ``db = 1^T G / N`` with
``g_i = softmax(W^T h_i + b) - e_{y_i}``; a K-step update is the sum of K such gradients, each at its
step's weights. The search (peeling, refinement) and the proof (the samples found simulated forward
and compared with the observation) use the same few functions here, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelleak.attacks.counts_tolerances import PROVEN_TOL


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
        gW, gb = step_gradient(W, b, features[sel], labels[sel], batch_size, C)
        dW += gW
        db += gb
        if k + 1 < num_steps:
            W -= lr * gW
            b -= lr * gb
    return dW, db


def step_gradient(W, b, H, y, n, C):
    """(dW, db) of mean CE over n samples of which (H, y) are some: H^T (softmax - Y) / n."""
    if len(y) == 0:
        return np.zeros_like(W), np.zeros_like(b)
    z = H @ W + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return H.T @ p / n, p.sum(axis=0) / n


def sample_gradient(h: np.ndarray, W: np.ndarray, b: np.ndarray, y: int) -> np.ndarray:
    """One sample's ``g = softmax(W^T h + b) - e_y`` (C,)."""
    z = h @ W + b
    p = np.exp(z - z.max())
    p /= p.sum()
    p[y] -= 1.0
    return p


def relative_residuals(dW: np.ndarray, db: np.ndarray, mW: np.ndarray, mb: np.ndarray) -> tuple[float, float]:
    """``||dW_model - dW|| / ||dW||`` and ``||db_model - db|| / ||db||``: how far the simulation is off."""
    res = float(np.linalg.norm(mW - dW) / max(np.linalg.norm(dW), 1e-300))
    res_b = float(np.linalg.norm(mb - db) / max(np.linalg.norm(db), 1e-300))
    return res, res_b


def is_proven(recon: Reconstruction, total: int) -> bool:
    """All ``total`` (K N) samples found and both relative residuals at most :data:`PROVEN_TOL`."""
    return recon.residual <= PROVEN_TOL and recon.residual_db <= PROVEN_TOL and len(recon.labels) == total
