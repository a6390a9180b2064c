"""RLU, Chen and Vikalo (ICML 2024): label counts from a local update by least squares on the bias update.

"Recovering Labels from Local Updates in Federated Learning" (PMLR 235, arXiv 2405.00955; official code
github.com/CityChan/Recovering-Label-from-Update, ``client/client_base.py`` and ``client_utils.py``).
For cross-entropy the gradient of the output bias on a sample of class n is p - e_n, so the bias
update of K steps of B samples (the file's db = (b0 - bK)/lr, the *sum* of the K step gradients) is

    B db = sum_t sum_{k in step t} (p_k - e_{y_k})  ~=  A z,     A[:, n] = S_bar[n] - e_n,

with z the label counts (sum N = K*B) and S_bar[n] the expected softmax of a sample of class n,
averaged over the K local iterations (the paper's "erroneous confidence" and its Eq. 9). The counts
solve  min ||A z - B db||  subject to z >= 0 (``scipy.optimize.nnls``). The columns of A sum to
zero (softmax sums to 1), so the system does not fix sum z: we append the row  w 1^T z = w N
(w: the root-mean-square column norm of A), then scale z to sum N and round by largest remainders.

Estimating S: the server forwards its auxiliary data (``aux_data(c, m, rep)``: m inputs of class
c, ``aux_per_class`` per class) through the model and averages the softmax per true class. The
paper fits a Gaussian to the logits of each class and averages the softmax of Monte-Carlo draws
(its Eq. 7-8); we average the softmax of the auxiliary samples themselves (no Gaussian model).

K > 1 (the paper's multi-epoch Algorithm 2): S drifts while the client trains. The server starts
from the counts solved with the start model's S, then simulates the client's local training: a
copy of the whole model takes K SGD steps (the client's lr, mean CE over B samples) on auxiliary
inputs whose labels follow the current count estimate (shuffled with ``seed``, split into K
batches of B); S is measured at each of the K step weights and averaged, the system is solved
again, and this repeats until the counts repeat (at most ``iterations``, the paper's T = 5). Of the
count vectors simulated, the answer is the one whose simulated update (bias, or dW column sums)
is closest to the observed one (``info["simulated_mismatch"]``): the paper checks its guess against
the end model's logits; we propagate by running the steps on the auxiliary data instead of its
analytic logit drift (bias update times the squared feature norm), and check against the update.
The client's order of labels over the steps is unknown (the simulation draws one), so with large
drift (a large lr x K) the estimate degrades.

Signal: the paper uses the bias update ``db``; when the update has none, the column sums of dW are
used, with A[:, n] = E[(p - e_n) * sum_j h_j | class n] from the same auxiliary samples (ours, the
identity LLG and Geng et al. rest on). Assumptions: the auxiliary data follow the client's
class-conditional input distribution, the counts are spread evenly over the K steps, and the
client runs plain SGD with mean cross-entropy (no momentum or proximal term).
"""

from __future__ import annotations

import copy

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.dimitrov import largest_remainder, require_lr
from labelleak.attacks.dummy import forward_stats
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

PAPER = ("Chen, Vikalo, Recovering Labels from Local Updates in Federated Learning, ICML 2024 "
         "(code: github.com/CityChan/Recovering-Label-from-Update)")


def aux_batch(aux_data, counts, rep: int):
    """(inputs, labels) of ``counts[c]`` auxiliary inputs of each class c, classes in order."""
    import torch

    xs, ys = [], []
    for c, m in enumerate(int(v) for v in counts):
        if m <= 0:
            continue
        x = torch.as_tensor(aux_data(c, m, rep))
        if len(x) != m:
            raise NotApplicable(f"rlu: aux_data gave {len(x)} inputs of class {c}, {m} were asked for")
        xs.append(x.float())
        ys.append(np.full(m, c, dtype=np.int64))
    return torch.cat(xs), np.concatenate(ys)


def class_stats(model, x, y: np.ndarray, num_classes: int, signal: str) -> np.ndarray:
    """M (C, C): row n is the mean over the inputs of class n of (p - e_n) * phi, phi = 1 (``db``) or
    the feature sum (``dW``), at the model's current weights."""
    st = forward_stats(model, x)
    g = st.probs.copy()
    g[np.arange(len(y)), y] -= 1.0
    if signal == "dW":
        g *= st.feature_sums[:, None]
    M = np.zeros((num_classes, num_classes))
    np.add.at(M, y, g)
    return M / np.maximum(np.bincount(y, minlength=num_classes), 1)[:, None]


def solve(M: np.ndarray, target: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """Non-negative z with A z ~ target, A = M^T (column c: class c's mean gradient), and sum z ~ n."""
    from scipy.optimize import nnls

    A = M.T
    C = A.shape[1]
    w = float(np.linalg.norm(A)) / np.sqrt(C)
    if not np.isfinite(w) or w == 0:
        raise NotApplicable("rlu: the auxiliary statistics are zero or not finite")
    A_aug = np.vstack([A, np.full((1, C), w)])
    t_aug = np.concatenate([target, [w * n]])
    try:
        z, res = nnls(A_aug, t_aug, maxiter=50 * C)
    except RuntimeError as exc:
        raise NotApplicable(f"rlu: the non-negative least squares did not converge ({exc})") from None
    return z, float(res)


def round_counts(z: np.ndarray, n: int) -> np.ndarray:
    """Integer counts (C,) summing to n: z scaled to sum n, then largest remainders."""
    total = float(z.sum())
    if not np.isfinite(total) or total <= 0:
        raise NotApplicable("rlu: the least-squares counts are all zero")
    counts = np.zeros(len(z), dtype=np.int64)
    for c, k in largest_remainder(z * (n / total), n).items():
        counts[c] = k
    return counts


def simulate(model, counts, stats_x, stats_y, aux_data, B: int, K: int, lr: float, seed: int,
             bn_mode: str, signal: str) -> tuple[np.ndarray, np.ndarray]:
    """The local training run on auxiliary inputs labelled as ``counts`` says (K plain SGD steps of a
    copy of the whole model): the mean over the K step weights of :func:`class_stats`, and the
    simulated update's signal (the sum of the K step gradients of the bias, or of dW's column sums)."""
    import torch
    import torch.nn.functional as F

    from labelleak.updates.compute import set_bn_mode

    C = len(counts)
    sim = copy.deepcopy(model)
    params = [p for p in sim.parameters() if p.requires_grad]
    x_all, y_all = aux_batch(aux_data, counts, rep=1)
    order = np.random.default_rng(seed).permutation(len(y_all))
    total, update = np.zeros((C, C)), np.zeros(C)
    for t in range(K):
        total += class_stats(sim, stats_x, stats_y, C, signal)
        idx = torch.as_tensor(order[t * B:(t + 1) * B])
        set_bn_mode(sim, bn_mode)
        with torch.enable_grad():
            loss = F.cross_entropy(sim(x_all[idx]), torch.as_tensor(y_all)[idx])
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p -= lr * g
        by_id = {id(p): g for p, g in zip(params, grads)}
        gb = by_id.get(id(sim.head.bias if signal == "db" else sim.head.weight))
        if gb is not None:
            gb = gb.detach().double()
            update += (gb if signal == "db" else gb.sum(dim=1)).numpy()
    sim.eval()
    return total / K, update


@register("rlu", paper=PAPER, needs=("batch_size", "steps", "model", "aux_data"), gives_counts=True)
def rlu(obs: Observation, model=None, aux_data=None, lr: float | None = None, aux_per_class: int = 8,
        seed: int = 0, iterations: int = 5) -> Prediction:
    """Counts by non-negative least squares on the bias update, statistics from auxiliary data (RLU)."""
    K = obs.steps or 1
    B = int(obs.batch_size)
    n, C = K * B, obs.num_classes
    if aux_per_class < 1:
        raise ValueError(f"rlu: aux_per_class must be at least 1, got {aux_per_class}")
    rate = require_lr(obs, lr, "rlu")
    signal = "db" if obs.db is not None else "dW"
    with np.errstate(over="ignore", invalid="ignore"):
        u = obs.db.astype(np.float64) if signal == "db" else obs.dW.astype(np.float64).sum(axis=0)
    if not np.all(np.isfinite(u)):
        raise NotApplicable(f"rlu: the {signal} signal is not finite")
    target = B * u
    stats_x, stats_y = aux_batch(aux_data, np.full(C, aux_per_class), rep=0)
    z, res = solve(class_stats(model, stats_x, stats_y, C, signal), target, n)
    counts = round_counts(z, n)
    done, mismatch = 0, None
    if K > 1 and iterations > 0:
        bn_mode = obs.meta.get("bn_mode", "eval") if isinstance(obs.meta, dict) else "eval"
        bn_mode = bn_mode if bn_mode in ("eval", "train") else "eval"
        tried: list[tuple[float, int, np.ndarray, float]] = []
        for done in range(1, iterations + 1):
            M, u_sim = simulate(model, counts, stats_x, stats_y, aux_data, B, K, rate, seed, bn_mode, signal)
            tried.append((float(np.linalg.norm(u_sim - u)), done, counts, res))
            z, res = solve(M, target, n)
            new = round_counts(z, n)
            if any(np.array_equal(new, c) for _, _, c, _ in tried):
                break
            counts = new
        mismatch, _, counts, res = min(tried, key=lambda item: item[:2])
    pred = {int(c): int(k) for c, k in enumerate(counts) if k > 0}
    info = {"signal": signal, "aux_per_class": int(aux_per_class), "iterations": done, "residual": res}
    if mismatch is not None:
        info["simulated_mismatch"] = mismatch
    if rate is not None:
        info["lr"] = rate
    return Prediction(labels=frozenset(pred), num_labels=n, counts=pred, info=info)
