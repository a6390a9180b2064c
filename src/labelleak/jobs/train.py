"""Stage "train": one checkpoint per stage, by the trainer of the model's framework (torch, Keras) or
the ASR trainer.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from labelleak.errors import ConfigError
from labelleak.jobs.context import build, corpus, dataset, derived_seed, framework, model_sizes
from labelleak.registry import Registry

log = logging.getLogger("labelleak")


def train(cfg: dict, dataset_name: str, model_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train and save one checkpoint per stage (``outputs``: stage -> path), by the model's framework."""
    TRAINERS.lookup(framework(cfg, model_name), context=f"models.{model_name}.framework")(
        cfg, dataset_name, model_name, outputs)


def train_torch(cfg: dict, dataset_name: str, model_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """The torch trainer (labelleak.models.train): SGD with warm-up and cosine decay, checkpoints by step."""
    import torch

    from labelleak.device import describe, pick_device
    from labelleak.models import train as training

    tcfg = cfg["training"]
    data = dataset(cfg, dataset_name, "train")
    seed = derived_seed(cfg, "train", dataset_name, model_name)
    torch.manual_seed(seed)
    model = build(cfg, model_name, data.num_classes)
    device = pick_device(cfg.get("device", "auto"))
    log.info("training %s on %s (%d items, %d classes) on %s", model_name, dataset_name, len(data),
             data.num_classes, describe(device))
    by_step: dict[int, list[tuple[str, str | os.PathLike]]] = {}
    for stage, path in outputs.items():
        by_step.setdefault(tcfg["checkpoints"][stage], []).append((stage, path))

    held_out = dataset(cfg, dataset_name, "eval")

    def save(step: int, m) -> None:
        stats = training.softmax_stats(m, held_out, device=device)
        log.info("step %d held-out: accuracy %.3f, mean max softmax %.3f, mean true-class softmax %.3f",
                 step, stats["accuracy"], stats["max_softmax"], stats["true_softmax"])
        for stage, path in by_step.get(step, []):
            training.save_checkpoint(path, m, arch=cfg["models"][model_name]["arch"], num_classes=data.num_classes,
                                     step=step, stage=stage, dataset=dataset_name, device=describe(device), **stats,
                                     options={k: v for k, v in cfg["models"][model_name].items()
                                              if k not in ("arch", "weights", "framework")})
            log.info("saved stage %s (step %d) to %s", stage, step, path)

    training.train(model, data, checkpoint_steps=list(by_step), on_checkpoint=save,
                   batch_size=tcfg["batch_size"], lr=tcfg["lr"], optimizer=tcfg.get("optimizer", "sgd"),
                   momentum=tcfg.get("momentum", 0.9), weight_decay=tcfg.get("weight_decay", 0.0),
                   seed=seed, device=device)


def _keras_model(cfg: dict, model_name: str, data, seed: int):
    from labelleak.updates.keras_source import build_keras_model

    spec = cfg["models"][model_name]
    size = int(data.images(np.arange(1)).shape[-1])
    return build_keras_model(spec["arch"], data.num_classes, size, seed=seed, weights=spec.get("weights"))


def train_keras(cfg: dict, dataset_name: str, model_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train a keras.applications model (random init or a weights file) and save its stage checkpoints."""
    from labelleak.updates import keras_source as ks

    tcfg = cfg["training"]
    data = dataset(cfg, dataset_name, "train")
    seed = derived_seed(cfg, "train", dataset_name, model_name)
    model = _keras_model(cfg, model_name, data, seed)
    device = ks.keras_device()
    log.info("training %s (keras) on %s (%d items, %d classes) on %s", model_name, dataset_name, len(data),
             data.num_classes, device)
    by_step: dict[int, list[tuple[str, str | os.PathLike]]] = {}
    for stage, path in outputs.items():
        by_step.setdefault(tcfg["checkpoints"][stage], []).append((stage, path))

    def save(step: int, m) -> None:
        for stage, path in by_step.get(step, []):
            ks.save_keras_checkpoint(path, m, framework="keras", arch=cfg["models"][model_name]["arch"],
                                     num_classes=data.num_classes, step=step, stage=stage, dataset=dataset_name,
                                     device=device)
            log.info("saved stage %s (step %d) to %s", stage, step, path)

    ks.train_keras(model, data, checkpoint_steps=list(by_step), on_checkpoint=save, batch_size=tcfg["batch_size"],
                   lr=tcfg["lr"], momentum=tcfg.get("momentum", 0.9), seed=seed)


def train_asr(cfg: dict, corpus_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train the ASR model on the corpus's training utterances; one checkpoint per stage."""
    import torch

    from labelleak.device import describe, pick_device
    from labelleak.models.asr import build_asr_model
    from labelleak.models.asr_train import train_asr as fit

    tcfg = cfg["speech"]["training"]
    data = corpus(cfg, corpus_name, training=True)
    seed = derived_seed(cfg, "train_asr", corpus_name)
    torch.manual_seed(seed)
    model = build_asr_model(len(data.vocab), **model_sizes(cfg))
    device = pick_device(cfg.get("device", "auto"))
    log.info("training the ASR model (%d parameters) on %d utterances of %s on %s",
             sum(p.numel() for p in model.parameters()), len(data), corpus_name, describe(device))
    stats = fit(model, data.utterances, data.features, checkpoints=dict(tcfg["checkpoints"]), outputs=outputs,
                batch_size=tcfg["batch_size"], lr=tcfg["lr"], optimizer=tcfg.get("optimizer", "adam"), seed=seed,
                device=device, log=log.info)
    log.info("training done: %s", stats)


#: framework -> trainer (``models.<name>.framework``; the ASR model has its own rule, train_asr).
TRAINERS: Registry = Registry("framework", ConfigError, {"torch": train_torch, "keras": train_keras})
