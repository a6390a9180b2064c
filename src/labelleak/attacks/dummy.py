"""What the model-using attacks (LLG+, LLG*, Geng et al.) measure on the current model.

They forward inputs the attacker chooses (dummy inputs or the attacker's own data, never the
client's batch) through the model at the update's checkpoint and read, per sample k, the softmax
p_k and the feature sum S_k = sum_j h_kj. For one step of mean cross-entropy over B samples, column
c of dW sums to  s_c = (1/B) sum_k (p_kc - y_kc) S_k  (the identity LLG and Geng et al. rest on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelleak.errors import NotApplicable

#: dummy input name -> how it is drawn (LLG*: zero / one / random; Geng et al.: uniform in [0, 1)).
DUMMIES = ("zero", "one", "random", "uniform")


def input_shape(model) -> tuple[int, ...]:
    """The per-sample input shape the model takes (small models record it; the pipeline sets it)."""
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise NotApplicable(f"{type(model).__name__} does not record its input_shape; cannot draw dummy inputs")
    return tuple(int(s) for s in shape)


def dummy_inputs(model, n: int, kind: str = "random", seed: int = 0):
    """``n`` dummy inputs of the model's input shape (seeded; no data of the client)."""
    import torch

    shape = (n, *input_shape(model))
    gen = torch.Generator().manual_seed(seed)
    makers = {
        "zero": lambda: torch.zeros(shape),
        "one": lambda: torch.ones(shape),
        "random": lambda: torch.randn(shape, generator=gen),
        "uniform": lambda: torch.rand(shape, generator=gen),
    }
    if kind not in makers:
        raise ValueError(f"unknown dummy input {kind!r}; known: {', '.join(DUMMIES)}")
    return makers[kind]()


@dataclass(frozen=True)
class ForwardStats:
    """Softmax outputs (n, C) and feature sums (n,) of a batch, float64."""

    probs: np.ndarray
    feature_sums: np.ndarray


def forward_stats(model, x, chunk: int = 256) -> ForwardStats:
    """p_k and S_k for the inputs ``x`` through the model in eval mode (no gradient)."""
    import torch

    model.eval()
    probs, sums = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            h = model.features(x[i:i + chunk])
            probs.append(torch.softmax(model.head(h), dim=1).double().numpy())
            sums.append(h.double().sum(dim=1).numpy())
    return ForwardStats(np.concatenate(probs), np.concatenate(sums))


def column_sums(stats: ForwardStats, label: int) -> np.ndarray:
    """Column sums of dW (C,) for one step on these inputs, all labelled ``label``."""
    g = stats.probs.copy()
    g[:, label] -= 1.0
    return (g * stats.feature_sums[:, None]).sum(axis=0) / len(g)
