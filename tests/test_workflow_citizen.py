"""The workflow as a Snakemake citizen: lint-clean, one environment for conda and pip, a sane slurm profile."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from workflow_copy import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.v8+.yaml"
CONDA_NAMES = {"matplotlib": "matplotlib-base", "snakemake": "snakemake-minimal", "soundfile": "pysoundfile"}  # conda-forge's names



def test_snakemake_lint_is_clean(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=copy_workflow(tmp_path), capture_output=True,
                          text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Congratulations, your workflow is in a good condition!" in out


def _requirements(lines) -> dict[str, str]:
    reqs = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        if m and m.group(1) not in ("python", "pip", "-e"):
            reqs[m.group(1).lower()] = m.group(2).replace(" ", "")
    return reqs


def test_environment_yml_lists_what_pyproject_does_with_the_same_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        wanted += extra
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = [d for d in env["dependencies"] if isinstance(d, str)]
    listed += [d for block in env["dependencies"] if isinstance(block, dict) for d in block.get("pip", [])]
    have = _requirements(listed)
    for name, bounds in _requirements(wanted).items():
        key = name if name in have else CONDA_NAMES.get(name, name)
        assert key in have, f"environment.yml lacks {name}"
        assert have[key] == bounds, f"{name}: pyproject {bounds!r}, environment.yml {have[key]!r}"


def test_slurm_profile_asks_gpus_for_gpu_rules_and_works_without_accounting():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # sacct hangs the plugin when accounting is off
    assert profile["jobs"] >= 1 and profile["retries"] >= 1 and profile["latency-wait"] > 0
    rules_text = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    for rule in ("train_model", "dump_updates", "train_asr", "dump_asr_updates", "match_transcripts"):
        res = profile["set-resources"][rule]
        assert res["gpu"] == 1 and "mem_mb" in res and res["runtime"] > 0
        assert f"rule {rule}:" in rules_text
    for rule in profile["set-resources"]:
        assert f"rule {rule}:" in rules_text, f"profile names unknown rule {rule}"
    # the cheap per-update rule runs grouped on a cluster
    attack = rules_text[rules_text.index("rule attack:"):]
    attack = attack[:attack.index("\nrule ") if "\nrule " in attack else None]
    assert "group:" in attack and "CHEAP" in attack


def test_cores_above_the_machine_are_capped(tmp_path):
    """--cores beyond the CPUs would only oversubscribe them; the scheduler gets the CPU count instead."""
    work = copy_workflow(tmp_path / "wf")
    target = "results/batches/synth100/random_N10_K1.json"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4096", target, "--configfile",
                           "config/smoke.yaml"], cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cpus = len(os.sched_getaffinity(0))
    assert f"--cores 4096 capped at this machine's {cpus} CPUs" in proc.stderr
    assert f"Provided cores: {cpus}" in proc.stdout + proc.stderr
