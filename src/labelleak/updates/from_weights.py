"""An update file from two sets of weights of one model: what a federated server actually receives.

A client sends its weights after local training (Flower: a list of NDArrays) rather than a gradient.
The projection layer's update in the file's convention follows from the weights before (W0, the
global model sent out) and after (W1, what came back): ``dW = (W0 - W1) / lr``, the sign of a
gradient, so one plain SGD step gives exactly the gradient of the mean loss. With momentum or K > 1
steps it is a sum of gradients of the batch's own samples, which still lies in the span RLG reads.

Scale: without ``lr`` the update is left unscaled (scale 1, ``meta["lr"] == "unscaled"``). RLG's label
*set* does not depend on the scale; count estimates that read magnitudes (iLRG) do.

Layout: the file wants (d, C). A torch ``Linear.weight`` is (C, d) and is transposed; a Keras-style
kernel is (d, C) and taken as is. The bias length C decides; without a bias, or for a square weight,
the name does (``NAME.weight``: torch (C, d); ``NAME.kernel`` or ``NAME/kernel``: Keras (d, C)).

Precision: the subtraction is done in float64 after casting the stored values
(``W0.astype(float64) - W1.astype(float64)``), so nothing is lost beyond the rounding the client's
stored (e.g. float32) weights already carry; dW is stored as float64, W and b (before) as stored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from labelleak.errors import LabelleakError
from labelleak.updates.format import Observation, read_npz

#: (weight suffix, bias suffix, weight layout when the bias cannot decide)
_SUFFIXES = ((".weight", ".bias", "torch (C, d)"), (".kernel", ".bias", "keras (d, C)"),
             ("/kernel", "/bias", "keras (d, C)"))
EXTENSIONS = (".pt", ".pth", ".safetensors", ".npz")


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Named arrays of a torch state_dict (.pt/.pth), a safetensors file, or an .npz of named arrays.

    torch files are read with ``weights_only=True`` (no code runs); a pipeline checkpoint
    ``{"state_dict": ..., ...}`` is unwrapped. Non-tensor entries are dropped. One-line errors.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise LabelleakError(f"{path}: unknown weights format {ext or '(no extension)'!r}; "
                             f"expected one of {', '.join(EXTENSIONS)}")
    if not path.is_file():
        raise LabelleakError(f"{path}: no such weights file")
    if ext == ".npz":  # Flower NDArrays saved by name: np.savez(path, **dict(zip(names, ndarrays)))
        return read_npz(path, "file of named weight arrays")
    import torch

    try:
        if ext == ".safetensors":
            from safetensors.torch import load_file  # torch tensors: bfloat16 too (numpy has none)

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise LabelleakError("safetensors files need the safetensors package: pip install -e '.[federated]'") from None
    except Exception as exc:  # corrupt, truncated, or pickled objects beyond tensors
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise LabelleakError(f"{path}: not a readable {ext} weights file ({msg})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise LabelleakError(f"{path}: holds a {type(state).__name__}, not a state_dict of named tensors")
    return {str(k): _numpy(v) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _numpy(t) -> np.ndarray:
    """A tensor as numpy; bfloat16 (which numpy lacks) widened to float32, exactly."""
    import torch

    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def layer_names(weights: Mapping[str, np.ndarray]) -> list[str]:
    """Names that have a weight (``NAME.weight``, ``NAME.kernel``, ``NAME/kernel``), for error messages."""
    return sorted({k[: -len(suf)] for k in weights for suf, _, _ in _SUFFIXES if k.endswith(suf)})


def _find(weights: Mapping[str, np.ndarray], name: str) -> tuple[str, str | None, str]:
    """(weight key, bias key or None, default layout) of layer ``name``; a one-line error if absent."""
    for suf, bsuf, layout in _SUFFIXES:
        if name + suf in weights:
            return name + suf, (name + bsuf if name + bsuf in weights else None), layout
    names = layer_names(weights)
    have = (f"layers with a weight: {', '.join(names)}" if names else
            "no array is named NAME.weight or NAME.kernel (an .npz needs the state_dict names as keys)")
    raise LabelleakError(f"no layer {name!r}; {have}")


def projection_layer(weights: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Layer ``name``'s weight in the file's (d, C) layout and its bias (or None).

    The bias length C decides the layout (a (C, d) weight is transposed); with no bias or a square
    weight, ``.weight`` means torch's (C, d) and ``.kernel`` Keras' (d, C).
    """
    return _layer(weights, name)[:2]


def _layer(weights, name):
    """(W (d, C), b or None, weight key, transposed?): :func:`projection_layer` and its provenance."""
    wkey, bkey, layout = _find(weights, name)
    W, b = np.asarray(weights[wkey]), (None if bkey is None else np.asarray(weights[bkey]))
    for key, arr in ((wkey, W), (bkey, b)):
        if arr is not None and not np.issubdtype(arr.dtype, np.floating):
            raise LabelleakError(f"{key!r} has dtype {arr.dtype}, not a floating-point tensor")
    if W.ndim != 2:
        raise LabelleakError(f"{wkey!r} has shape {W.shape}, not the 2-D weight of a projection layer")
    if b is not None:
        if b.ndim != 1 or b.shape[0] not in W.shape:
            raise LabelleakError(f"bias {bkey!r} of shape {b.shape} fits neither side of {wkey!r} {W.shape}")
        if W.shape[0] != W.shape[1]:
            layout = "torch (C, d)" if W.shape[0] == b.shape[0] else "keras (d, C)"
    transposed = layout.startswith("torch")
    return (np.ascontiguousarray(W.T) if transposed else W), b, wkey, transposed


def update_from_weights(before, after, layer: str, lr: float | None = None,
                        batch_size: int | None = None, steps: int | None = None) -> Observation:
    """The projection layer's update (W0 - W1) / lr as an :class:`Observation`; W, b are the weights before.

    ``before`` / ``after`` are paths (see :func:`load_weights`) or mappings of named arrays. Without
    ``lr`` the scale is 1 (``meta["lr"] = "unscaled"``). Write it with :func:`format.save_update`.
    """
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise LabelleakError(f"lr must be a positive number, got {lr}")
    for what, value in (("batch_size", batch_size), ("steps", steps)):
        if value is not None and value < 1:
            raise LabelleakError(f"{what} must be a positive integer, got {value}")
    sides = {}
    for role, src in (("before", before), ("after", after)):
        W, b, key, transposed = _layer(src if isinstance(src, Mapping) else load_weights(src), layer)
        label = "(in memory)" if isinstance(src, Mapping) else Path(src).name
        for part, arr in (("weight", W), ("bias", b)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise LabelleakError(f"{role} {label}: layer {layer!r} {part} contains NaN or Inf values")
        sides[role] = (W, b, label)
    (W0, b0, src0), (W1, b1, src1) = sides["before"], sides["after"]
    if W0.shape != W1.shape or (b0 is None) != (b1 is None) or (b0 is not None and b0.shape != b1.shape):
        raise LabelleakError(f"layer {layer!r} differs in shape: {_shape(W0, b0)} before, {_shape(W1, b1)} after")
    scale = 1.0 if lr is None else float(lr)
    meta = {"source": "weights", "before": src0, "after": src1, "layer": layer, "weight_key": key,
            "layout": "transposed from torch (C, d)" if transposed else "(d, C) as stored",
            "dtype": str(W0.dtype), "lr": "unscaled" if lr is None else float(lr)}
    return Observation(dW=_delta(W0, W1, scale), db=None if b0 is None else _delta(b0, b1, scale),
                       W=W0, b=b0, batch_size=batch_size, steps=steps, meta=meta)


def _delta(x0: np.ndarray, x1: np.ndarray, scale: float) -> np.ndarray:
    """(x0 - x1) / scale in float64, each side cast first: no rounding beyond the stored values'."""
    return (x0.astype(np.float64) - x1.astype(np.float64)) / scale


def _shape(W: np.ndarray, b: np.ndarray | None) -> str:
    """(d, C) and the bias shape, for the before/after mismatch message."""
    return f"weight {W.shape}" + (", no bias" if b is None else f", bias {b.shape}")
