"""Atomic file writing: a failed job never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status; else set and restore at once)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the only portable read; 0o077 meanwhile errs on the private side
    os.umask(mask)
    return mask


TEMP_MARK = ".partial-"  # in the name of every temporary file beside an output (a killed job's are removed)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the mode an ordinary ``open(path, "w")`` would give it (0666 & ~umask), not the
    temporary file's private 0600, so results are readable by whoever the user's umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = None
    try:  # an interrupt anywhere after mkstemp (a stopped job: labelleak.resume) still removes the file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}", suffix=suffix or path.suffix)
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


#: ``savefig`` metadata per format that keeps a figure byte-identical between runs: no creation date.
FIGURE_METADATA: dict[str, dict] = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


def save_figure(fig: Any, paths: dict[str, str | os.PathLike], dpi: int) -> None:
    """Write a matplotlib figure atomically once per format (the key: pdf, png, svg), reproducibly."""
    for fmt, path in paths.items():
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=FIGURE_METADATA.get(fmt))


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
