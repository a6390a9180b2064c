"""Every label attack on the same updates, with a figure of the score against the batch size."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from labelleak.reports.labels import lines_by_panel
from labelleak.reports.tables import TableSpec, aggregate
from labelleak.studies.base import register
from labelleak.studies.labels import COMMON, activation_of, label_study


def layout(scores, cfg, seed):
    """The cells of the table, their order, title and caption."""
    value = np.where(scores["gives_counts"].astype(bool), scores["count_exact_match"], scores["f1"])
    kind = scores.groupby("method")["gives_counts"].max().map({True: "count EM", False: "F1"})
    scores = scores.assign(value=value, score=scores["method"].map(kind),
                           column=scores["model"] + "/" + scores["activation"] + " N=" + scores["n"].astype(str)
                           + " " + scores["stage"])
    agg = aggregate(scores, ["method", "score", "column"], ("value",), seed=seed)
    t = cfg["leaderboard"]
    order = tuple(f"{s['model']}/{activation_of(cfg, s['model'])} N={n} {st}" for s in t["settings"]
                  for n in t["batch_sizes"] for st in t["stages"])
    return agg, TableSpec("leaderboard", "Leaderboard: every label attack on the same updates",
                          f"Score = F1 of the label set for set methods, count exact match (the whole multiset "
                          f"right) for count methods; columns = model/activation, batch size N, training stage. "
                          f"Attack run times: results/benchmarks/leaderboard/attack_times.csv. {COMMON}",
                          rows=("method", "score"), block="column", metrics=("value",),
                          row_order={"method": tuple(t["methods"])}, block_order=order)


def attacks_vs_batch(cfg: dict, scores: pd.DataFrame, out: dict[str, str | os.PathLike]) -> None:
    """Figure: leaderboard score against N per attack, one panel per activation (figure_stage)."""
    t = cfg["leaderboard"]
    stage = t.get("figure_stage", t["stages"][0])
    df = scores[(scores["stage"] == stage) & (scores["status"] == "ok")]
    df = df.assign(value=np.where(df["gives_counts"].astype(bool), df["count_exact_match"], df["f1"]))
    lines_by_panel(df, out, panel="activation", x="n", value="value", methods=t["methods"],
                    title=lambda act: f"{act} ({stage})", ylabel="F1 (set) / count EM (counts)",
                    xlabel="batch size N", logx=True)


#: where the published values are, or why this study has no cell-by-cell comparison
PAPER = ("no paper: labelleak's own comparison")

STUDY = register(label_study("leaderboard", layout, attacks_vs_batch, PAPER))
