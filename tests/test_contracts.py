"""Contracts of the registries (docs/architecture.md): the schema's name lists are the registries'
names, and every registered attack is deterministic, leaves its input alone and answers n/a (never a
traceback) where its needs are missing. Defense purity: tests/test_defenses.py; forged labels and
meta: tests/test_truth_boundary.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelleak.attacks import registry, run_attack
from labelleak.attacks.base import OPTION_NEEDS
from labelleak.attacks.dummy import DUMMIES
from labelleak.config import schema
from labelleak.data.build import BUILDERS
from labelleak.data.sampling import COMPOSITIONS
from labelleak.data.speech import AUDIO_SOURCES
from labelleak.jobs.dump import GRADIENT_SOURCES
from labelleak.jobs.train import TRAINERS
from labelleak.models.registry import ARCHITECTURES
from labelleak.models.small import ACTIVATIONS
from labelleak.updates.format import Observation


def _enums(node, path=()):
    """(path, enum) of every enum in the schema."""
    if isinstance(node, dict):
        if "enum" in node:
            yield path, list(node["enum"])
        for key, value in node.items():
            yield from _enums(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _enums(value, (*path, i))


ENUMS = list(_enums(schema()))


@pytest.mark.parametrize("field, names", [
    ("composition", COMPOSITIONS), ("kind", BUILDERS), ("arch", ARCHITECTURES), ("activation", ACTIVATIONS),
    ("dummy", DUMMIES), ("audio", AUDIO_SOURCES), ("framework", TRAINERS),
])
def test_schema_name_lists_are_the_registries(field, names):
    lists = [enum for path, enum in ENUMS if path and path[-1] == field and not (field == "kind" and "corpora" in path)]
    assert lists, f"no enum for {field!r} in the schema"
    for enum in lists:
        assert sorted(enum) == sorted(names), (field, enum)


def test_trainers_and_gradient_sources_cover_the_same_frameworks():
    assert sorted(TRAINERS) == sorted(GRADIENT_SOURCES)


def _observation() -> Observation:
    rng = np.random.default_rng(0)
    H = np.abs(rng.standard_normal((6, 32)))
    G = rng.standard_normal((6, 20)) * 0.01
    for i, c in enumerate([2, 5, 5, 9, 13, 17]):
        G[i, c] -= 1.0
    return Observation(dW=H.T @ G / 6, db=G.mean(0), W=rng.standard_normal((32, 20)) * 0.1, b=np.zeros(20),
                       batch_size=6, steps=1, meta={})


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_attack_is_deterministic_leaves_its_input_and_says_na_without_its_needs(name):
    obs = _observation()
    before = {k: np.copy(getattr(obs, k)) for k in ("dW", "db", "W", "b")}
    runs = []
    for _ in range(2):
        rec = run_attack(name, obs)  # update-only: an attack that needs a model or data gets none
        rec.pop("seconds")
        runs.append(json.dumps(rec, sort_keys=True, default=str))
    assert runs[0] == runs[1], name
    for key, value in before.items():
        assert np.array_equal(getattr(obs, key), value), (name, key)
    rec = json.loads(runs[0])
    if registry()[name].needs & OPTION_NEEDS:
        assert rec["status"] == "n/a" and "needs" in rec["reason"], rec
    bare = Observation(dW=obs.dW, db=None, W=None, b=None, batch_size=None, steps=None, meta={})
    rec = run_attack(name, bare)
    if registry()[name].needs - {"steps"}:
        assert rec["status"] == "n/a" and rec["reason"], (name, rec)


def test_every_study_is_a_dag_target_with_its_config_section_and_says_where_its_paper_values_are():
    import subprocess
    import sys
    from pathlib import Path

    from labelleak.config import load_config
    from labelleak.studies import STUDIES

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "config" / "config.yaml")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--list-target-rules"], cwd=root, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = set(proc.stdout.split())
    for name, study in STUDIES.items():
        assert name in cfg, f"study {name} has no section in config/config.yaml"
        assert name in rules, f"study {name} is not a target rule (snakemake {name})"
        assert study.paper, f"study {name} does not say where the paper's values are, or why there are none"


def test_cheap_jobs_do_not_load_torch():
    """An attack, defend, score or render job that needs no model must not pay torch's import (seconds per job,
    hundreds of jobs in the default run): the modules they load import torch only where it is used."""
    import subprocess
    import sys

    code = ("import sys, labelleak.attacks, labelleak.jobs.attack, labelleak.jobs.defend, labelleak.jobs.score, "
            "labelleak.jobs.tables, labelleak.studies; print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout
