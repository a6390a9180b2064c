"""Ground truth stays outside the attacker's inputs: in the DAG, in the file reader, in every attack.

- The DAG: a truth file (results/truth/...) is an input of the scoring rules and of oracle methods
  only; no other job sees one, and update files hold no labels.
- The reader: an attacker's Observation keeps only the allow-listed meta keys.
- Every registered attack: forged labels and forged meta in the file change nothing it returns.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from workflow_copy import copy_workflow

from labelleak.attacks import registry, run_attack
from labelleak.attacks.oracles import ORACLE_METHODS
from labelleak.errors import UpdateFileError
from labelleak.updates.format import ATTACKER_META, load_observation, load_truth, load_update, save_truth, save_update

SCORING_RULES = {"score_table1", "score_defense_study", "score_labels", "score_speech"}


def _dry_run_jobs(work) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "tables", "--configfile", "config/smoke.yaml"],
                          cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs, job = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        line = line.strip()  # jobs of a group are listed indented
        if m := re.fullmatch(r"(?:local)?rule (\w+):", line):
            job = {"rule": m.group(1), "input": [], "wildcards": {}}
            jobs.append(job)
        elif job is not None and line.startswith("input: "):
            job["input"] = line[len("input: "):].split(", ")
        elif job is not None and line.startswith("wildcards: "):
            job["wildcards"] = dict(kv.split("=", 1) for kv in line[len("wildcards: "):].split(", "))
    return jobs


def test_only_scoring_and_oracle_jobs_read_truth_files(tmp_path):
    jobs = _dry_run_jobs(copy_workflow(tmp_path / "wf"))
    readers = [j for j in jobs if any(f.startswith("results/truth/") for f in j["input"])]
    assert {j["rule"] for j in jobs} >= SCORING_RULES | {"attack", "dump_updates"}
    for j in readers:
        oracle = j["rule"].startswith("attack") and j["wildcards"].get("method") in ORACLE_METHODS
        assert j["rule"] in SCORING_RULES or oracle, (j["rule"], j["wildcards"])
    assert {j["rule"] for j in readers} >= SCORING_RULES  # every scorer takes truth files
    oracles = [j for j in jobs if j["rule"].startswith("attack") and j["wildcards"].get("method") in ORACLE_METHODS]
    assert oracles and all(any(f.startswith("results/truth/") for f in j["input"]) for j in oracles)


def _update(tmp_path, name, labels, meta):
    rng = np.random.default_rng(0)
    H = np.abs(rng.standard_normal((6, 32)))
    G = rng.standard_normal((6, 20)) * 0.01
    true = [2, 5, 5, 9, 13, 17]
    for i, c in enumerate(true):
        G[i, c] -= 1.0
    path = tmp_path / name
    save_update(path, H.T @ G / 6, db=G.mean(0), W=rng.standard_normal((32, 20)) * 0.1, b=np.zeros(20),
                batch_size=6, steps=1, labels=np.asarray(labels), meta=meta)
    return path


def test_forged_labels_and_meta_change_no_attack_output(tmp_path):
    honest = _update(tmp_path, "a.npz", [2, 5, 5, 9, 13, 17], {"model": "m"})
    forged = _update(tmp_path, "b.npz", [0, 0, 0, 1, 1, 1], {"model": "m", "batch_seed": 7, "labels": [1],
                                                             "utterances": ["x"], "batch": 3})
    assert load_observation(forged).meta == {"model": "m"}
    for name in sorted(registry()):
        got = [run_attack(name, load_observation(p)) for p in (honest, forged)]
        for rec in got:
            rec.pop("seconds", None)
        assert json.dumps(got[0], sort_keys=True, default=str) == json.dumps(got[1], sort_keys=True, default=str), name


def test_observation_meta_is_an_allow_list(tmp_path):
    path = _update(tmp_path, "u.npz", [1], {"model": "m", "device": "cpu", "batch_seed": 1, "indices": [[3]]})
    assert load_observation(path).meta == {"model": "m", "device": "cpu"}
    assert load_update(path)[0].meta["batch_seed"] == 1  # the analysis side reads the whole file
    assert {"batch_seed", "batch", "utterances", "indices", "labels", "composition"}.isdisjoint(ATTACKER_META)


def test_truth_file_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "t.json"
    save_truth(path, [3, 3, 7], 10, batch=0, batch_seed=5)
    truth = load_truth(path)
    assert truth.labels.tolist() == [3, 3, 7] and truth.num_classes == 10 and truth.counts == {3: 2, 7: 1}
    with pytest.raises(UpdateFileError, match="must lie in"):
        save_truth(tmp_path / "bad.json", [10], 10)
    assert not (tmp_path / "bad.json").exists()
    cases = {"missing.json": None, "notjson.json": "{", "kind.json": json.dumps({"kind": "x"}),
             "labels.json": json.dumps({"kind": "labelleak-truth", "version": 1, "labels": [1.5], "num_classes": 3}),
             "range.json": json.dumps({"kind": "labelleak-truth", "version": 1, "labels": [4], "num_classes": 3}),
             "newer.json": json.dumps({"kind": "labelleak-truth", "version": 99, "labels": [], "num_classes": 3})}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(UpdateFileError) as err:
            load_truth(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)
