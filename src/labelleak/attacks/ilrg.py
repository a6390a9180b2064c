"""iLRG (Ma et al., ICLR 2023): label counts by a linear system solved with the pseudoinverse.

1. Class-wise embedding e_i = dW[:, i] / db_i: a g-weighted mean of the features, dominated by
   the samples of class i when i is present.
2. Class-wise probability p_i = softmax(e_i W + b) through the projection layer's own W and b.
3. Unknown counts k (C,): sum_j k_j = N and, for every class i,
   sum_j k_j (p_j[i] - [i == j]) = B * db_i  (db of a K-step file is the sum of the K step
   gradients, each the mean over B samples). C + 1 equations, k = pinv(A) v.
4. Negative counts -> 0, round, counts above N -> 0; present = {i : k_i > 0}. A system whose
   probabilities or solution are not finite, or whose counts do not fit an int64 (an update on a
   scale the layer's W, b cannot explain, e.g. scaled by 1e30), is :class:`NotApplicable`.

Works for any activation and batch sizes beyond C (tested to 4096): it uses only dW, db, W, b.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

#: Counts beyond this are no counts at all (the solution of a system the update does not fit).
MAX_COUNT = float(np.iinfo(np.int64).max) / 2


def class_probabilities(obs: Observation) -> np.ndarray:
    """(C, C): row j = softmax of the projection layer at class j's embedding."""
    dW, db = obs.dW.astype(np.float64), obs.db.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        safe = np.where(np.abs(db) > 0, db, 1.0)
        emb = np.where(np.abs(db) > 0, dW / safe, 0.0)  # (d, C): column j = e_j
        logits = emb.T @ obs.W.astype(np.float64) + obs.b.astype(np.float64)  # (C, C)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p = p / p.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(p)):
        raise NotApplicable("ilrg: the class-wise probabilities are not finite (the class embeddings dW/db "
                            "overflow the projection layer's logits)")
    return p


def solve_counts(probs: np.ndarray, db: np.ndarray, batch_size: int, n: int) -> np.ndarray:
    """Least-norm least-squares counts of the (C + 1) x C system, post-processed to integers."""
    C = probs.shape[0]
    A = np.vstack([probs.T - np.eye(C), np.ones((1, C))])
    v = np.concatenate([batch_size * np.asarray(db, dtype=np.float64), [n]])
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            k = np.linalg.pinv(A) @ v
    except np.linalg.LinAlgError as exc:
        raise NotApplicable(f"ilrg: the pseudoinverse of the count system failed ({exc})") from None
    if not np.all(np.isfinite(k)) or np.abs(k).max(initial=0.0) > MAX_COUNT:
        what = "not finite" if not np.all(np.isfinite(k)) else f"up to {np.abs(k).max():.3g}, past an int64"
        raise NotApplicable(f"ilrg: the counts solving the linear system are {what} (N = {n}): the update's "
                            f"scale does not fit the layer's W, b")
    k = np.rint(np.maximum(k, 0))
    k[k > n] = 0
    return k.astype(np.int64)


@register("ilrg", paper="Ma, Sun, Cui, Li, Guan, Liu, Instance-wise Batch Label Restoration via Gradients "
          "in Federated Learning, ICLR 2023", needs=("db", "W", "b", "batch_size"), gives_counts=True)
def ilrg(obs: Observation) -> Prediction:
    """Counts from the class-wise embeddings and probabilities by the Moore-Penrose pseudoinverse."""
    n = obs.batch_size * (obs.steps or 1)
    k = solve_counts(class_probabilities(obs), obs.db, obs.batch_size, n)
    present = np.flatnonzero(k > 0)
    return Prediction(labels=frozenset(int(c) for c in present), num_labels=int(k.sum()),
                      counts={int(c): int(k[c]) for c in present})
