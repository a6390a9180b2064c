"""Count metrics: how well an attack restores how many times each label occurs.

Per update, with predicted counts k^_c and true counts k_c (absent classes count 0), N = sum k_c
and C the number of classes:

* ``count_exact_match``: 1 iff k^_c = k_c for every class (the whole multiset is right);
* ``count_accuracy``: the fraction of classes present or predicted (k_c > 0 or k^_c > 0) whose
  count is exactly right;
* ``leacc``: iLRG's label-existence accuracy, exactly as that paper's code: the accuracy over
  **all C classes** of the indicator [k^_c > 0] against [k_c > 0]. Absent classes predicted
  absent count as correct, which inflates the value for large C;
* ``lnacc``: iLRG's label-number accuracy, the accuracy over **all C classes** of [k^_c = k_c];
* ``irec``: instance recall, sum_c min(k^_c, k_c) / N;
* ``lnacc_present``: LnAcc over the **present** classes only, the fraction of true classes with k^_c = k_c
  (over all C, absent classes that are predicted absent inflate LnAcc towards 1).

``leacc`` also applies to set-only attacks (existence from the predicted set); the others need
counts. Tables average the per-update values over updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

COUNT_METRICS = ("count_exact_match", "count_accuracy", "leacc", "lnacc", "irec", "lnacc_present")


def existence_accuracy(predicted: Iterable[int], true: Iterable[int], num_classes: int) -> float:
    """iLRG's LeAcc: accuracy over all C classes of 'class is present'."""
    P, T = set(predicted), set(true)
    wrong = len(P ^ T)
    return 1.0 - wrong / num_classes


def count_scores(predicted: Mapping[int, int], true: Mapping[int, int], num_classes: int) -> dict[str, float]:
    """All of :data:`COUNT_METRICS` for one update."""
    pred = {int(c): int(k) for c, k in predicted.items() if int(k) > 0}
    truth = {int(c): int(k) for c, k in true.items() if int(k) > 0}
    n = sum(truth.values())
    if n == 0:
        raise ValueError("the true counts are empty")
    union = set(pred) | set(truth)
    right = sum(pred.get(c, 0) == truth.get(c, 0) for c in union)
    return {
        "count_exact_match": float(pred == truth),
        "count_accuracy": right / len(union),
        "leacc": existence_accuracy(pred, truth, num_classes),
        "lnacc": 1.0 - (len(union) - right) / num_classes,
        "irec": sum(min(pred.get(c, 0), k) for c, k in truth.items()) / n,
        "lnacc_present": sum(pred.get(c, 0) == k for c, k in truth.items()) / len(truth),
    }
