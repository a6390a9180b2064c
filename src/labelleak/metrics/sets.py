"""Set metrics of Table 1: precision, recall, F1 and exact match of a predicted label set.

Per update: precision = |P & T| / |P| (0 for an empty prediction), recall = |P & T| / |T|,
F1 = their harmonic mean (0 when both are 0), exact match = 1 iff P == T. Tables average these
per-update values over updates (the mean of per-update scores, not a pooled count).
"""

from __future__ import annotations

from collections.abc import Iterable


def set_scores(predicted: Iterable[int], true: Iterable[int]) -> dict[str, float]:
    P, T = set(predicted), set(true)
    if not T:
        raise ValueError("the true label set is empty")
    hit = len(P & T)
    precision = hit / len(P) if P else 0.0
    recall = hit / len(T)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "exact_match": float(P == T)}


SET_METRICS = ("precision", "recall", "f1", "exact_match")
