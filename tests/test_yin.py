"""Yin et al. (eq. 5): exact for non-negative (ReLU) features, breaks for signed (swish) features."""

from __future__ import annotations

import numpy as np
from conftest import make_update

from labelleak.attacks import get_attack
from labelleak.metrics.sets import set_scores
from labelleak.updates.format import Observation


def _yin_scores(activation, seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(200, size=10, replace=False)
    _, _, upd = make_update(activation=activation, d=128, num_classes=200, labels=tuple(labels), seed=seed)
    pred = get_attack("yin")(Observation(dW=upd.dW))
    return set_scores(pred.labels, set(labels.tolist()))


def test_yin_exact_on_relu_features():
    for seed in range(3):
        s = _yin_scores("relu", seed)
        assert s["exact_match"] == 1.0


def test_yin_precision_collapses_on_swish_features():
    for seed in range(3):
        s = _yin_scores("swish", seed)
        assert s["recall"] == 1.0 and s["precision"] < 0.3
