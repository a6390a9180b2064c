"""Label count restoration with repeated labels: Geng et al. (arXiv 2110.09074) next to iLRG."""

from __future__ import annotations

from labelleak.reports.tables import TableSpec
from labelleak.studies.base import register
from labelleak.studies.labels import COMMON, aggregate_by_kind, defs, form_of, form_order, label_study, setting_label


def layout(scores, cfg, seed):
    """The cells of the table, their order, title and caption."""
    form = form_of(scores)
    scores = scores.assign(setting=setting_label(scores), form=form)
    metrics = ("count_exact_match", "count_accuracy", "irec")
    agg = aggregate_by_kind(scores, ["method", "form", "n", "setting"], (), metrics, seed)
    return agg, TableSpec("geng_table", "Label count restoration with repeated labels: Geng et al. next to iLRG",
                          f"{defs(*metrics)} N = samples per step; a K-step (FedAvg) update holds K*N labels. "
                          f"Composition {cfg['geng_table'].get('composition', 'repeats')}: about N/2 classes, "
                          f"repeated. {COMMON}",
                          rows=("method", "form", "n"), block="setting", metrics=metrics,
                          row_order={"method": ("geng", "ilrg"), "form": form_order(form)})


#: where the published values are, or why this study has no cell-by-cell comparison
PAPER = ("Geng et al. report count accuracy on LeNet / ResNet trained on their data; not comparable cell by "
         "cell")

STUDY = register(label_study("geng_table", layout, None, PAPER))
