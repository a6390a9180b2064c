"""Rebuild a model from a checkpoint alone (the command line's ``--checkpoint``).

Checkpoints written by the pipeline record ``arch``, ``num_classes`` and the model's ``options``
(activation, batch_norm, ...), so the attacker-side model is the client's model at that stage.
"""

from __future__ import annotations

import os

from labelleak.errors import LabelleakError


def model_from_checkpoint(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None):
    """The model saved at ``path`` in eval mode; ``input_shape`` for models that do not record one."""
    import torch

    from labelleak.models.registry import build_model
    from labelleak.models.train import load_checkpoint

    try:
        info = torch.load(path, map_location="cpu", weights_only=True)
        arch = info["arch"]
        num_classes = int(info["vocab_size"] if arch == "listen_attend_spell" else info["num_classes"])
    except Exception as exc:  # missing, corrupt, or not one of our checkpoints
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabelleakError(f"cannot read checkpoint {path}: {msg}") from None
    if arch == "listen_attend_spell":  # the ASR model records its own sizes
        from labelleak.models.asr_train import load_asr_checkpoint

        return load_asr_checkpoint(path).eval()
    try:
        model = build_model(arch, num_classes=num_classes, **(info.get("options") or {}))
        load_checkpoint(path, model)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise LabelleakError(f"checkpoint {path} does not fit {arch}: {str(exc).splitlines()[0]}") from None
    if input_shape:
        model.input_shape = tuple(input_shape)
    return model.eval()
