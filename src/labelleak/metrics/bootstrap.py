"""Means with 95% bootstrap confidence intervals (SciPy), seeded so tables are reproducible."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values, *, seed: int = 0, level: float = 0.95, n_resamples: int = 2000) -> tuple[float, float, float]:
    """(mean, low, high) of ``values``; percentile bootstrap. NaN for an empty sample.

    A constant sample has a degenerate interval equal to its mean.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"),) * 3
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return mean, mean, mean
    res = stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples,
                          method="percentile", rng=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)
