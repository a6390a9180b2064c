"""iDLG (Zhao, Mopuri, Bilen 2020): the label of a single sample from the sign of its gradient.

One sample: column c of dW is g_c * h with g = softmax - onehot(y) negative only at y, so with
non-negative features (sigmoid, ReLU) the class whose dW column sums most negatively is the label
(the paper's rule, argmin_c sum_i dW[i, c]). Batch extension (iLRG's "extended iDLG" baseline):
the classes whose dW column sum is negative, together with those whose bias gradient is negative
(db_c < 0 implies c is present for any features), when the update has db.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation


@register("idlg", paper="Zhao, Mopuri, Bilen, iDLG: Improved Deep Leakage from Gradients, arXiv 2001.02610 (2020)",
          needs=("batch_size",), gives_counts=False)
def idlg(obs: Observation) -> Prediction:
    """Single sample: argmin of dW's column sums; batches: negative column sums or bias gradients."""
    with np.errstate(over="ignore", invalid="ignore"):
        sums = obs.dW.astype(np.float64).sum(axis=0)
    if not np.all(np.isfinite(sums)):
        raise NotApplicable("idlg: dW's column sums overflow (not finite)")
    if obs.batch_size * (obs.steps or 1) == 1:
        return Prediction(labels=frozenset({int(np.argmin(sums))}), num_labels=1, info={"rule": "single"})
    present = sums < 0
    if obs.db is not None:
        present |= obs.db < 0
    return Prediction(labels=frozenset(int(c) for c in np.flatnonzero(present)), info={"rule": "batch"})
