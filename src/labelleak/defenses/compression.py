"""Communication compression used as a defense: Sign-SGD, GradDrop, top-k, QSGD.

Every transform is applied to each sent tensor separately (``dW`` and ``db`` are two layers), so a
quantile or a norm is taken per layer. For ``dW`` this is exactly the official RLG code's GradDrop,
which thresholds at the p-quantile of the magnitudes of the whole last-layer matrix.
"""

from __future__ import annotations

import math

import numpy as np

from labelleak.defenses.base import Tensors, register


@register("signsgd")
def signsgd(tensors: Tensors, *, rng: np.random.Generator) -> Tensors:
    """Sign-SGD: the element-wise sign of the update (Bernstein et al. 2018)."""
    return tuple(np.sign(t).astype(t.dtype) for t in tensors)


@register("graddrop", ("p", float, lambda p: 0 <= p < 1, "in [0, 1)"))
def graddrop(tensors: Tensors, p: float, *, rng: np.random.Generator) -> Tensors:
    """GradDrop (Aji & Heafield 2017): zero entries whose magnitude is below the layer's p-quantile."""
    out = []
    for t in tensors:
        mag = np.abs(t)
        thr = np.quantile(mag, p) if t.size else 0.0
        out.append(np.where(mag < thr, 0, t).astype(t.dtype))
    return tuple(out)


@register("topk", ("fraction", float, lambda f: 0 < f <= 1, "in (0, 1]"))
def topk(tensors: Tensors, fraction: float, *, rng: np.random.Generator) -> Tensors:
    """Top-k sparsification: keep the ceil(fraction * size) largest-magnitude entries of each layer."""
    out = []
    for t in tensors:
        flat = t.reshape(-1)
        k = min(flat.size, max(1, math.ceil(fraction * flat.size)))
        keep = np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]
        kept = np.zeros_like(flat)
        kept[keep] = flat[keep]
        out.append(kept.reshape(t.shape))
    return tuple(out)


@register("qsgd", ("levels", int, lambda s: s >= 1, "an integer >= 1"))
def qsgd(tensors: Tensors, levels: int, *, rng: np.random.Generator) -> Tensors:
    """QSGD (Alistarh et al. 2017): unbiased stochastic rounding of |v|/||v|| to ``levels`` levels per layer."""
    out = []
    for t in tensors:
        norm = float(np.linalg.norm(t.astype(np.float64)))
        if norm == 0.0:
            out.append(np.zeros_like(t))
            continue
        scaled = np.abs(t.astype(np.float64)) / norm * levels
        low = np.floor(scaled)
        level = low + (rng.random(t.shape) < scaled - low)
        out.append((np.sign(t) * norm * level / levels).astype(t.dtype))
    return tuple(out)
