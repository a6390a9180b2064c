"""Yin et al. (GradInversion, CVPR 2021), label restoration as eq. (5) of Dang et al.

A class is predicted present when its column of dW has a negative entry:
``S = {j : min_i dW[i, j] < 0}``. Exact only when the features entering the projection layer are
non-negative (ReLU): then an absent class's column is a non-negative combination of features.
With signed features (swish, tanh) absent classes get negative entries too and precision collapses.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.updates.format import Observation


@register("yin", paper="Yin et al., See through Gradients: Image Batch Recovery via GradInversion, CVPR 2021 (eq. 5 of Dang et al. 2021)")
def yin(obs: Observation) -> Prediction:
    """Classes whose dW column has a negative minimum (non-negative features assumed)."""
    col_min = obs.dW.min(axis=0)
    labels = frozenset(int(c) for c in np.flatnonzero(col_min < 0))
    return Prediction(labels=labels)
