"""The smoke DAG through the slurm profile on a real (one-node, loopback) SLURM cluster.

The cluster comes from tests/cluster/local_slurm.sh (apt-installs slurm-wlm and munge when missing,
as root; one fake GPU). The tables must equal those of a local run of the same config: same seeds,
same device (the fake GPU is no CUDA device, so both runs use the CPU) and the config's threads, whatever
CPUs the scheduler gives a job: the files must be byte-identical.
Deselect with ``-m "not slurm"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflow_copy import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "cluster" / "local_slurm.sh"
CONFIG = "config/smoke.yaml"
# Table 1 of the smoke config by default (CI time), on EfficientNetB0 only (the GPU request path is the
# same for both models); LABELLEAK_SLURM_TARGET=tables runs every table of the full smoke config.
TARGET = os.environ.get("LABELLEAK_SLURM_TARGET", "table1")
OVERRIDE = "{}\n" if TARGET != "table1" else (
    "table1: {dataset: synth100, models: [efficientnet_b0], stage: pretrained, batch_sizes: [10], methods: [yin, rlg]}\n")
CORES = 2  # the local run's --cores; the slurm run gives its GPU rules 1 CPU: the numbers must not care

pytestmark = pytest.mark.slurm


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    copy_workflow(dest)
    (dest / "config" / "slurm_test.yaml").write_text(OVERRIDE)  # merged after the smoke config
    return dest


CONFIGS = [CONFIG, "config/slurm_test.yaml"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running local cluster; stopped afterwards only when this fixture started it."""
    have_slurm = shutil.which("slurmctld") and shutil.which("sbatch")
    if not have_slurm and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("no SLURM and cannot apt-get it (needs root); run tests/cluster/local_slurm.sh start")
    env = dict(os.environ, SLURM_LOCAL_DIR=os.environ.get("SLURM_LOCAL_DIR", "/tmp/labelleak-slurm"))
    was_up = subprocess.run(["bash", str(SCRIPT), "status"], env=env, capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env["SLURM_CONF"] = os.environ.get("SLURM_LOCAL_CONF_DIR", "/etc/slurm") + "/slurm.conf"
    yield env
    if not was_up:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True)


def _tables(work: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((work / "results" / "tables").iterdir())}


def test_slurm_tables_equal_local_tables(cluster, tmp_path):
    local = _copy_workflow(tmp_path / "local")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(CORES), TARGET,
                           "--configfile", *CONFIGS], cwd=local, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]

    remote = _copy_workflow(tmp_path / "slurm")
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", TARGET,
           "--configfile", *CONFIGS, "--jobs", "4", "--latency-wait", "5",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
           "--default-resources", "slurm_partition=debug", "mem_mb=1000", "runtime=30",
           "--set-threads", "train_model=1", "dump_updates=1", "--verbose"]  # logs sbatch calls
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=remote, capture_output=True, text=True, env=cluster, timeout=1500)
    wall = time.perf_counter() - start
    print(f"slurm run: {wall:.0f}s")
    assert proc.returncode == 0, proc.stderr[-6000:]

    want, got = _tables(local), _tables(remote)
    assert want and set(got) == set(want)
    for name in want:  # byte for byte: the same config gives the same tables on any scheduler
        assert got[name] == want[name], name

    # The jobs really went through SLURM, grouped, and the GPU rules asked for (and got) the fake GPU.
    slurm_logs = list((remote / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert any("rule_train_model" in str(p) for p in slurm_logs)
    assert any("group_cheap" in str(p) for p in slurm_logs), sorted({p.parent.name for p in slurm_logs})
    assert not any("rule_attack" in str(p) for p in slurm_logs)
    gpu_calls = [line for line in proc.stderr.splitlines() if "sbatch call" in line and "--gpus=1" in line]
    assert gpu_calls and all("rule_train_model" in c or "rule_dump_updates" in c for c in gpu_calls)
