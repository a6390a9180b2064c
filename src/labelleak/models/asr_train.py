"""Train the ASR model (:mod:`labelleak.models.asr`) and save checkpoints at the paper's stages.

Section 2.5.2 / 4.2 of Dang et al. read updates from the untrained model and from checkpoints
after 1k, 2k, 4k and 10k steps. :func:`train_asr` does the centralized training that produces
them; it takes plain inputs (a mapping utterance id -> token ids and a callable utterance id ->
features) so it works with any corpus. A checkpoint records the model sizes and the vocabulary
size, so :func:`load_asr_checkpoint` rebuilds the model from the file alone.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelleak.errors import LabelleakError
from labelleak.models.asr import ASRBatch, ListenAttendSpell, build_asr_model, make_batch, sequence_loss
from labelleak.models.train import batch_order, load_checkpoint, lr_factor, save_checkpoint

logger = logging.getLogger(__name__)

ARCH = "listen_attend_spell"  # the ``arch`` recorded in ASR checkpoints


def asr_sizes(model: ListenAttendSpell) -> dict[str, int]:
    """The keyword sizes that rebuild ``model`` with :func:`build_asr_model` (read off its modules)."""
    return {
        "n_mels": model.encoder.input_size // model.subsample,
        "encoder_hidden": model.encoder.hidden_size,
        "encoder_layers": model.encoder.num_layers,
        "decoder_hidden": model.decoder[0].hidden_size,
        "decoder_layers": len(model.decoder),
        "embedding_dim": model.embedding.embedding_dim,
        "attention_dim": model.query.out_features,
        "subsample": model.subsample,
    }


def load_asr_checkpoint(path: str | os.PathLike) -> ListenAttendSpell:
    """The ASR model saved at ``path`` by :func:`train_asr`, in eval mode, on the CPU.

    Missing, corrupt or foreign checkpoints raise a one-line :class:`LabelleakError`.
    """
    try:
        info = torch.load(path, map_location="cpu", weights_only=True)
        if info.get("arch") != ARCH:
            raise ValueError(f"arch is {info.get('arch')!r}, not {ARCH!r}")
        vocab_size, sizes = int(info["vocab_size"]), dict(info["sizes"])
    except Exception as exc:  # missing, corrupt, or not one of our ASR checkpoints
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabelleakError(f"cannot read ASR checkpoint {path}: {msg}") from None
    try:
        model = build_asr_model(vocab_size, **sizes)
        load_checkpoint(path, model)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise LabelleakError(f"ASR checkpoint {path} does not fit its recorded sizes: "
                             f"{str(exc).splitlines()[0]}") from None
    return model.eval()


def batch_to(batch: ASRBatch, device: torch.device) -> ASRBatch:
    """The same batch with every tensor on ``device``."""
    return ASRBatch(*(getattr(batch, f).to(device) for f in ("features", "feature_lengths", "inputs", "targets",
                                                              "mask")))


def load_batch(ids: Sequence[str], utterances: Mapping[str, Sequence[int]],
               features: Callable[[str], np.ndarray], device: torch.device) -> ASRBatch:
    """Padded batch of the utterances ``ids`` (in that order) on ``device``."""
    return batch_to(make_batch([features(u) for u in ids], [list(utterances[u]) for u in ids]), device)


@torch.no_grad()
def token_accuracy(model: ListenAttendSpell, utterances: Mapping[str, Sequence[int]],
                   features: Callable[[str], np.ndarray], ids: Sequence[str], *, batch_size: int = 16,
                   device: torch.device | None = None) -> dict[str, float]:
    """Teacher-forced argmax accuracy and mean loss over every target position (</s> included)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for i in range(0, len(ids), batch_size):
        batch = load_batch(ids[i:i + batch_size], utterances, features, device)
        logits = model(batch)
        n = batch.num_targets
        correct += int(((logits.argmax(-1) == batch.targets) & batch.mask).sum())
        loss_sum += float(sequence_loss(logits, batch.targets, batch.mask)) * n
        total += n
    model.train(was_training)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "positions": total}


def masked_loss(model: ListenAttendSpell, batch: ASRBatch) -> torch.Tensor:
    """:func:`sequence_loss` with the projection applied to the real positions only.

    The same value and gradients; it skips the padded rows' logits over the whole vocabulary,
    which are most of the step's cost at 16k word pieces (about 30% faster on a CPU).
    """
    h = model.softmax_inputs(batch)[batch.mask]
    return F.cross_entropy(model.projection(h), batch.targets[batch.mask])


def _emit(log) -> Callable[[str], None]:
    """``log`` may be a logger (its ``info`` is used) or any callable taking one string."""
    if log is None:
        return logger.info
    return log.info if hasattr(log, "info") else log


def train_asr(
    model: ListenAttendSpell,
    utterances: Mapping[str, Sequence[int]],
    features: Callable[[str], np.ndarray],
    *,
    checkpoints: Mapping[str, int],
    outputs: Mapping[str, str | os.PathLike],
    batch_size: int = 16,
    lr: float = 5e-3,
    optimizer: str = "adam",
    seed: int = 0,
    grad_clip: float | None = 1.0,
    held_out: Mapping[str, Sequence[int]] | None = None,
    held_out_size: int = 64,
    warmup: float = 0.05,
    device: torch.device | str | None = None,
    info: Mapping[str, Any] | None = None,
    log=None,
    log_every: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` to the last stage of ``outputs``, saving each stage's checkpoint at its step.

    ``checkpoints``: stage -> step (step 0 is the initial weights); ``outputs``: stage -> path (a
    subset of the stages). Batches come from a seeded permutation of the training utterances,
    epoch after epoch, never sorted by length or label, so the checkpoints do not depend on the
    corpus order. ``held_out`` (default: ``held_out_size`` utterances set aside from
    ``utterances`` by the seed) gives the teacher-forced token accuracy recorded at each checkpoint
    (in the checkpoint's info and in the returned stats). Learning rate: linear warm-up over the
    first ``warmup`` fraction of the steps, then cosine decay to zero (as the image training).
    ``grad_clip`` bounds the global gradient norm (the LSTMs' usual safeguard).

    Returns stats: steps, seconds, steps_per_second, train/held-out sizes, a loss curve (step,
    mean training loss since the previous point) and per stage {step, accuracy, loss}.
    """
    emit = _emit(log)
    unknown = sorted(set(outputs) - set(checkpoints))
    if unknown:
        raise ValueError(f"stages {unknown} have an output but no step in checkpoints")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    by_step: dict[int, list[tuple[str, str | os.PathLike]]] = {}
    for stage, path in outputs.items():
        step = int(checkpoints[stage])
        if step < 0:
            raise ValueError(f"stage {stage!r}: step must be >= 0, got {step}")
        by_step.setdefault(step, []).append((stage, path))
    total = max(by_step, default=0)

    rng = np.random.default_rng(seed)
    ids = sorted(utterances)
    if held_out is None:
        n_held = min(held_out_size, len(ids) // 5)
        pick = set(rng.choice(len(ids), size=n_held, replace=False).tolist()) if n_held else set()
        held_ids = [ids[i] for i in sorted(pick)]
        train_ids = [u for i, u in enumerate(ids) if i not in pick]
        tokens: Mapping[str, Sequence[int]] = utterances
    else:
        held_ids = sorted(held_out)
        train_ids = ids
        tokens = {**utterances, **held_out}
    if total > 0 and batch_size > len(train_ids):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(train_ids)} training utterances")

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, int(total * warmup)))
    emit(f"training ASR model (vocab {model.vocab_size}, {sum(p.numel() for p in model.parameters())} parameters) "
         f"for {total} steps on {len(train_ids)} utterances, batch {batch_size}, {optimizer} lr {lr}, "
         f"{len(held_ids)} held out, device {device}")

    stats: dict[str, Any] = {"steps": total, "train_utterances": len(train_ids), "held_out_utterances": len(held_ids),
                             "loss_curve": [], "checkpoints": {}}

    def save(step: int) -> None:
        acc = token_accuracy(model, tokens, features, held_ids, batch_size=batch_size, device=device) if held_ids \
            else {"accuracy": float("nan"), "loss": float("nan"), "positions": 0}
        emit(f"step {step} held-out: token accuracy {acc['accuracy']:.3f}, loss {acc['loss']:.3f} "
             f"({acc['positions']} positions)")
        for stage, path in by_step[step]:
            save_checkpoint(path, model, arch=ARCH, vocab_size=model.vocab_size, sizes=asr_sizes(model), step=step,
                            stage=stage, seed=seed, held_out_accuracy=acc["accuracy"], held_out_loss=acc["loss"],
                            **dict(info or {}))
            stats["checkpoints"][stage] = {"step": step, "accuracy": acc["accuracy"], "loss": acc["loss"]}
            emit(f"saved stage {stage} (step {step}) to {path}")

    if 0 in by_step:
        save(0)
    log_every = log_every or max(1, min(50, total // 10))
    batches = batch_order(len(train_ids), batch_size, rng)
    window: list[float] = []
    start = time.perf_counter()
    model.train()
    for step in range(1, total + 1):
        batch = load_batch([train_ids[i] for i in next(batches)], tokens, features, device)
        loss = masked_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        window.append(loss.item())
        if step % log_every == 0 or step == total:
            elapsed = time.perf_counter() - start
            mean = float(np.mean(window))
            stats["loss_curve"].append((step, mean))
            window = []
            emit(f"step {step}/{total} loss {mean:.4f} ~{elapsed / step * (total - step):.0f}s left "
                 f"({elapsed:.0f}s elapsed)")
        if step in by_step:
            save(step)
            model.train()
    seconds = time.perf_counter() - start
    stats.update(seconds=seconds, steps_per_second=total / seconds if total and seconds > 0 else float("nan"))
    model.eval()
    return stats
