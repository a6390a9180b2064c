"""Config loading and validation: a wrong key or type fails before any job runs, naming the key."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from labelleak.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def schema() -> dict:
    """The JSON schema of the pipeline config (one file, shared with the Snakefile)."""
    if not SCHEMA_PATH.is_file():
        raise ConfigError(f"{SCHEMA_PATH}: config schema not found (run from a labelleak checkout)")
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML config and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    validate_config(cfg)
    return cfg


def validate_config(cfg: Any) -> dict:
    """Check ``cfg`` against the schema and the cross-references the schema cannot express."""
    if not isinstance(cfg, dict):
        raise ConfigError("config: the top level must be a mapping")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        raise ConfigError(f"config key '{_key(err)}': {_message(err)}")
    _check_references(cfg)
    return cfg


def config_hash(cfg: dict) -> str:
    """A short, stable hash of a config, printed on every table so it can be traced to its settings."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def _key(err: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        if extra:
            return f"{path}.{extra[0]}" if path else extra[0]
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            return f"{path}.{missing[0]}" if path else missing[0]
    return path or "<top level>"


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        return "unknown key (not in workflow/schemas/config.schema.yaml)"
    if err.validator == "required":
        return "required key is missing"
    return " ".join(err.message.split())


def _check_references(cfg: dict) -> None:
    t1 = cfg["table1"]
    if t1["dataset"] not in cfg["datasets"]:
        raise ConfigError(f"config key 'table1.dataset': {t1['dataset']!r} is not defined under 'datasets'")
    for i, model in enumerate(t1["models"]):
        if model not in cfg["models"]:
            raise ConfigError(f"config key 'table1.models.{i}': {model!r} is not defined under 'models'")
    if t1["stage"] not in cfg["training"]["checkpoints"]:
        raise ConfigError(f"config key 'table1.stage': {t1['stage']!r} is not a stage of 'training.checkpoints'")
    for name, spec in cfg["datasets"].items():
        needed = {"synthetic_images": ("num_classes", "image_size", "train_size", "eval_size"),
                  "imagenet_val": ("root", "labels_file")}.get(spec["kind"], ("root",))
        for key in needed:
            if key not in spec:
                raise ConfigError(f"config key 'datasets.{name}.{key}': required for kind {spec['kind']!r}")
    _check_label_tables(cfg)
    _check_speech(cfg)


LABEL_TABLES = ("idlg_table", "ilrg_table", "geng_table", "leaderboard")


def _check_label_tables(cfg: dict) -> None:
    """Each label table's settings name defined datasets, models and stages, within the sampled batches."""
    for table in LABEL_TABLES:
        t = cfg.get(table)
        if t is None:
            continue
        for i, setting in enumerate(t["settings"]):
            for key, section in (("dataset", "datasets"), ("model", "models")):
                if setting[key] not in cfg[section]:
                    raise ConfigError(f"config key '{table}.settings.{i}.{key}': {setting[key]!r} is not defined "
                                      f"under '{section}'")
        for i, stage in enumerate(t["stages"]):
            if stage not in cfg["training"]["checkpoints"]:
                raise ConfigError(f"config key '{table}.stages.{i}': {stage!r} is not a stage of 'training.checkpoints'")
        if t["num_batches"] > cfg["sampling"]["num_batches"]:
            raise ConfigError(f"config key '{table}.num_batches': {t['num_batches']} > sampling.num_batches "
                              f"({cfg['sampling']['num_batches']}), the batches each setting has")
        if t.get("figure_stage") is not None and t["figure_stage"] not in t["stages"]:
            raise ConfigError(f"config key '{table}.figure_stage': {t['figure_stage']!r} is not one of its stages")


#: The speech studies, their required keys, and which key names stages / counts of updates.
SPEECH_STUDIES = {"table2": ("stages", "gm_stage"), "table3": ("stage", "shapes"), "table5": ("stage",),
                  "figure2": ("stages", "num_updates")}


def _check_speech(cfg: dict) -> None:
    """The speech tables name defined checkpoints and need no more updates than each setting has."""
    studies = [s for s in SPEECH_STUDIES if s in cfg]
    speech = cfg.get("speech")
    if speech is None:
        if studies:
            raise ConfigError(f"config key '{studies[0]}': needs a 'speech' section (corpus, model, training)")
        return
    if speech["corpus"] not in speech["corpora"]:
        raise ConfigError(f"config key 'speech.corpus': {speech['corpus']!r} is not defined under 'speech.corpora'")
    clash = sorted(set(speech["corpora"]) & set(cfg["datasets"]))
    if clash:
        raise ConfigError(f"config key 'speech.corpora.{clash[0]}': the name is also an image dataset")
    stages = speech["training"]["checkpoints"]
    t4_stage = (cfg.get("table4") or {}).get("speech_stage")
    if t4_stage is not None and str(t4_stage) not in stages:
        raise ConfigError(f"config key 'table4.speech_stage': {t4_stage!r} is not a stage of "
                          f"'speech.training.checkpoints'")
    for study in studies:
        sec = cfg[study]
        for key in SPEECH_STUDIES[study]:
            if key not in sec:
                raise ConfigError(f"config key '{study}.{key}': required")
        named = [("stage", sec.get("stage")), ("gm_stage", sec.get("gm_stage"))]
        named += [(f"stages.{i}", s) for i, s in enumerate(sec.get("stages", []))]
        for key, stage in named:
            if stage is not None and str(stage) not in stages:
                raise ConfigError(f"config key '{study}.{key}': {stage!r} is not a stage of "
                                  f"'speech.training.checkpoints'")
        for key in ("num_updates", "gm_updates"):
            if sec.get(key, 0) > speech["num_updates"]:
                raise ConfigError(f"config key '{study}.{key}': {sec[key]} > speech.num_updates "
                                  f"({speech['num_updates']}), the updates each setting has")


def check_paths(cfg: dict) -> None:
    """Every path the config names must exist before any job runs (one line naming the path)."""
    for name, spec in cfg["datasets"].items():
        for key in ("root", "labels_file", "class_index"):
            if spec.get(key) and not Path(spec[key]).exists():
                raise ConfigError(f"config key 'datasets.{name}.{key}': {spec[key]}: no such file or directory "
                                  f"(expected an ImageNet validation folder of ILSVRC2012_val_*.JPEG files and a "
                                  f"label file with lines '<file> <class index>')")
    for name, spec in cfg.get("speech", {}).get("corpora", {}).items():
        paths = [("transcripts", p) for p in spec.get("transcripts", [])]
        paths += [(k, spec.get(k)) for k in ("vocab", "audio_root")]
        paths += [("selection", spec.get("selection"))] if spec.get("selection") not in (None, "paper_rule") else []
        paths += [(f"groupings.{k}", v) for k, v in (spec.get("groupings") or {}).items()]
        for key, path in paths:
            if path and not Path(path).exists():
                raise ConfigError(f"config key 'speech.corpora.{name}.{key}': {path}: no such file or directory "
                                  f"(expected LibriSpeech *.trans.txt transcripts, a word-piece vocabulary with one "
                                  f"piece per line, and the paper-samples id / grouping files)")
    for name, spec in cfg["models"].items():
        if spec.get("weights") and not Path(spec["weights"]).is_file():
            raise ConfigError(f"config key 'models.{name}.weights': {spec['weights']}: no such file")
