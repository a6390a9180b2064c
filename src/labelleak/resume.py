"""Plain resume after a killed run: stale Snakemake locks and orphaned jobs.

Snakemake marks a started job incomplete (``rerun-incomplete: true`` in ``profiles/default`` reruns it
with the same command) and locks the working directory while it runs. A scheduler killed with SIGKILL
removes neither the lock nor its running jobs. Snakemake's lock files name files, not processes, so
it cannot tell a live lock from a stale one; this module can, because every scheduler of this
workflow registers itself (host, pid, process start time) when it reads the Snakefile:

- :func:`reclaim_stale_locks`: when no registered scheduler is alive, the locks are stale: remove them
  (the next command resumes as if the lock had been released), and the temporary files that the
  killed jobs left beside their outputs. A scheduler on another host, whose
  life cannot be checked from here, counts as alive: its lock stays, and ``snakemake --unlock``
  remains the way out.
- :func:`watch_scheduler`: a job started by a scheduler stops when that scheduler is gone, instead of
  running on as an orphan beside the resumed run's copy of it. Outputs are written atomically
  (:func:`labelleak.io.atomic_path`), so a stopped job leaves nothing half-written.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from labelleak.io import TEMP_MARK

log = logging.getLogger(__name__)

ENV = "LABELLEAK_SCHEDULER"  # "host:pid:start" of the process that started this job
REGISTRY = "labelleak-schedulers"  # under .snakemake/: one empty file per scheduler, named by its identity
GRACE_S = 30.0  # after the interrupt, the seconds a job has to unwind before it is ended


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def identity(pid: int | None = None) -> str:
    """``host:pid:start`` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or 0}"


def alive(ident: str) -> bool | None:
    """Whether the process ``ident`` still runs; None when it ran on another host (unknown)."""
    try:
        host, pid, start = ident.rsplit(":", 2)
        pid_i = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    return _start_time(pid_i) == start


def reclaim_stale_locks(snakemake_dir: str | os.PathLike = ".snakemake", results: str | os.PathLike = "results"
                        ) -> list[str]:
    """Register this scheduler; first, when no other registered one is alive, remove their stale locks
    (and, after a killed run, the temporary files of its jobs under ``results``).

    Returns the files removed.
    """
    root = Path(snakemake_dir)
    registry = root / REGISTRY
    registry.mkdir(parents=True, exist_ok=True)
    me = identity()
    others = [p for p in registry.iterdir() if p.name != me]
    states = {p: alive(p.name) for p in others}
    removed: list[str] = []
    if not any(state is not False for state in states.values()):
        for lock in sorted((root / "locks").glob("*.lock")):
            lock.unlink(missing_ok=True)
            removed.append(str(lock))
        for p, _ in states.items():
            p.unlink(missing_ok=True)
        if removed:  # a scheduler died holding its lock: its jobs died too, maybe mid-write
            for tmp in sorted(Path(results).rglob(f".*{TEMP_MARK}*")):
                tmp.unlink(missing_ok=True)
                removed.append(str(tmp))
            log.warning("labelleak: a killed run's lock and partial files removed (%d files)", len(removed))
    (registry / me).touch()
    return removed


def watch_scheduler(interval_s: float = 1.0, grace_s: float = GRACE_S) -> threading.Thread | None:
    """Stop this job (KeyboardInterrupt in the main thread, then exit) once its scheduler is gone.

    Does nothing outside a workflow job (no ``LABELLEAK_SCHEDULER``) or when the scheduler ran on
    another host.
    """
    ident = os.environ.get(ENV)
    if not ident or alive(ident) is not True:
        return None
    # a job of a scheduler started in the background (nohup, `&`) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: install it, so the stop below unwinds (finally blocks run)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while alive(ident):
            time.sleep(interval_s)
        log.error("the scheduler that started this job (%s) is gone: stopping", ident)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal wakes a sleeping or waiting main thread
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="watch-scheduler", daemon=True)
    thread.start()
    return thread
