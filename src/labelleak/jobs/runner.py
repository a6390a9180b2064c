"""How a Snakemake job runs a stage function: its log file, its thread count, one-line errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger("labelleak")


Paths = Sequence[str | os.PathLike]


@contextlib.contextmanager
def logging_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send this job's log lines to its Snakemake log file (and keep errors one line long)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


def run_job(log_file: str | os.PathLike | None, fn, *args, threads: int = 1) -> None:
    """Run one stage function as a Snakemake job: log to its log file; bad input is one line, exit 1.

    ``threads`` is the job's intra-op thread count for torch and BLAS: 1, or ``config.job_threads(cfg)``
    for the jobs that train or dump, never the scheduler's ``snakemake.threads`` (which follows
    ``--cores``): a float sum's order follows the thread count, and the tables must not.
    """
    from threadpoolctl import threadpool_limits

    from labelleak.errors import LabelleakError
    from labelleak.resume import watch_scheduler

    threads = int(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op default, when it is imported later
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on a GPU
    # also keeps BLAS from oversubscribing: oversubscribed OpenBLAS makes small SVD/QR calls 100x slower
    with logging_to(log_file), threadpool_limits(limits=threads):
        watch_scheduler()  # a killed run's job stops too, not an orphan beside the resumed one
        if "torch" in sys.modules or threads > 1:
            import torch

            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            fn(*args)
        except LabelleakError as exc:
            log.error("%s", exc)
            sys.exit(1)
        except KeyboardInterrupt:  # Ctrl-C, or the scheduler is gone (watch_scheduler): one line
            log.error("interrupted")
            sys.exit(130)
