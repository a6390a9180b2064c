"""The update an ASR client sends (section 2.5.2 and Table 3 of Dang et al.), and its files.

One step (K = 1) on N utterances: the gradient of :func:`~labelleak.models.asr.sequence_loss`,
the cross-entropy averaged over the S target positions of the batch (each utterance's pieces plus
its ``</s>``), so the projection's update is ``dW = H^T G / S`` with H the rows ``[s_i; a_i]``.
K local steps of plain SGD (learning rate ``local_lr``, the whole model) give ``(W0 - WK) / lr``
for every tensor, the paper's multi-step update. The caller's model is never modified.

Train or eval mode makes no difference for this model (its LSTMs have no dropout, there is no
BatchNorm); the update is computed in train mode because cuDNN's LSTM backward requires it.

Files. :func:`save_asr_update` writes two files, each atomically:

- ``<name>.npz``: the projection layer in the ordinary update format
  (:mod:`labelleak.updates.format`: ``dW`` (d, V), ``db``, ``W``, ``b``, ``batch_size`` N,
  ``steps`` K, ``labels`` = all S targets in order, ``</s>`` included), so every label attack,
  the command line and RLG read it unchanged;
- ``<name>.decoder.npz``: the update of every tensor of
  :meth:`~labelleak.models.asr.ListenAttendSpell.decoder_parameters` (embedding, decoder LSTM,
  projection) under its parameter name, in PyTorch's orientation (``projection.weight`` is
  (V, d), the transpose of ``dW``), with the same sign convention, plus ``format_version``,
  ``steps`` and ``local_lr``. Gradients matching with BoW (section 4, eq. 8) reads it via
  :func:`load_decoder_update`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelleak.errors import UpdateFileError
from labelleak.io import atomic_path
from labelleak.models.asr import EOS, ListenAttendSpell, sequence_loss
from labelleak.models.asr_train import load_batch
from labelleak.updates.format import check_format_version, read_npz, save_update

DECODER_FORMAT_VERSION = 1
_DECODER_META_KEYS = ("format_version", "steps", "local_lr")


@dataclass(frozen=True)
class ASRUpdate:
    """A client's update: the projection layer in the file orientation plus the decoder tensors."""

    dW: np.ndarray  # (d, V): projection weight update, transposed (rows = features of [s_i; a_i])
    db: np.ndarray  # (V,)
    W: np.ndarray  # (d, V): projection weight before the update
    b: np.ndarray  # (V,)
    batch_size: int  # N
    steps: int  # K
    labels: np.ndarray  # (S,) every target over all steps and utterances, in order, </s> included
    decoder: dict[str, np.ndarray] = field(default_factory=dict)  # name -> update, PyTorch orientation
    local_lr: float = 0.0  # the lr of the K > 1 steps (recorded, unused for K = 1)


def asr_update(
    model: ListenAttendSpell,
    group: Sequence[Sequence[str]],
    token_ids: Mapping[str, Sequence[int]],
    features: Callable[[str], np.ndarray],
    *,
    local_lr: float = 0.1,
) -> ASRUpdate:
    """The update of ``model`` after ``len(group)`` local steps, step k on the utterances ``group[k]``.

    K = 1: the gradient of the mean loss (no weight change at all). K > 1: K plain SGD steps
    with ``local_lr`` on a copy of the model, then ``(W0 - WK) / local_lr`` per tensor.
    """
    if not group or any(not ids for ids in group):
        raise ValueError("asr_update needs at least one step of at least one utterance")
    sizes = {len(ids) for ids in group}
    if len(sizes) != 1:
        raise ValueError(f"every step needs the same number of utterances, got sizes {sorted(sizes)}")
    if len(group) > 1 and not local_lr > 0:
        raise ValueError(f"local_lr must be > 0 for a multi-step update, got {local_lr}")
    device = next(model.parameters()).device
    names = list(model.decoder_parameters())
    before = {n: p.detach().clone() for n, p in model.decoder_parameters().items()}
    labels = np.array([t for ids in group for u in ids for t in [*token_ids[u], EOS]], dtype=np.int64)

    if len(group) == 1:
        was_training = model.training
        model.train()
        try:
            batch = load_batch(group[0], token_ids, features, device)
            loss = sequence_loss(model(batch), batch.targets, batch.mask)
            params = model.decoder_parameters()
            grads = torch.autograd.grad(loss, [params[n] for n in names])
        finally:
            model.train(was_training)
        delta = dict(zip(names, (g.detach() for g in grads)))
    else:
        local = copy.deepcopy(model).train()
        params = [p for p in local.parameters() if p.requires_grad]
        for ids in group:
            batch = load_batch(ids, token_ids, features, device)
            loss = sequence_loss(local(batch), batch.targets, batch.mask)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p -= local_lr * g
        after = local.decoder_parameters()
        delta = {n: (before[n] - after[n].detach()) / local_lr for n in names}

    as_np = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return ASRUpdate(
        dW=as_np(delta["projection.weight"].T), db=as_np(delta["projection.bias"]),
        W=as_np(before["projection.weight"].T), b=as_np(before["projection.bias"]),
        batch_size=len(group[0]), steps=len(group), labels=labels,
        decoder={n: as_np(t) for n, t in delta.items()}, local_lr=float(local_lr),
    )


def decoder_path(update_path: str | os.PathLike) -> Path:
    """The sibling file of an update: ``<update path minus .npz>.decoder.npz``."""
    p = Path(update_path)
    stem = p.name[:-4] if p.name.endswith(".npz") else p.name
    return p.with_name(stem + ".decoder.npz")


def save_asr_update(path: str | os.PathLike, update: ASRUpdate, meta: Mapping[str, Any] | None = None) -> None:
    """Write the projection part to ``path`` (the update format) and the decoder part beside it.

    The sibling is written first, so an existing ``path`` always has its decoder file.
    """
    arrays = {n: np.asarray(a) for n, a in update.decoder.items()}
    clash = sorted(set(arrays) & set(_DECODER_META_KEYS))
    if clash:
        raise ValueError(f"decoder parameter names {clash} clash with the file's own keys")
    bad = next((n for n, a in arrays.items() if not np.all(np.isfinite(a))), None)
    if bad is not None:
        raise UpdateFileError(f"{path}: decoder update '{bad}' contains NaN or Inf values")
    arrays["format_version"] = np.asarray(DECODER_FORMAT_VERSION, dtype=np.int64)
    arrays["steps"] = np.asarray(int(update.steps), dtype=np.int64)
    arrays["local_lr"] = np.asarray(float(update.local_lr), dtype=np.float64)
    with atomic_path(decoder_path(path), suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    save_update(path, update.dW, db=update.db, W=update.W, b=update.b, batch_size=update.batch_size,
                steps=update.steps,  # labels: the caller's truth file (format.save_truth), never in the update
                meta={**dict(meta or {}), "local_lr": update.local_lr, "decoder_file": decoder_path(path).name})


def load_decoder_update(update_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The decoder update (parameter name -> array) stored beside the update file ``update_path``.

    A missing, unreadable or non-finite sibling raises :class:`UpdateFileError` with one line.
    """
    path = decoder_path(update_path)
    if not path.is_file():
        raise UpdateFileError(f"{path}: no decoder update file beside {Path(update_path).name}")
    arrays = read_npz(path, "decoder update file")
    if "format_version" not in arrays:
        raise UpdateFileError(f"{path}: not a decoder update file (no 'format_version')")
    check_format_version(arrays, str(path), DECODER_FORMAT_VERSION)
    tensors = {k: v for k, v in arrays.items() if k not in _DECODER_META_KEYS}
    if not tensors:
        raise UpdateFileError(f"{path}: holds no decoder tensors")
    for name, arr in tensors.items():
        if not np.issubdtype(arr.dtype, np.floating):
            raise UpdateFileError(f"{path}: '{name}' must be a float array, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise UpdateFileError(f"{path}: '{name}' contains NaN or Inf values")
    return tensors
