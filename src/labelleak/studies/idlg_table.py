"""Label accuracy on single samples: DLG vs iDLG (Zhao et al. 2020, Table 1's setting: N = K = 1)."""

from __future__ import annotations

from labelleak.reports.tables import TableSpec, aggregate
from labelleak.studies.base import register
from labelleak.studies.labels import COMMON, label_study, setting_label


def layout(scores, cfg, seed):
    """The cells of the table, their order, title and caption."""
    scores = scores.assign(setting=setting_label(scores), accuracy=scores["exact_match"])
    agg = aggregate(scores, ["method", "setting"], ("accuracy",), seed=seed)
    return agg, TableSpec("idlg_table", "Label accuracy on single samples: DLG vs iDLG",
                          "Label accuracy = the predicted label equals the sample's label (N = K = 1). DLG jointly "
                          "optimises a dummy input and soft label to match the projection layer's (dW, db); iDLG "
                          f"takes the class whose dW column sums most negatively. {COMMON}",
                          rows=("method",), block="setting", metrics=("accuracy",),
                          row_order={"method": ("dlg", "idlg")})


#: where the published values are, or why this study has no cell-by-cell comparison
PAPER = ("iDLG (Zhao et al. 2020) reports 100% on LeNet / ResNet with one sample; its models and data are not "
         "ours, so no cell-by-cell diff")

STUDY = register(label_study("idlg_table", layout, None, PAPER))
