"""Plain resume after a killed run (labelleak.resume): stale locks go, live ones stay, orphans stop.

The whole-DAG check (SIGKILL mid-run, the same command, byte-identical tables) is in test_smoke.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labelleak import resume
from labelleak.io import TEMP_MARK, atomic_path

ROOT = Path(__file__).resolve().parents[1]


def _dead_identity() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = resume.identity(proc.pid)
    proc.wait()
    return ident


def _snakemake_dir(tmp_path: Path, owner: str) -> Path:
    root = tmp_path / ".snakemake"
    (root / "locks").mkdir(parents=True)
    (root / "locks" / "0.input.lock").write_text("results/a\n")
    (root / "locks" / "0.output.lock").write_text("results/b\n")
    (root / resume.REGISTRY).mkdir()
    (root / resume.REGISTRY / owner).touch()
    return root


def test_identity_tells_a_live_process_from_a_dead_or_reused_pid():
    me = resume.identity()
    assert resume.alive(me) is True
    assert resume.alive(_dead_identity()) is False
    host, pid, start = me.rsplit(":", 2)
    assert resume.alive(f"{host}:{pid}:{int(start) + 1}") is False  # same pid, another process
    assert resume.alive(f"not-{socket.gethostname()}:{pid}:{start}") is None  # another host: unknown
    assert resume.alive("garbage") is False


def test_locks_of_a_killed_scheduler_are_removed_with_its_partial_files(tmp_path):
    root = _snakemake_dir(tmp_path, _dead_identity())
    results = tmp_path / "results"
    (results / "x").mkdir(parents=True)
    partial = results / "x" / f".000.npz{TEMP_MARK}abc.npz"
    partial.write_bytes(b"half")
    kept = results / "x" / "000.npz"
    kept.write_bytes(b"whole")
    removed = resume.reclaim_stale_locks(root, results)
    assert not list((root / "locks").iterdir())
    assert str(partial) in removed and not partial.exists() and kept.exists()
    assert [p.name for p in (root / resume.REGISTRY).iterdir()] == [resume.identity()]  # the dead one pruned


@pytest.mark.parametrize("owner", ["live", "other-host"])
def test_locks_of_a_live_or_unknown_scheduler_stay(tmp_path, owner):
    ident = resume.identity(os.getppid()) if owner == "live" else f"elsewhere-{socket.gethostname()}:1:1"
    root = _snakemake_dir(tmp_path, ident)
    assert resume.reclaim_stale_locks(root, tmp_path / "results") == []
    assert len(list((root / "locks").iterdir())) == 2
    assert (root / resume.REGISTRY / ident).exists()


def test_no_stale_lock_removes_nothing(tmp_path):
    root = tmp_path / ".snakemake"
    assert resume.reclaim_stale_locks(root, tmp_path / "results") == []
    assert (root / resume.REGISTRY / resume.identity()).exists()


def test_a_job_stops_when_its_scheduler_is_killed_and_leaves_no_partial_file(tmp_path):
    scheduler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    out = tmp_path / "out.txt"
    job = textwrap.dedent(f"""
        import time
        from labelleak.io import atomic_path
        from labelleak.resume import watch_scheduler
        assert watch_scheduler(interval_s=0.1, grace_s=5) is not None
        with atomic_path({str(out)!r}) as tmp:
            tmp.write_text("half")
            print("inside", flush=True)
            time.sleep(60)
    """)
    env = dict(os.environ, **{resume.ENV: resume.identity(scheduler.pid)})
    # SIGINT ignored, as for a job of a scheduler started in the background (nohup, &): the stop must still unwind
    proc = subprocess.Popen([sys.executable, "-c", job], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout.readline().strip() == "inside"  # mid-write: the temporary file exists
    assert proc.poll() is None and list(tmp_path.glob(f".*{TEMP_MARK}*"))
    scheduler.kill()
    scheduler.wait()
    start = time.monotonic()
    err = proc.communicate(timeout=30)[1]
    assert time.monotonic() - start < 10 and proc.returncode != 0
    assert not out.exists() and not list(tmp_path.glob(f".*{TEMP_MARK}*"))  # the finally block ran
    assert "is gone: stopping" in err


def test_outside_a_workflow_job_nothing_is_watched(monkeypatch):
    monkeypatch.delenv(resume.ENV, raising=False)
    assert resume.watch_scheduler() is None
    monkeypatch.setenv(resume.ENV, _dead_identity())
    assert resume.watch_scheduler() is None  # already gone: nothing to watch (the job was not started by it)


def test_atomic_path_marks_its_temporary_file(tmp_path):
    with atomic_path(tmp_path / "a.json") as tmp:
        assert TEMP_MARK in tmp.name and tmp.name.startswith(".a.json")
        tmp.write_text("{}")
    assert (tmp_path / "a.json").read_text() == "{}"
