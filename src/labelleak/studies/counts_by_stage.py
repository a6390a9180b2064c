"""Instance counts from untrained to trained checkpoints, FedSGD and FedAvg: where the published count methods fail."""

from __future__ import annotations

import os

import pandas as pd

from labelleak.reports.labels import k_title, lines_by_panel
from labelleak.reports.tables import TableSpec
from labelleak.studies.base import register
from labelleak.studies.labels import COMMON, activation_of, aggregate_by_kind, defs, form_of, form_order, label_study, setting_label


def layout(scores, cfg, seed):
    """The cells of the table, their order, title and caption."""
    form = form_of(scores)
    scores = scores.assign(setting=setting_label(scores, stage=False), form=form)
    metrics = ("count_exact_match", "lnacc_present", "irec")
    t = cfg["counts_by_stage"]
    agg = aggregate_by_kind(scores, ["method", "form", "n", "stage", "setting"], (), metrics, seed)
    agg = agg.assign(column=agg["setting"] + ", " + agg["stage"])
    order = tuple(f"{s['dataset']}/{s['model']} ({activation_of(cfg, s['model'])}), {st}" for s in t["settings"]
                  for st in t["stages"])
    return agg.drop(columns=["setting", "stage"]), TableSpec(
        "counts_by_stage", "Instance counts from untrained to trained checkpoints, FedSGD and FedAvg",
        f"{defs(*metrics)} (iLRG's LnAcc over all C classes counts every correctly absent class and tends to 1.) "
        f"Composition "
        f"{t.get('composition', 'repeats')}: repeated labels. {COMMON}",
        rows=("method", "form", "n"), block="column", metrics=metrics,
        row_order={"method": tuple(t["methods"]), "form": form_order(form)},
        block_order=order)


def counts_by_stage_figure(cfg: dict, scores: pd.DataFrame, out: dict[str, str | os.PathLike]) -> None:
    """Figure: count exact match of each count method against the training stage, one panel per K."""
    t = cfg["counts_by_stage"]
    stages = list(t["stages"])
    df = scores.assign(x=scores["stage"].map({s: i for i, s in enumerate(stages)}))
    lines_by_panel(df, out, panel="k", x="x", value="count_exact_match", methods=t["methods"], title=k_title,
                    ylabel="count exact match (n/a: not drawn)", xticks=(range(len(stages)), stages))


#: where the published values are, or why this study has no cell-by-cell comparison
PAPER = ("no paper table: iLRG's logs give LnAcc .567 / IRec .28 on a trained VGG-16, reported in the README "
         "next to ours")

STUDY = register(label_study("counts_by_stage", layout, counts_by_stage_figure, PAPER))
