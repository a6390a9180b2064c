"""Stage "dump": one update file per batch and its truth file, by the model's gradient source (torch
autograd, Keras, DP-SGD through Opacus-style per-sample clipping, the ASR model).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from labelleak.errors import ConfigError
from labelleak.io import read_json
from labelleak.jobs.context import build, corpus, dataset, derived_seed, framework
from labelleak.jobs.runner import Paths
from labelleak.jobs.train import _keras_model
from labelleak.registry import Registry

log = logging.getLogger("labelleak")


def _prepare_dump(cfg: dict, dataset_name: str, model_name: str, checkpoint, batches_file, outputs: Paths):
    """What every dump job starts from: eval data, its batches (one per output), the model at the checkpoint."""
    from labelleak.data.sampling import load_batches
    from labelleak.device import pick_device
    from labelleak.models.train import load_checkpoint

    data = dataset(cfg, dataset_name, "eval")
    batches, bmeta = load_batches(batches_file)
    if len(outputs) != len(batches):
        raise ValueError(f"{batches_file}: {len(batches)} batches for {len(outputs)} update files")
    device = pick_device(cfg.get("device", "auto"))
    model = build(cfg, model_name, data.num_classes)
    info = load_checkpoint(checkpoint, model)
    model.to(device).eval()
    return data, batches, bmeta, model, info, device


def save_batch_truth(path: str | os.PathLike, data, batch, bmeta: dict, index: int) -> None:
    """The truth file of one dumped batch: its labels, and what could rebuild them (seed, indices)."""
    from labelleak.updates.format import save_truth

    save_truth(path, np.concatenate([data.labels[idx] for idx in batch]), data.num_classes, batch=index,
               batch_seed=bmeta.get("seed"), composition=bmeta.get("composition"),
               indices=[np.asarray(idx).tolist() for idx in batch])


def dump(cfg: dict, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
         batches_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """One update file per batch and its truth file, by the gradient source of the model's framework."""
    GRADIENT_SOURCES.lookup(framework(cfg, model_name), context=f"models.{model_name}.framework")(
        cfg, dataset_name, model_name, stage, checkpoint, batches_file, outputs, truths)


def dump_torch(cfg: dict, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
               batches_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """Torch autograd on the full model at the checkpoint (K local SGD steps for K > 1)."""
    import torch

    from labelleak.device import describe
    from labelleak.updates.compute import projection_update
    from labelleak.updates.format import save_update

    ucfg = cfg["updates"]
    data, batches, bmeta, model, info, device = _prepare_dump(cfg, dataset_name, model_name, checkpoint,
                                                              batches_file, outputs)
    if len(truths) != len(outputs):
        raise ValueError(f"{len(truths)} truth files for {len(outputs)} updates")
    model.to(memory_format=torch.channels_last)
    start = time.perf_counter()
    for i, (batch, out) in enumerate(zip(batches, outputs)):
        steps = [(data.images(idx).to(device, memory_format=torch.channels_last),
                  torch.as_tensor(data.labels[idx], device=device)) for idx in batch]
        upd = projection_update(model, steps, lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"),
                                chunk_size=ucfg.get("chunk_size", 50))
        meta = {"dataset": dataset_name, "model": model_name, "arch": cfg["models"][model_name]["arch"],
                "stage": stage, "checkpoint_step": info.get("step"), "device": describe(device),
                "bn_mode": ucfg.get("bn_mode", "eval"), "local_lr": ucfg.get("local_lr", 0.1)}
        save_update(out, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch), meta=meta)
        save_batch_truth(truths[i], data, batch, bmeta, i)
        log.info("update %d/%d written (%.1fs elapsed)", i + 1, len(outputs), time.perf_counter() - start)
    log.info("dumped %d updates of %s/%s in %.1fs on %s", len(outputs), model_name, stage,
             time.perf_counter() - start, describe(device))


def dump_keras(cfg: dict, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
               batches_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """One update file per batch from a Keras model, by tf.GradientTape (same file format as torch)."""
    from labelleak.data.sampling import load_batches
    from labelleak.updates import keras_source as ks
    from labelleak.updates.format import save_update

    ucfg = cfg["updates"]
    data = dataset(cfg, dataset_name, "eval")
    batches, bmeta = load_batches(batches_file)
    if len(outputs) != len(batches):
        raise ValueError(f"{batches_file}: {len(batches)} batches for {len(outputs)} update files")
    if len(truths) != len(outputs):
        raise ValueError(f"{len(truths)} truth files for {len(outputs)} updates")
    model = _keras_model(cfg, model_name, data, derived_seed(cfg, "train", dataset_name, model_name))
    info = ks.load_keras_checkpoint(checkpoint, model)
    device = ks.keras_device()
    start = time.perf_counter()
    for i, (batch, out) in enumerate(zip(batches, outputs)):
        steps = [(ks.to_channels_last(data.images(idx)), data.labels[idx]) for idx in batch]
        upd = ks.keras_projection_update(model, steps, lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"))
        meta = {"dataset": dataset_name, "model": model_name, "arch": cfg["models"][model_name]["arch"],
                "framework": "keras", "stage": stage, "checkpoint_step": info.get("step"),
                "device": device, "bn_mode": ucfg.get("bn_mode", "eval"), "local_lr": ucfg.get("local_lr", 0.1)}
        save_update(out, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch), meta=meta)
        save_batch_truth(truths[i], data, batch, bmeta, i)
        log.info("update %d/%d written (%.1fs elapsed)", i + 1, len(outputs), time.perf_counter() - start)
    log.info("dumped %d Keras updates of %s/%s in %.1fs on %s", len(outputs), model_name, stage,
             time.perf_counter() - start, device)


#: framework -> gradient source of the dump stage (DP-SGD and the ASR model have their own rules).
GRADIENT_SOURCES: Registry = Registry("framework", ConfigError, {"torch": dump_torch, "keras": dump_keras})


def dump_dp(cfg: dict, defense: str, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
            batches_file: str | os.PathLike, outputs: Paths) -> None:
    """DP-SGD updates (per-sample clipping + noise while computing), then any update-stage parts of the name."""
    import torch

    from labelleak.defenses import apply, compute_step
    from labelleak.defenses.dpsgd import dp_projection_update, epsilon
    from labelleak.device import describe
    from labelleak.updates.format import save_update

    step = compute_step(defense)
    if step is None:
        raise ValueError(f"defense {defense!r} has no DP-SGD part (rule defend)")
    clip, sigma = step.values
    ucfg = cfg["updates"]
    delta = cfg.get("defenses", {}).get("delta", 1e-5)
    data, batches, bmeta, model, info, device = _prepare_dump(cfg, dataset_name, model_name, checkpoint,
                                                              batches_file, outputs)
    start = time.perf_counter()
    for batch, out in zip(batches, outputs):
        rng = np.random.default_rng(derived_seed(cfg, "dpsgd", defense, dataset_name, model_name, stage,
                                                 Path(out).as_posix()))
        steps = [(data.images(idx).to(device), torch.as_tensor(data.labels[idx], device=device)) for idx in batch]
        upd = dp_projection_update(model, steps, clip=clip, noise_multiplier=sigma, rng=rng,
                                   lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"),
                                   chunk_size=ucfg.get("chunk_size", 50))
        sent = apply(defense, (upd.dW, upd.db), rng)  # the update-stage parts after '+', if any
        eps = epsilon(sigma, 1.0, len(batch), delta)  # one batch = the client's data: sampling rate 1
        meta = {"dataset": dataset_name, "model": model_name, "stage": stage, "checkpoint_step": info.get("step"),
                "defense": defense, "dp_clip": clip, "dp_noise_multiplier": sigma, "dp_epsilon": eps,
                "dp_delta": delta, "local_lr": ucfg.get("local_lr", 0.1), "device": describe(device)}
        save_update(out, sent[0], db=sent[1], W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch), meta=meta)
    log.info("DP-SGD (%s) dumped %d updates in %.1fs; epsilon %.3g at delta %g", defense, len(outputs),
             time.perf_counter() - start, epsilon(sigma, 1.0, 1, delta), delta)


def dump_asr(cfg: dict, corpus_name: str, stage: str, checkpoint: str | os.PathLike,
             groups_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """One update per utterance group: the projection layer's update plus the decoder's (sibling file),
    and its truth file (the target pieces and the utterance ids, which could rebuild them)."""
    from labelleak.device import describe
    from labelleak.models.asr_train import load_asr_checkpoint
    from labelleak.updates.asr import asr_update, save_asr_update
    from labelleak.updates.format import save_truth

    data = corpus(cfg, corpus_name)
    groups = read_json(groups_file)["groups"]
    outputs = [o for o in outputs if not str(o).endswith(".decoder.npz")]
    if len(groups) < len(outputs) or len(truths) != len(outputs):
        raise ValueError(f"{groups_file}: {len(groups)} groups for {len(outputs)} update files, {len(truths)} truths")
    model = load_asr_checkpoint(checkpoint)
    local_lr = cfg["speech"].get("local_lr", 0.1)
    start = time.perf_counter()
    for i, (group, out) in enumerate(zip(groups, outputs)):
        upd = asr_update(model, group, data.utterances, data.features, local_lr=local_lr)
        save_asr_update(out, upd, {"dataset": corpus_name, "model": "las", "stage": stage, "local_lr": local_lr,
                                   "device": describe(next(model.parameters()).device)})
        save_truth(truths[i], upd.labels, upd.dW.shape[1], batch=i, utterances=group)
    log.info("dumped %d ASR updates at stage %s in %.1fs", len(outputs), stage, time.perf_counter() - start)
