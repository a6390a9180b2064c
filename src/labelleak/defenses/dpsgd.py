"""DP-SGD on the client (Abadi et al. 2016): per-sample clipping and Gaussian noise, with an accountant.

DP-SGD acts while the update is computed, not on the finished update, so it is a different update
computation (:func:`dp_projection_update`, the counterpart of
:func:`labelleak.updates.compute.projection_update`). Per-sample gradients come from ``torch.func``
(``vmap`` of ``grad`` over a functional call): Opacus' ``GradSampleModule`` refuses modules with
buffers, i.e. the BatchNorm layers of ResNet50/EfficientNetB0, even frozen. The privacy accounting
is Opacus' RDP accountant (:func:`epsilon`).

Each local step: g_i = per-sample gradient of the CE loss over *all* trainable parameters, clipped
to L2 norm ``clip`` (jointly over the whole model), summed, plus N(0, (noise_multiplier * clip)^2)
per coordinate, divided by the batch size. The returned projection-layer update follows the update
file's convention (one step: the noisy gradient; K steps: (W0 - WK) / lr).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.defenses.base import register
from labelleak.updates.compute import ProjectionUpdate, set_bn_mode


@register("dpsgd", ("clip", float, lambda c: c > 0, "> 0"),
          ("noise_multiplier", float, lambda s: s >= 0, ">= 0"), stage="compute")
def _dpsgd_marker(*_args, **_kw):
    """DP-SGD: per-sample clipping to norm clip and Gaussian noise (noise_multiplier * clip), while computing."""
    raise RuntimeError("DP-SGD is applied while the update is computed (dp_projection_update)")


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_size: int | None = None
                     ) -> dict[str, torch.Tensor]:
    """Name -> (n, *shape) per-sample gradients of the CE loss of each sample (BatchNorm as set on model)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    fn = vmap(grad(loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
    return fn(params, x, y)


def dp_step_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float, noise_multiplier: float,
                     rng: np.random.Generator, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """One DP-SGD step's privatised mean gradient: clip each sample's gradient, sum, add noise, / n."""
    grads = per_sample_grads(model, x, y, chunk_size)
    n = len(y)
    norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(dim=1) for g in grads.values()))
    factor = torch.clamp(clip / (norms + 1e-12), max=1.0)
    out = {}
    for name, g in grads.items():
        total = torch.einsum("i,i...->...", factor, g)
        noise = torch.from_numpy(rng.standard_normal(tuple(total.shape))).to(total.dtype).to(total.device)
        out[name] = (total + noise_multiplier * clip * noise) / n
    return out


def dp_projection_update(model: nn.Module, steps: Sequence[tuple[torch.Tensor, torch.Tensor]], *, clip: float,
                         noise_multiplier: float, rng: np.random.Generator, lr: float = 0.1,
                         bn_mode: str = "eval", chunk_size: int | None = None) -> ProjectionUpdate:
    """The projection-layer update after len(steps) local DP-SGD steps; ``model`` is not modified.

    BatchNorm must be frozen (``bn_mode="eval"``): with batch statistics, samples are not separable
    and per-sample clipping is undefined.
    """
    if not steps:
        raise ValueError("dp_projection_update needs at least one step")
    if bn_mode != "eval":
        raise ValueError("DP-SGD needs frozen BatchNorm statistics (updates.bn_mode: eval)")
    local = copy.deepcopy(model)
    set_bn_mode(local, bn_mode)
    W0 = local.head.weight.detach().clone()
    b0 = local.head.bias.detach().clone()
    params = dict(local.named_parameters())
    for x, y in steps:
        g = dp_step_gradient(local, x, y, clip, noise_multiplier, rng, chunk_size)
        if len(steps) == 1:
            dW, db = g["head.weight"], g["head.bias"]
            break
        with torch.no_grad():
            for name, value in g.items():
                params[name] -= lr * value
    else:
        dW = (W0 - local.head.weight.detach()) / lr
        db = (b0 - local.head.bias.detach()) / lr
    model.eval()
    as_np = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return ProjectionUpdate(dW=as_np(dW.T), db=as_np(db), W=as_np(W0.T), b=as_np(b0))


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """(epsilon, delta)-DP of ``steps`` DP-SGD steps at Poisson rate ``sample_rate`` (Opacus RDP accountant).

    inf without noise. The attacked updates are one batch = the client's whole data (rate 1).
    """
    if noise_multiplier <= 0:
        return float("inf")
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(acc.get_epsilon(delta=float(delta)))
