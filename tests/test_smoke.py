"""The whole DAG on the smoke config, in a temporary directory: Table 1's shape and the paper's finding.

RLG recovers the label sets of EfficientNetB0 (swish) updates; Yin et al.'s rule does not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    for item in ("Snakefile", "workflow", "config", "environment.yml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "tables", "--configfile", "config/smoke.yaml"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.smoke
def test_table1_shape_and_finding(smoke_run):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["table1"]
    tidy = pd.read_csv(smoke_run / "results" / "tables" / "table1.csv")
    assert len(tidy) == len(cfg["models"]) * len(cfg["batch_sizes"]) * len(cfg["methods"]) * 4
    assert set(tidy["metric"]) == {"precision", "recall", "f1", "exact_match"}
    assert (tidy["n_updates"] + tidy["n_na"] == 3).all()
    cell = tidy.set_index(["model", "method", "metric"])["mean"]
    assert cell["efficientnet_b0", "rlg", "f1"] >= 0.95
    assert cell["efficientnet_b0", "yin", "precision"] < 0.5
    md = (smoke_run / "results" / "tables" / "table1.md").read_text()
    assert "EfficientNetB0 F1" in md and "RLG" in md
    tex = (smoke_run / "results" / "tables" / "table1.tex").read_text()
    assert r"\toprule" in tex


@pytest.mark.smoke
def test_every_job_left_a_log(smoke_run):
    logs = list((smoke_run / "results" / "logs").rglob("*.log"))
    assert any("train_model" in str(p) for p in logs) and any("attack" in str(p) for p in logs)


def test_malformed_config_stops_before_any_job(tmp_path):
    for item in ("Snakefile", "workflow", "config", "environment.yml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["training"]["lr"] = "fast"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", "tables", "--configfile", "bad.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "'training.lr'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()
