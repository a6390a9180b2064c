"""What a study is: one paper table or figure (or one of labelleak's own), by name.

A study lays out its scores as a table (``layout(scores, cfg, seed) -> (aggregate, TableSpec)``: the
cells, their order, the title and caption), may draw a figure beside it, and says where the paper's
published values are or why it has none (``paper``). The DAG builds a study's cells from its config
section (the config key is the study's name) and calls its layout in the study's render job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from labelleak.errors import ConfigError
from labelleak.registry import Registry


@dataclass(frozen=True)
class Study:
    name: str  # the config key, the target (`snakemake <name>`) and the file stem of its outputs
    layout: Callable
    figure: Callable | None = None  # fig(cfg, scores, {"pdf": ..., "png": ...})
    paper: str = ""  # where the published values are, or why there is no cell-by-cell comparison


STUDIES: Registry[Study] = Registry("study", ConfigError)


def register(study: Study) -> Study:
    return STUDIES.add(study.name, study)
