"""What a study is: one paper table or figure (or one of labelleak's own), by name.

A study renders its scores (``render(cfg, scores, config_hash, out, runs)``: the table files, a figure,
the published block under the table) and says where the paper's published values are or why it has
none (``paper``; the values themselves live in the study's module as ``PUBLISHED``). The DAG builds a
study's cells from its config section (the config key is the study's name) and runs ``render`` in the
study's target rule (one script for all: ``workflow/scripts/render_study.py``). A label study is made by
:func:`labelleak.studies.labels.label_study` from its ``layout`` (cells, order, title, caption) and figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from labelleak.errors import ConfigError
from labelleak.registry import Registry


@dataclass(frozen=True)
class Study:
    name: str  # the config key, the target (`snakemake <name>`) and the file stem of its outputs
    render: Callable  # render(cfg, scores, config_hash, out, runs): its outputs from its scores
    paper: str  # where the published values are, or why there is no cell-by-cell comparison
    layout: Callable | None = None  # label studies: layout(scores, cfg, seed) -> (aggregate, TableSpec)
    figure: Callable | None = None  # label studies: figure(cfg, scores, {"pdf": ..., "png": ...})


STUDIES: Registry[Study] = Registry("study", ConfigError)


def register(study: Study) -> Study:
    return STUDIES.add(study.name, study)
