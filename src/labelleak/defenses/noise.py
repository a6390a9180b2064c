"""Perturbation defenses: Gaussian noise and norm clipping of the sent update."""

from __future__ import annotations

import numpy as np

from labelleak.defenses.base import Tensors, register


@register("noise", ("sigma", float, lambda s: s >= 0, ">= 0"))
def gaussian_noise(tensors: Tensors, sigma: float, *, rng: np.random.Generator) -> Tensors:
    """Gaussian noise: add i.i.d. N(0, sigma^2) to every entry (absolute sigma, in gradient units)."""
    return tuple((t + sigma * rng.standard_normal(t.shape)).astype(t.dtype) for t in tensors)


@register("clip", ("max_norm", float, lambda c: c > 0, "> 0"))
def clip(tensors: Tensors, max_norm: float, *, rng: np.random.Generator) -> Tensors:
    """Norm clipping: scale the whole update (all layers jointly) to L2 norm at most max_norm."""
    norm = float(np.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors)))
    factor = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return tuple((t * factor).astype(t.dtype) for t in tensors)
