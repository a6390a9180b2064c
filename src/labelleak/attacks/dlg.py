"""DLG (Zhu, Liu, Han, NeurIPS 2019): joint optimisation of a dummy input and a soft label.

The attacker draws x' ~ N(0, 1) of the model's input shape and label logits y' ~ N(0, 1), and
minimises || grad(CE(model(x'), softmax(y'))) - observed ||^2 with the one gradients-matching core
(:func:`labelleak.attacks.gm.match_gradients`); the label is argmax y'. The update file holds the
projection layer's update only, so the matched gradient is (dW, db) (the original matches every
parameter). For a single sample (N = K = 1); restarts are chosen by the final gradient distance.
"""

from __future__ import annotations

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.dummy import input_shape
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation


def reconstruct(model, target_dW: np.ndarray, target_db: np.ndarray, *, steps: int = 200, lr: float = 0.1,
                restarts: int = 1, seed: int = 0, patience: int | None = 30):
    """The best (lowest distance) GM run over ``restarts``: (label logits, input, distance).

    A run stops early once argmax y' has not changed for ``patience`` steps (RLG's stopping rule).
    """
    import torch
    import torch.nn.functional as F

    from labelleak.attacks.gm import best_of, match_gradients

    model.eval()
    head = model.head
    target = [torch.as_tensor(target_dW.T, dtype=torch.float32), torch.as_tensor(target_db, dtype=torch.float32)]
    params = [head.weight, head.bias]
    runs = []
    for r in range(restarts):
        gen = torch.Generator().manual_seed(seed + r)
        x = torch.randn((1, *input_shape(model)), generator=gen)
        y = torch.randn((1, head.out_features), generator=gen)

        def grads(x=x, y=y):
            logits = model(x)
            loss = -(F.softmax(y, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
            return torch.autograd.grad(loss, params, create_graph=True)

        runs.append(match_gradients(grads, [x, y], target, steps=steps, lr=lr, halve_every=max(1, steps // 2),
                                    decode=lambda y=y: int(y.argmax()), patience=patience))
    best = best_of(runs)
    return best.variables[1][0].numpy(), best.variables[0], best.distance


@register("dlg", paper="Zhu, Liu, Han, Deep Leakage from Gradients, NeurIPS 2019",
          needs=("db", "batch_size", "model"))
def dlg(obs: Observation, model=None, steps: int = 200, lr: float = 0.1, restarts: int = 1, seed: int = 0,
        patience: int | None = 30) -> Prediction:
    """Label = argmax of the soft label jointly optimised with a dummy input (single sample)."""
    if obs.batch_size * (obs.steps or 1) != 1:
        raise NotApplicable("dlg here reconstructs single samples (batch_size * steps == 1)")
    for p in model.parameters():
        p.requires_grad_(True)
    logits, _, distance = reconstruct(model, obs.dW, obs.db, steps=steps, lr=lr, restarts=restarts, seed=seed,
                                         patience=patience)
    return Prediction(labels=frozenset({int(np.argmax(logits))}), num_labels=1, info={"distance": distance})
