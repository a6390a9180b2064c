"""What the stage functions share: datasets and models of the config, seeds, the speech corpora, and
the one builder of an attacker's context (model, auxiliary data, decoder update) for the DAG and the CLI.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger("labelleak")


def dataset(cfg: dict, name: str, split: str):
    """The dataset ``name`` of the config, seeded by the master seed."""
    from labelleak.data import build_dataset

    return build_dataset(cfg["datasets"][name], split, seed=cfg["seed"])


def derived_seed(cfg: dict, *parts) -> int:
    """A seed for one job, derived from the master seed and the job's identity (stable across runs)."""
    words = [cfg["seed"], *[int.from_bytes(str(p).encode(), "little") % (2**32) for p in parts]]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def build(cfg: dict, model_name: str, num_classes: int):
    from labelleak.models import build_model, load_weights

    spec = cfg["models"][model_name]
    options = {k: v for k, v in spec.items() if k not in ("arch", "weights", "framework")}  # small models: activation, ...
    model = build_model(spec["arch"], num_classes=num_classes, **options)
    if spec.get("weights"):
        load_weights(model, spec["weights"])
        log.info("loaded weights from %s", spec["weights"])
    return model


def load_model(cfg: dict, model_name: str, checkpoint: str | os.PathLike, dataset_name: str | None = None):
    """The model at ``checkpoint`` (eval mode), with ``input_shape`` set (dummy-input attacks need it)."""
    import torch

    from labelleak.models.train import load_checkpoint

    torch.set_num_threads(1)  # attack jobs are single-threaded; torch's default oversubscribes a shared CPU
    info = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = build(cfg, model_name, int(info["num_classes"]))
    load_checkpoint(checkpoint, model)
    if not getattr(model, "input_shape", None) and dataset_name:
        model.input_shape = tuple(dataset(cfg, dataset_name, "eval").images([0]).shape[1:])
    return model.eval()


def framework(cfg: dict, model_name: str) -> str:
    """The framework that computes a model's updates: torch (default) or keras (models.<name>.framework)."""
    return cfg["models"][model_name].get("framework", "torch")


def auxiliary_data(cfg: dict, dataset_name: str):
    """``aux(c, n, rep)``: n items of class c from the train split (the attacker's data, seeded)."""
    import numpy as np

    data = dataset(cfg, dataset_name, "train")

    def aux(c: int, n: int, rep: int):
        pool = np.flatnonzero(data.labels == c)
        rng = np.random.default_rng(derived_seed(cfg, "aux", dataset_name, c, rep))
        return data.images(rng.choice(pool, size=n, replace=len(pool) < n)) if pool.size else \
            data.images(rng.choice(len(data), size=n))

    return aux


def attacker_context(cfg: dict, needs, checkpoint, dataset_name, model_name) -> dict:
    """The options an attack declares beyond the observation (model, auxiliary data), else nothing."""
    pass  # (moved here)

    extras: dict = {}
    if "model" in needs and checkpoint and is_speech(cfg, dataset_name):
        from labelleak.models.asr_train import load_asr_checkpoint

        extras["model"] = load_asr_checkpoint(checkpoint).eval()
    elif "model" in needs and checkpoint:
        extras["model"] = load_model(cfg, model_name, checkpoint, dataset_name)
    if "aux_data" in needs and dataset_name:
        extras["aux_data"] = auxiliary_data(cfg, dataset_name)
    return extras


def update_context(needs, update) -> dict:
    """Per-update options an attack declares: the decoder's update of an ASR update (sibling file)."""
    if "decoder_update" not in needs:
        return {}
    from labelleak.updates.asr import decoder_path, load_decoder_update

    if not Path(decoder_path(update)).exists():  # an image update: the attack reports n/a
        return {}
    return {"decoder_update": load_decoder_update(update)}


def is_speech(cfg: dict, dataset_name: str | None) -> bool:
    return bool(dataset_name) and dataset_name in cfg.get("speech", {}).get("corpora", {})


@functools.lru_cache(maxsize=4)
def _corpus(spec_json: str, seed: int, training: int | None = None):
    from labelleak.data.speech import build_speech_corpus, training_utterances

    spec = json.loads(spec_json)
    corpus = build_speech_corpus(spec, seed)
    return corpus if training is None else training_utterances(spec, corpus, training, seed)


def corpus(cfg: dict, name: str, training: bool = False):
    """The attacked utterances of corpus ``name`` (or, with ``training``, the disjoint training set)."""
    scfg = cfg["speech"]
    count = scfg["training"].get("num_utterances") if training else None
    return _corpus(json.dumps(scfg["corpora"][name], sort_keys=True), cfg["seed"], count if training else None)


def model_sizes(cfg: dict) -> dict:
    return dict(cfg["speech"].get("model") or {})
