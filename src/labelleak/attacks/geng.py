"""Geng et al. (arXiv 2110.09074): zero-shot label counts, FedSGD and FedAvg (K-step) forms.

One step of mean CE over B samples gives dW column sums  s_c = (1/B) sum_k (p_kc - y_kc) S_k.
Approximating every feature sum S_k by the mean feature sum O of dummy inputs and every p_k by
the dummy inputs' softmax, n_c = P_c - (B / O) s_c with P_c = sum over the N = K*B dummy inputs of
p_kc. The K-step form reads the update file's dW (the *sum* of the K step gradients, i.e. FedAvg's
(W0 - WK)/lr) with the same formula and N = K*B dummies (the model's drift over the K steps is
ignored, as in the paper). Counts are discretised as in the reference: classes ordered by the
relative rounding error of n_c, whole rounded counts taken until N labels are reached, then
single labels of the remaining classes, truncated to N. Assumes non-negative features.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.dummy import dummy_inputs, forward_stats
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation


def discretise(estimate: np.ndarray, n: int) -> Counter:
    """Integer counts summing to n from the real-valued estimates (Geng et al.'s rounding rule)."""
    est = np.asarray(estimate, dtype=np.float64)
    if not np.all(np.isfinite(est)):
        raise NotApplicable("geng: the count estimates are not finite (an overflowing update, or dummy "
                            "features that sum to zero)")
    r = np.maximum(np.rint(est), 0)  # floats: a count past an int64 must not wrap around
    err = np.abs(est - r) / np.maximum(r, 1)
    out: list[int] = []
    for c in np.argsort(err, kind="stable"):
        if len(out) >= n:
            break
        out += [int(c)] * int(min(r[c], n))  # out is cut to n labels anyway
    if len(out) < n:
        unseen = [int(c) for c in np.argsort(-err, kind="stable") if r[c] == 0]
        out += unseen[: n - len(out)]
    return Counter(out[:n])


@register("geng", paper="Geng, Mou, Li, Li, Wu, Wu, Towards General Deep Leakage in Federated Learning, arXiv 2110.09074",
          needs=("batch_size", "model"), gives_counts=True)
def geng(obs: Observation, model=None, dummy: str = "random", seed: int = 0) -> Prediction:
    """Counts n_c = P_c - (B / O) s_c from dummy inputs through the current model.

    Dummies follow the input distribution: the paper's U[0, 1) (``dummy="uniform"``) is the range of
    its raw pixels; labelleak's inputs are standardised, so the default is N(0, 1) (``"random"``).
    """
    k = obs.steps or 1
    n = obs.batch_size * k
    stats = forward_stats(model, dummy_inputs(model, n, dummy, seed))
    mean_sum = float(stats.feature_sums.mean())
    if not np.isfinite(mean_sum) or mean_sum == 0:
        raise NotApplicable(f"geng: the dummy inputs' mean feature sum is {mean_sum:g}, the estimate divides by it")
    s = obs.dW.astype(np.float64).sum(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        estimate = stats.probs.sum(axis=0) - obs.batch_size / mean_sum * s
    counts = discretise(estimate, n)
    return Prediction(labels=frozenset(counts), num_labels=n, counts=dict(counts),
                      info={"mean_feature_sum": mean_sum, "form": "fedsgd" if k == 1 else "fedavg"})
