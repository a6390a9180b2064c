"""A copy of the workflow in a temporary directory, as a user's checkout has it (Snakemake runs there)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ITEMS = ("Snakefile", "workflow", "profiles", "config", "environment.yml")  # profiles/default: resume


def copy_workflow(dest: Path) -> Path:
    """Copy what ``snakemake`` reads into ``dest`` (created if missing) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ITEMS:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest
