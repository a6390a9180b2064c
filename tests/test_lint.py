"""Ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade; rules in pyproject.toml) over the
package, the tests, the benchmarks and the workflow scripts: CI fails on a new finding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the test extra (pip install -e '.[test]')"
    proc = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "src", "tests", "benchmarks",
                           "workflow/scripts"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
