"""iLRG's label existence and number accuracy (Ma et al. 2023), next to RLG, Yin and iDLG."""

from __future__ import annotations

from labelleak.reports.tables import TableSpec
from labelleak.studies.base import register
from labelleak.studies.labels import COMMON, aggregate_by_kind, defs, label_study, setting_label


def layout(scores, cfg, seed):
    """The cells of the table, their order, title and caption."""
    scores = scores.assign(setting=setting_label(scores))
    agg = aggregate_by_kind(scores, ["method", "n", "setting"], ("leacc",), ("lnacc", "irec"), seed)
    return agg, TableSpec("ilrg_table", "iLRG's label existence and number accuracy, next to RLG, Yin and iDLG",
                          f"{defs('leacc', 'lnacc', 'irec')} LnAcc and IRec need counts: blank for set-only "
                          f"methods. Same updates for every method ({cfg['ilrg_table'].get('composition', cfg['sampling']['composition'])} "
                          f"composition). {COMMON}",
                          rows=("method", "n"), block="setting", metrics=("leacc", "lnacc", "irec"),
                          row_order={"method": ("ilrg", "rlg", "yin", "idlg")})


#: where the published values are, or why this study has no cell-by-cell comparison
PAPER = ("iLRG (Ma et al. 2023) reports LeAcc / LnAcc / IRec on its own VGG-16 / ResNet checkpoints; not the "
         "models here, so no cell-by-cell diff")

STUDY = register(label_study("ilrg_table", layout, None, PAPER))
