"""Table 1 of Dang et al.: the set of labels from one batch's update, ResNet50 and EfficientNetB0, RLG vs Yin et al."""

from __future__ import annotations

import pandas as pd

from labelleak.metrics.sets import SET_METRICS
from labelleak.studies.base import Study, register

#: Table 1: (method, model, N) -> (precision, recall, F1, exact match)
PUBLISHED = {
    ("yin", "resnet50", 10): (1.0, 0.996, 0.998, 0.96),
    ("yin", "resnet50", 50): (1.0, 0.974, 0.987, 0.27),
    ("yin", "resnet50", 100): (1.0, 0.960, 0.979, 0.04),
    ("yin", "efficientnet_b0", 10): (0.010, 1.0, 0.020, 0.0),
    ("yin", "efficientnet_b0", 50): (0.049, 1.0, 0.093, 0.0),
    ("yin", "efficientnet_b0", 100): (0.095, 1.0, 0.174, 0.0),
    ("rlg", "resnet50", 10): (0.999, 0.998, 0.998, 0.97),
    ("rlg", "resnet50", 50): (0.998, 0.976, 0.987, 0.27),
    ("rlg", "resnet50", 100): (0.978, 0.966, 0.972, 0.02),
    ("rlg", "efficientnet_b0", 10): (1.0, 1.0, 1.0, 1.0),
    ("rlg", "efficientnet_b0", 50): (0.999, 1.0, 0.999, 0.95),
    ("rlg", "efficientnet_b0", 100): (0.998, 0.999, 0.999, 0.78),
}



def published_frame() -> pd.DataFrame:
    """The published Table 1 in the tidy layout of our aggregates (mean only)."""
    rows = [{"method": m, "model": model, "n": n, "metric": metric, "mean": value}
            for (m, model, n), values in PUBLISHED.items() for metric, value in zip(SET_METRICS, values)]
    return pd.DataFrame(rows)


TABLE1_CAPTION = ("Precision, Recall, F1 and Exact Match (EM) of the label set predicted from the projection-layer "
                  "update of one batch of N images. Each cell is the mean over updates of the per-update score; "
                  "'n (n/a)' is the number of updates averaged and the number where the method did not apply.")


def render(cfg: dict, scores, config_hash: str, out: dict, runs=()) -> None:

    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.tables import TableSpec, aggregate, to_markdown, write_table

    t1 = cfg["table1"]
    agg = aggregate(scores, ["method", "n", "model"], SET_METRICS, seed=cfg["seed"])
    spec = TableSpec(
        name="table1",
        title="Table 1: set of labels prediction on ResNet50 and EfficientNetB0",
        caption=f"{TABLE1_CAPTION} Dataset {t1['dataset']}, stage {t1['stage']}, "
                f"{cfg['sampling']['num_batches']} batches per N ({cfg['sampling']['composition']} composition).",
        rows=("method", "n"), block="model", metrics=SET_METRICS,
        row_order={"method": ("yin", "rlg")}, block_order=tuple(t1["models"]))
    write_table(agg, spec, config_hash, out,
                extra_columns={"dataset": t1["dataset"], "stage": t1["stage"]})
    paper = TableSpec(name="table1_paper", title="Published (Dang et al. 2021, Table 1; ImageNet, Keras pretrained)",
                      caption="Means over 100 batches per N, as printed in the paper, for comparison.",
                      rows=spec.rows, block=spec.block, metrics=spec.metrics, row_order=spec.row_order,
                      block_order=spec.block_order)
    published = published_frame().assign(n_updates=100, n_na=0)
    published = published[published["model"].isin(t1["models"]) & published["method"].isin(t1["methods"])]
    with open(out["md"], "a") as fh:
        fh.write("\n" + to_markdown(published, paper, "").replace("# ", "## ", 1))


STUDY = register(Study("table1", render=render, paper="Dang et al. 2021, Table 1: PUBLISHED here, printed under our table"))
