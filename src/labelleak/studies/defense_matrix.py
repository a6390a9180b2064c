"""Every attack against every defense and strength: the config's metric, mean [95% CI] over updates."""

from __future__ import annotations

from labelleak.config import matrix_methods
from labelleak.studies.base import Study, register


def aggregate_defenses(scores, cfg: dict):
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.tables import aggregate

    return aggregate(scores, ["method", "defense"], SET_METRICS, seed=cfg["seed"])


def render(cfg: dict, scores, config_hash: str, out: dict, runs=()) -> None:
    """Every attack x every defense (and strength): the config's metric, mean [95% CI] over updates."""

    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.defenses import write_matrix

    dm = cfg["defense_matrix"]
    scores = scores[(scores["model"] == dm["model"]) & (scores["n"] == dm["batch_size"])
                    & scores["defense"].isin(dm["defenses"])]
    agg = aggregate_defenses(scores, cfg)
    metric = dm.get("metric", "f1")
    write_matrix(agg, metric, matrix_methods(cfg), list(dm["defenses"]),
                 title=f"Attacks x defenses ({metric})",
                 caption=f"Mean {metric} over updates with a 95% bootstrap interval; '(k n/a)' = updates where the "
                         f"attack did not apply. {dm['model']} at stage {dm['stage']}, dataset {dm['dataset']}, "
                         f"N = {dm['batch_size']}, {cfg['sampling']['num_batches']} batches. Metrics: "
                         f"{', '.join(SET_METRICS)} (all in the csv).",
                 config_hash=config_hash, out=out)


PAPER = ("no paper: labelleak's own matrix (the paper's Table 4 is its RLG x Sign-SGD / GradDrop corner)")
STUDY = register(Study("defense_matrix", render=render, paper=PAPER))
