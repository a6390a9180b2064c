# Config validation (before any job runs), result paths and helpers shared by the rules.
import os
import sys

from labelleak.config import check_paths, validate_config
from labelleak.errors import ConfigError

try:
    validate_config(config)
    check_paths(config)
except ConfigError as exc:
    sys.exit(f"labelleak: {exc}")


R = "results"
BATCHES = R + "/batches/{dataset}/{composition}_N{n}_K{k}.json"
CHECKPOINT = R + "/models/{dataset}/{model}/{stage}.pt"
SETTING = "{dataset}/{model}/{stage}/{composition}_N{n}_K{k}"
UPDATE = R + "/updates/" + SETTING + "/{batch}.npz"
RESULT = R + "/attacks/{defense}/{method}/" + SETTING + "/{batch}.json"
ENV = "../../environment.yml"

STAGES = list(config["training"]["checkpoints"])
BATCH_IDS = [f"{i:03d}" for i in range(config["sampling"]["num_batches"])]
TORCH_THREADS = max(1, min(workflow.cores, os.cpu_count() or 1))


wildcard_constraints:
    dataset=r"[A-Za-z0-9\-]+(?:_[A-Za-z0-9\-]+)*",
    model=r"[A-Za-z0-9_\-]+",
    stage=r"[A-Za-z0-9_\-]+",
    composition=r"[a-z]+",
    n=r"\d+",
    k=r"\d+",
    batch=r"\d+",
    defense=r"none",
    method=r"[a-z0-9_]+",


def with_braces(pattern):
    """Escape a path pattern's wildcards for expand(), keeping them as wildcards."""
    return pattern.replace("{", "{{").replace("}", "}}")
