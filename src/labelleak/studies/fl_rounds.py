"""Labels revealed from the client updates of Flower FedAvg rounds (W0 - WK)/lr, by round and K."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from labelleak.reports.labels import k_title, lines_by_panel
from labelleak.reports.tables import TableSpec
from labelleak.studies.base import register
from labelleak.studies.labels import COMMON, aggregate_by_kind, form_of, form_order, label_study, section


def layout(scores, cfg, seed):
    """The cells of the table, their order, title and caption."""
    form = form_of(scores)
    scores = scores.assign(form=form, round=scores["stage"])
    s = cfg["fl_rounds"]
    agg = aggregate_by_kind(scores, ["method", "form", "round"], ("f1", "exact_match"), ("count_exact_match",), seed)
    return agg, TableSpec("fl_rounds", "Labels revealed from the client updates of Flower FedAvg rounds",
                          f"{s['model']} on {s['dataset']}, {s['clients']} clients, N = {s['batch_size']} per local "
                          f"step, lr {s['lr']}: every client's update (W0 - WK)/lr of every round, attacked as the "
                          f"server sees it (`labelleak update`). F1 / EM of the label set; count EM for count methods. "
                          f"{COMMON}", rows=("method", "form"), block="round",
                          metrics=("f1", "exact_match", "count_exact_match"),
                          row_order={"method": tuple(s["methods"]), "form": form_order(form)},
                          block_order=tuple(section(cfg, "fl_rounds")["stages"]))


def fl_rounds_figure(cfg: dict, scores: pd.DataFrame, out: dict[str, str | os.PathLike]) -> None:
    """Figure: each attack's F1 (count EM for count methods) against the round, FedSGD and FedAvg panels."""
    rounds = section(cfg, "fl_rounds")["stages"]
    df = scores.assign(value=np.where(scores["gives_counts"].astype(bool), scores["count_exact_match"], scores["f1"]),
                       r=scores["stage"].map({s: i + 1 for i, s in enumerate(rounds)}))
    lines_by_panel(df, out, panel="k", x="r", value="value", methods=cfg["fl_rounds"]["methods"], title=k_title,
                    ylabel="F1 (set) / count EM (counts); x: n/a", xlabel="round",
                    xticks=(range(1, len(rounds) + 1),), na_marks=True)


#: where the published values are, or why this study has no cell-by-cell comparison
PAPER = ("no paper: labelleak's own study of a real federated framework's updates")

STUDY = register(label_study("fl_rounds", layout, fl_rounds_figure, PAPER))
