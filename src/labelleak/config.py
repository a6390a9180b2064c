"""Config loading and validation: a wrong key or type fails before any job runs, naming the key."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from labelleak.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # package data


def schema() -> dict:
    """The JSON schema of the pipeline config (one file, shared with the Snakefile)."""
    if not SCHEMA_PATH.is_file():
        raise ConfigError(f"{SCHEMA_PATH}: config schema not found (a broken labelleak install)")
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


DEFAULT_THREADS = 2


def job_threads(cfg: dict) -> int:
    """Intra-op threads of every job that trains, dumps or matches: the config's ``threads``, never ``--cores``.

    A float reduction's order follows the thread count, so a job given fewer cores by the scheduler still
    computes with this many threads: the same config gives the same bytes under any ``--cores``.
    """
    return int(cfg.get("threads", DEFAULT_THREADS))


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


def check_overrides(override: Any, base: str = "config/config.yaml") -> None:
    """Refuse an empty mapping in a config merged over ``base`` where the schema needs entries.

    Snakemake merges ``--configfile`` / ``--config`` over the Snakefile's config mapping by mapping, so
    ``models: {}`` keeps every model of ``base`` and silently does nothing.
    """
    root = schema()

    def resolve(node: Any) -> dict:
        while isinstance(node, dict) and "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        return node if isinstance(node, dict) else {}

    def walk(value: Any, node: dict, path: str) -> None:
        if not isinstance(value, dict):
            return
        if not value and node.get("minProperties", 0) >= 1:
            raise ConfigError(f"config key '{path}': an empty mapping changes nothing here: configs are merged over "
                              f"{base} key by key, so its entries stay (name the entries you want, or run with "
                              f"--replace-workflow-config and a complete config)")
        for key, sub in value.items():
            props = node.get("properties", {})
            child = props[key] if key in props else node.get("additionalProperties")
            walk(sub, resolve(child), f"{path}.{key}" if path else str(key))

    walk(override, resolve(root), "")


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
        return "unknown key (not in src/labelleak/schemas/config.schema.yaml)"
    if err.validator == "required":
        return "required key is missing"
    return " ".join(err.message.split())


#: Names that become path components and Snakemake wildcards (the wildcard_constraints of
#: workflow/rules/common.smk): stages (the keys of training.checkpoints), models, datasets.
NAME_PATTERNS = {"stage": r"[A-Za-z0-9_\-]+", "model": r"[A-Za-z0-9_\-]+",
                 "dataset": r"[A-Za-z0-9\-]+(?:_[A-Za-z0-9\-]+)*"}
NAME_RULES = {"stage": "letters, digits, '_' or '-'", "model": "letters, digits, '_' or '-'",
              "dataset": "letters, digits, '-' and single inner '_'"}


def _check_names(cfg: dict) -> None:
    """Stage, model and dataset names are strings a path and a wildcard can hold (YAML reads 101: as an int)."""
    named = [("training.checkpoints", cfg["training"]["checkpoints"], "stage"), ("models", cfg["models"], "model"),
             ("datasets", cfg["datasets"], "dataset")]
    speech = cfg.get("speech")
    if speech:
        named += [("speech.training.checkpoints", speech["training"]["checkpoints"], "stage"),
                  ("speech.corpora", speech["corpora"], "dataset")]
    for path, mapping, kind in named:
        for name, value in mapping.items():
            if isinstance(name, str) and re.fullmatch(NAME_PATTERNS[kind], name):
                continue
            what = f"stage {name!r} (step {value!r})" if kind == "stage" else f"{kind} name {name!r}"
            hint = f' (quote it: "{name}")' if not isinstance(name, str) else ""
            raise ConfigError(f"config key '{path}.{name}': {what} must be a string of {NAME_RULES[kind]}{hint}")


def _defined(cfg: dict, key: str, name: Any, section: str) -> None:
    """``name`` (at config key ``key``) is a key of the config section ``section``."""
    if name not in cfg[section]:
        known = ", ".join(map(str, cfg[section]))
        raise ConfigError(f"config key '{key}': {name!r} is not defined under '{section}' (defined: {known})")


def _stage(cfg: dict, key: str, stage: Any) -> None:
    """``stage`` (at config key ``key``) is a stage of training.checkpoints."""
    stages = cfg["training"]["checkpoints"]
    if stage not in stages:
        raise ConfigError(f"config key '{key}': {stage!r} is not a stage of 'training.checkpoints' "
                          f"(stages: {', '.join(map(str, stages))})")


def _check_references(cfg: dict) -> None:
    _check_names(cfg)
    t1 = cfg["table1"]
    _defined(cfg, "table1.dataset", t1["dataset"], "datasets")
    for i, model in enumerate(t1["models"]):
        _defined(cfg, f"table1.models.{i}", model, "models")
    _stage(cfg, "table1.stage", t1["stage"])
    for name, spec in cfg["datasets"].items():
        needed = {"synthetic_images": ("num_classes", "image_size", "train_size", "eval_size"),
                  "imagenet_val": ("root", "labels_file")}.get(spec["kind"], ("root",))
        for key in needed:
            if key not in spec:
                raise ConfigError(f"config key 'datasets.{name}.{key}': required for kind {spec['kind']!r}")
    _check_label_tables(cfg)
    _check_defense_sections(cfg)
    check_defense_names_and_methods(cfg)
    _check_compositions(cfg)
    _check_speech(cfg)


def _check_defense_sections(cfg: dict) -> None:
    """table4, defense_matrix and utility name defined datasets, models and stages (methods and defense
    names: :func:`check_defense_names_and_methods`)."""
    for section in ("table4", "defense_matrix", "utility", "fl_rounds"):
        sec = cfg.get(section)
        if sec is None:
            continue
        _defined(cfg, f"{section}.dataset", sec["dataset"], "datasets")
        if "models" in sec:
            for i, model in enumerate(sec["models"]):
                _defined(cfg, f"{section}.models.{i}", model, "models")
        else:
            _defined(cfg, f"{section}.model", sec["model"], "models")
        if "stage" in sec:
            _stage(cfg, f"{section}.stage", sec["stage"])


def _eval_classes(spec: dict) -> tuple[int | None, int | None]:
    """(classes, items) of a dataset's eval split, where the config tells them without reading data (else None)."""
    kind = spec["kind"]
    if kind == "synthetic_images":
        return min(spec["num_classes"], spec["eval_size"]), spec["eval_size"]
    if kind == "mnist":
        return 10, spec.get("eval_size")
    if kind == "imagenet_val":
        return 1000, None
    if kind == "cifar" and spec.get("root"):
        root = Path(spec["root"])
        return (100 if (root / "test").is_file() else 10 if (root / "test_batch").is_file() else None), None
    return None, None


def _check_compositions(cfg: dict) -> None:
    """Each sampled setting's composition can be drawn from its dataset's eval split (as data.sampling draws it)."""
    default = cfg["sampling"]["composition"]
    settings = [("table1", cfg["table1"]["dataset"], default, "sampling.composition",
                 [(f"table1.batch_sizes.{i}", n, 1) for i, n in enumerate(cfg["table1"]["batch_sizes"])])]
    for table in LABEL_TABLES:
        t = cfg.get(table)
        if t is None:
            continue
        comp = t.get("composition", default)
        comp_key = f"{table}.composition" if "composition" in t else "sampling.composition"
        sizes = [(f"{table}.batch_sizes.{i}", n, k)
                 for i, n in enumerate(t["batch_sizes"]) for k in t.get("steps", [1])]
        settings += [(table, s["dataset"], comp, comp_key, sizes) for s in t["settings"]]
    for section in ("table4", "defense_matrix"):
        if cfg.get(section) is not None:
            settings.append((section, cfg[section]["dataset"], default, "sampling.composition",
                             [(f"{section}.batch_size", cfg[section]["batch_size"], 1)]))
    for _, dataset, comp, comp_key, sizes in settings:
        classes, items = _eval_classes(cfg["datasets"][dataset])
        for key, n, k in sizes:
            total = n * k
            need, what = {"unique": (total, "distinct classes"), "repeats": (math.ceil(total / 2), "distinct classes"),
                          "random": (total, "items")}[comp]
            have = classes if what == "distinct classes" else items
            per = f"{n} samples x {k} steps" if k > 1 else f"{n} samples"
            if have is not None and need > have:
                raise ConfigError(f"config key '{key}': {per} per update with composition {comp!r} ({comp_key}) need "
                                  f"{need} {what}; the eval split of dataset {dataset!r} has {have}")
            if comp == "repeats" and total < 2:
                raise ConfigError(f"config key '{key}': composition 'repeats' ({comp_key}) needs at least 2 samples "
                                  f"per update, got {per}")


#: the label studies whose config section has the common shape (fl_rounds says it in federated terms)
LABEL_TABLES = ("idlg_table", "ilrg_table", "geng_table", "leaderboard", "counts_by_stage")


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
        _check_methods(t["methods"], f"{table}.methods")


def _attack_names() -> set[str]:
    """Registered attacks and the oracle methods named after them (the names a study's methods may use)."""
    from labelleak.attacks import registry
    from labelleak.attacks.oracles import ORACLE_METHODS

    return {*registry(), *ORACLE_METHODS}


def _check_methods(methods, key: str) -> None:
    """Every method of a study is a registered attack or an oracle method (the registry's message)."""
    from labelleak.registry import unknown

    known = _attack_names()
    for i, method in enumerate(methods if isinstance(methods, list) else []):
        if method not in known:
            raise ConfigError(unknown("attack", method, known, context=f"config key '{key}.{i}'"))


def matrix_methods(cfg: dict) -> list[str]:
    """The attacks of the defense matrix: the config's list, or every registered attack for 'all'."""
    from labelleak.attacks import registry

    methods = cfg["defense_matrix"]["methods"]
    return sorted(registry()) if methods == "all" else list(methods)


def check_defense_names_and_methods(cfg: dict) -> None:
    """Every defense name parses, every attack of the defense studies is registered, fl_rounds uses
    update-only attacks, and utility's leakage column is one of the defense matrix's methods."""
    from labelleak.attacks import registry
    from labelleak.attacks.base import OPTION_NEEDS
    from labelleak.attacks.oracles import attack_name
    from labelleak.defenses import DefenseError, parse

    for section in ("table4", "defense_matrix", "utility", "fl_rounds"):
        sec = cfg.get(section) or {}
        for i, name in enumerate(sec.get("defenses") or []):
            try:
                parse(name)
            except DefenseError as exc:
                raise ConfigError(f"config key '{section}.defenses.{i}': {exc}") from None
        for key in ("methods", "speech_methods"):
            _check_methods(sec.get(key), f"{section}.{key}")
    for i, method in enumerate((cfg.get("fl_rounds") or {}).get("methods") or []):
        extra = sorted(registry()[attack_name(method)].needs & OPTION_NEEDS)
        if extra:
            raise ConfigError(f"config key 'fl_rounds.methods.{i}': {method!r} needs {', '.join(extra)}; the study "
                              f"attacks client updates as the server holds them (update-only attacks)")
    utility = cfg.get("utility")
    if utility is not None and cfg.get("defense_matrix") is None:
        raise ConfigError("config key 'utility': needs a 'defense_matrix' section (its leakage column reads the "
                          "defense matrix's scores)")
    if utility is not None:
        leak = utility.get("leakage_method", "rlg")  # read from the defense matrix's scores
        if leak not in matrix_methods(cfg):
            raise ConfigError(f"config key 'utility.leakage_method': {leak!r} is not one of defense_matrix.methods "
                              f"({', '.join(matrix_methods(cfg))}), whose scores it reads")


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
