"""Dimitrov, Balunovic, Konstantinov, Vechev (TMLR 2022): label counts from a K-step FedAvg update.

The FedAvg label restoration of "Data Leakage in Federated Averaging" runs Geng et al.'s FedSGD count
formula with its statistics estimated at *every* local step (reference code: eth-sri/fedavg_leakage,
``fedavg/utils/flax_losses.py``, ``restore_labels``, option ``aaai_avg``). The weights of the inner steps
are unknown, so the statistics are computed with N dummy inputs at the start model theta_0 and at the
end model theta_K = theta_0 - lr * (sum of the K step gradients), and linearly interpolated:

    P_c(j) = (1 - j/K) P_c(start) + (j/K) P_c(end),   O(j) likewise,   j = 0 .. K-1

(step j's gradient is taken at the weights j/K of the way along), with P_c the summed softmax of
class c over the N = K*B dummies and O their mean feature sum. With s_c the sum of dW's column c
(the file's dW is (W0 - WK)/lr, the sum of the K step gradients) the per-step raw counts are

    n_c(j) = P_c(j) - (B / O(j)) s_c          (= N p_c(j) - N s_c / (O(j) K), the paper's form)

averaged over j, then discretised to N labels. Assumptions (those of Geng et al.): every sample's
softmax and feature sum are close to the dummies' means, features are non-negative (ReLU-type),
and the statistics move linearly between the start and the end of the local training.

Only the projection layer's update is observed, so the *end model* is the start body with the end
head (W - lr dW, b - lr db); the body stays at the start weights and O does not move. Option
``interpolate="weights"`` computes P at the interpolated heads W - (j/K) lr dW instead of
interpolating the statistics. With K = 1 the only point is j = 0, the start model, and the
attack is Geng et al.'s, count for count (same dummies, same formula, same rounding).
Rounding: Geng et al.'s rule (:func:`labelleak.attacks.geng.discretise`) by default, so that K = 1 is
``geng``; ``rounding="remainder"`` is the reference code's floor + largest-remainder rule.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.dummy import dummy_inputs
from labelleak.attacks.geng import discretise
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

PAPER = ("Dimitrov, Balunovic, Konstantinov, Vechev, Data Leakage in Federated Averaging, TMLR 2022 "
         "(code: github.com/eth-sri/fedavg_leakage)")


def local_lr(obs: Observation, lr: float | None) -> float | None:
    """The client's learning rate: option ``lr``, else the update's meta ``local_lr``, else None."""
    if lr is not None:
        value = float(lr)
    else:
        meta = obs.meta.get("local_lr") if isinstance(obs.meta, dict) else None
        if isinstance(meta, bool) or not isinstance(meta, (int, float)):
            return None
        value = float(meta)
    if not np.isfinite(value) or value <= 0:
        raise NotApplicable(f"the local learning rate must be a positive number, got {value:g}")
    return value


def require_lr(obs: Observation, lr: float | None, method: str) -> float | None:
    """The learning rate when K > 1 needs it (None for K = 1); NotApplicable when it is unknown."""
    k = obs.steps or 1
    value = local_lr(obs, lr)
    if k > 1 and value is None:
        raise NotApplicable(f"{method}: K = {k} local steps need the local learning rate "
                            f"(option lr or the update's meta local_lr), which this update does not give")
    return value


def largest_remainder(estimate: np.ndarray, n: int) -> Counter:
    """Integer counts summing to n: floors of the (clipped) estimate, then +1 to the largest
    remainders (or -1 from the non-zero counts with the smallest ones) until they sum to n."""
    est = np.asarray(estimate, dtype=np.float64)
    if not np.all(np.isfinite(est)):
        raise NotApplicable("the count estimates are not finite")
    est = np.clip(est, 0.0, float(n))
    counts = np.floor(est)
    while counts.sum() < n:
        gap = est - counts
        take = np.argsort(-gap, kind="stable")[: int(n - counts.sum())]
        counts[take] += 1
    while counts.sum() > n:
        gap = np.where(counts > 0, est - counts, np.inf)
        drop = np.argsort(gap, kind="stable")[: min(int(counts.sum() - n), int(np.sum(counts > 0)))]
        counts[drop] -= 1
    return Counter({int(c): int(k) for c, k in enumerate(counts) if k > 0})


def start_head(obs: Observation, model) -> tuple[np.ndarray, np.ndarray]:
    """The projection layer before the update, (d, C) and (C,): the observation's, else the model's."""
    W = obs.W if obs.W is not None else model.head.weight.detach().cpu().numpy().T
    b = obs.b if obs.b is not None else model.head.bias.detach().cpu().numpy()
    return np.asarray(W), np.asarray(b)


def features(model, x, chunk: int = 256):
    """The body's features h (n, d) of inputs x, in eval mode, no gradient (a torch tensor)."""
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model.features(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def head_probs(h, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """softmax(h W + b) (n, C), float64, computed as ``nn.Linear`` computes it (same weights, same op)."""
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(np.ascontiguousarray(np.asarray(W).T)).to(h.dtype)
    bias = torch.from_numpy(np.ascontiguousarray(b)).to(h.dtype)
    with torch.no_grad():
        return torch.softmax(F.linear(h, weight, bias), dim=1).double().numpy()


@register("dimitrov", paper=PAPER, needs=("batch_size", "steps", "model"), gives_counts=True)
def dimitrov(obs: Observation, model=None, lr: float | None = None, dummy: str = "random", seed: int = 0,
             interpolate: str = "stats", rounding: str = "geng") -> Prediction:
    """Geng et al.'s counts with statistics interpolated between the start and end models, per local step."""
    if interpolate not in ("stats", "weights"):
        raise ValueError(f"dimitrov: interpolate must be 'stats' or 'weights', got {interpolate!r}")
    if rounding not in ("geng", "remainder"):
        raise ValueError(f"dimitrov: rounding must be 'geng' or 'remainder', got {rounding!r}")
    k = obs.steps or 1
    rate = require_lr(obs, lr, "dimitrov")
    B = obs.batch_size
    n = B * k
    h = features(model, dummy_inputs(model, n, dummy, seed))
    sums = h.double().sum(dim=1).numpy()
    mean_sum = float(sums.mean())  # the body is the start body at every step: O(j) = O
    if not np.isfinite(mean_sum) or mean_sum == 0:
        raise NotApplicable(f"dimitrov: the dummy inputs' mean feature sum is {mean_sum:g}, the estimate divides by it")
    W0, b0 = start_head(obs, model)
    s = obs.dW.astype(np.float64).sum(axis=0)
    P0 = head_probs(h, W0, b0).sum(axis=0)
    if k > 1:
        dW = obs.dW.astype(np.float64)
        db = np.zeros_like(s) if obs.db is None else obs.db.astype(np.float64)
        heads = lambda c: (W0 - c * rate * dW, b0 - c * rate * db)  # the head c of the way to the end
        PK = head_probs(h, *heads(1.0)).sum(axis=0) if interpolate == "stats" else None
    raw = np.zeros_like(s)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(k):
            c = j / k
            if j == 0:
                P = P0
            elif interpolate == "stats":
                P = (1 - c) * P0 + c * PK
            else:
                P = head_probs(h, *heads(c)).sum(axis=0)
            raw += P - B / mean_sum * s
        raw /= k
    if not np.all(np.isfinite(raw)):
        raise NotApplicable("dimitrov: the count estimates are not finite (an overflowing update)")
    counts = discretise(raw, n) if rounding == "geng" else largest_remainder(raw, n)
    info = {"mean_feature_sum": mean_sum, "steps": k, "interpolate": interpolate, "rounding": rounding}
    if rate is not None:
        info["lr"] = rate
    if k > 1 and obs.db is None:
        info["bias"] = "no db: the end head keeps the start bias"
    return Prediction(labels=frozenset(counts), num_labels=n, counts=dict(counts), info=info)
