"""Table 4 of Dang et al.: RLG against Sign-SGD and GradDrop, an image block and the ASR block."""

from __future__ import annotations

import pandas as pd

from labelleak.metrics.sets import SET_METRICS
from labelleak.studies.base import Study, register

#: Table 4 (defenses against RLG, EfficientNetB0, N = 10; ImageNet, Keras pretrained):
#: (defense, model) -> (precision, recall, F1, exact match); "las" is the paper's ASR model (untrained,
#: one utterance per update, bag of words over 16k word pieces).
PUBLISHED = {
    ("none", "efficientnet_b0"): (1.0, 1.0, 1.0, 1.0),
    ("signsgd", "efficientnet_b0"): (0.010, 1.0, 0.020, 0.0),
    ("graddrop-0.5", "efficientnet_b0"): (0.999, 0.843, 0.914, 0.17),
    ("graddrop-0.9", "efficientnet_b0"): (1.0, 0.294, 0.455, 0.0),
    ("none", "las"): (0.998, 1.0, 0.999, 0.988),
    ("signsgd", "las"): (0.504, 0.181, 0.266, 0.104),
    ("graddrop-0.5", "las"): (0.857, 1.0, 0.923, 0.881),
    ("graddrop-0.9", "las"): (0.997, 0.981, 0.989, 0.866),
}


def published_frame() -> pd.DataFrame:
    """The published Table 4 (RLG under defenses) in the tidy layout of our aggregates (mean only)."""
    rows = [{"method": "rlg", "defense": d, "model": model, "metric": metric, "mean": value}
            for (d, model), values in PUBLISHED.items() for metric, value in zip(SET_METRICS, values)]
    return pd.DataFrame(rows)


TABLE4_CAPTION = ("Precision, Recall, F1 and Exact Match (EM) of RLG on the projection-layer update of one batch "
                  "of N images, after the client's defense. GradDrop p zeroes the entries of dW (and db) below the "
                  "p-quantile of that layer's magnitudes (for dW: the official code's quantile over the last-layer "
                  "matrix). RLG: S = rank(dW) (Algorithm 1); RLG, S given (rlg_true_s): S = min(number of labels, "
                  "rank(dW)), the number of labels being N images or an utterance's tokens, as the paper's code "
                  "ran its tables (gt_k). "
                  "'n (n/a)' = updates averaged and updates where RLG did not apply.")


def table4_speech_methods(t4: dict) -> list[str]:
    """The methods of Table 4's ASR block: ``table4.speech_methods``, by default ``table4.methods``."""
    return list(t4.get("speech_methods", t4["methods"]))


def render(cfg: dict, scores, config_hash: str, out: dict, runs=()) -> None:
    """Table 4 of Dang et al.: RLG under Sign-SGD and GradDrop, one column block per model."""

    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.defenses import defense_label
    from labelleak.reports.tables import TableSpec, aggregate, to_markdown, write_table

    t4 = cfg["table4"]
    image = scores["model"].isin(t4["models"]) & (scores["n"] == t4["batch_size"])
    speech_methods = table4_speech_methods(t4) if t4.get("speech_stage") is not None else []
    speech = (scores["model"] == "las") & scores["method"].isin(speech_methods)
    scores = scores[scores["defense"].isin(t4["defenses"]) & ((image & scores["method"].isin(t4["methods"])) | speech)]
    models = [*t4["models"], *(["las"] if t4.get("speech_stage") is not None else [])]
    asr_note = (f" ASR (las): stage {t4['speech_stage']}, one utterance per update, the bag of words without ids "
                f"0-2 ({cfg['speech']['num_updates']} updates)." if "las" in models else "")
    agg = aggregate(scores, ["method", "defense", "model"], SET_METRICS, seed=cfg["seed"])
    labels = {d: defense_label(d) for d in t4["defenses"]}
    agg = agg.assign(defense_name=agg["defense"], defense=agg["defense"].map(labels))
    spec = TableSpec(name="table4", title="Table 4: RLG against defenses",
                     caption=f"{TABLE4_CAPTION} Dataset {t4['dataset']}, stage {t4['stage']}, N = {t4['batch_size']}, "
                             f"{cfg['sampling']['num_batches']} batches." + asr_note,
                     rows=("method", "defense"), block="model", metrics=SET_METRICS,
                     row_order={"method": tuple(dict.fromkeys([*t4["methods"], *speech_methods])),
                                "defense": tuple(labels.values())},
                     block_order=tuple(models))
    write_table(agg, spec, config_hash, out, extra_columns={"dataset": t4["dataset"], "stage": t4["stage"],
                                                                  "n": t4["batch_size"]})
    published = published_frame()
    published = published[published["defense"].isin(t4["defenses"]) & published["model"].isin(models)]
    published = published.assign(defense=published["defense"].map(labels), n_updates=100, n_na=0)
    paper = TableSpec(name="table4_paper", title="Published (Dang et al. 2021, Table 4; ImageNet, Keras pretrained)",
                      caption="Means over 100 batches of N = 10, as printed in the paper, for comparison. The paper's "
                              "code ran RLG with S given (gt_k: the batch size; an utterance's tokens): compare with "
                              "our 'RLG, S given' rows.",
                      rows=spec.rows, block=spec.block, metrics=spec.metrics, row_order=spec.row_order,
                      block_order=spec.block_order)
    if len(published):
        with open(out["md"], "a") as fh:
            fh.write("\n" + to_markdown(published, paper, "").replace("# ", "## ", 1))


STUDY = register(Study("table4", render=render, paper="Dang et al. 2021, Table 4: PUBLISHED here, printed under our table"))
