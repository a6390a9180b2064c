"""Stage "render": the tables and figures of the studies from their score files.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from labelleak.config import matrix_methods
from labelleak.io import read_json, write_text
from labelleak.jobs.runner import Paths

log = logging.getLogger("labelleak")


TABLE1_CAPTION = ("Precision, Recall, F1 and Exact Match (EM) of the label set predicted from the projection-layer "
                  "update of one batch of N images. Each cell is the mean over updates of the per-update score; "
                  "'n (n/a)' is the number of updates averaged and the number where the method did not apply.")


TABLE4_CAPTION = ("Precision, Recall, F1 and Exact Match (EM) of RLG on the projection-layer update of one batch "
                  "of N images, after the client's defense. GradDrop p zeroes the entries of dW (and db) below the "
                  "p-quantile of that layer's magnitudes (for dW: the official code's quantile over the last-layer "
                  "matrix). RLG: S = rank(dW) (Algorithm 1); RLG, S given (rlg_true_s): S = min(number of labels, "
                  "rank(dW)), the number of labels being N images or an utterance's tokens, as the paper's code "
                  "ran its tables (gt_k). "
                  "'n (n/a)' = updates averaged and updates where RLG did not apply.")


def table1(cfg: dict, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.published import table1_frame
    from labelleak.reports.tables import TableSpec, aggregate, to_markdown, write_table

    t1 = cfg["table1"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])  # status "n/a" is not NaN
    agg = aggregate(scores, ["method", "n", "model"], SET_METRICS, seed=cfg["seed"])
    spec = TableSpec(
        name="table1",
        title="Table 1: set of labels prediction on ResNet50 and EfficientNetB0",
        caption=f"{TABLE1_CAPTION} Dataset {t1['dataset']}, stage {t1['stage']}, "
                f"{cfg['sampling']['num_batches']} batches per N ({cfg['sampling']['composition']} composition).",
        rows=("method", "n"), block="model", metrics=SET_METRICS,
        row_order={"method": ("yin", "rlg")}, block_order=tuple(t1["models"]))
    write_table(agg, spec, config_hash(cfg), out,
                extra_columns={"dataset": t1["dataset"], "stage": t1["stage"]})
    paper = TableSpec(name="table1_paper", title="Published (Dang et al. 2021, Table 1; ImageNet, Keras pretrained)",
                      caption="Means over 100 batches per N, as printed in the paper, for comparison.",
                      rows=spec.rows, block=spec.block, metrics=spec.metrics, row_order=spec.row_order,
                      block_order=spec.block_order)
    published = table1_frame().assign(n_updates=100, n_na=0)
    published = published[published["model"].isin(t1["models"]) & published["method"].isin(t1["methods"])]
    with open(out["md"], "a") as fh:
        fh.write("\n" + to_markdown(published, paper, "").replace("# ", "## ", 1))


def label_table(cfg: dict, table: str, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """One label table (idlg_table, ilrg_table, geng_table, leaderboard, fl_rounds [+ its figure])."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.reports.labels import write_label_table
    from labelleak.studies import STUDIES

    study = STUDIES.lookup(table)
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
    write_label_table(cfg, study.layout, scores, config_hash(cfg), out)
    if "pdf" in out and study.figure is not None:
        study.figure(cfg, scores, out)
    if "times" in out:  # measured wall times: results/benchmarks/, never in a table
        from labelleak.io import write_text
        from labelleak.reports.labels import attack_times

        write_text(out["times"], attack_times(scores).to_csv(index=False, float_format="%.6g"))
    log.info("wrote %s from %d scored updates", table, len(scores))


def table4_speech_methods(t4: dict) -> list[str]:
    """The methods of Table 4's ASR block: ``table4.speech_methods``, by default ``table4.methods``."""
    return list(t4.get("speech_methods", t4["methods"]))


def table4(cfg: dict, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Table 4 of Dang et al.: RLG under Sign-SGD and GradDrop, one column block per model."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.defenses import defense_label
    from labelleak.reports.published import table4_frame
    from labelleak.reports.tables import TableSpec, aggregate, to_markdown, write_table

    t4 = cfg["table4"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
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
    write_table(agg, spec, config_hash(cfg), out, extra_columns={"dataset": t4["dataset"], "stage": t4["stage"],
                                                                  "n": t4["batch_size"]})
    published = table4_frame()
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


def defense_matrix(cfg: dict, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Every attack x every defense (and strength): the config's metric, mean [95% CI] over updates."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.defenses import write_matrix

    dm = cfg["defense_matrix"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
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
                 config_hash=config_hash(cfg), out=out)


def aggregate_defenses(scores, cfg: dict):
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.tables import aggregate

    return aggregate(scores, ["method", "defense"], SET_METRICS, seed=cfg["seed"])


def utility_table(cfg: dict, inputs: Paths, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Accuracy per defense and algorithm beside the attack success it buys; the privacy-utility figure."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.reports.defenses import defense_label, privacy_utility_figure

    u = cfg["utility"]
    rows = pd.DataFrame([{k: v for k, v in read_json(p).items() if k != "history"} for p in inputs])
    dm = cfg["defense_matrix"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
    scores = scores[(scores["model"] == dm["model"]) & (scores["n"] == dm["batch_size"])]
    leak_method, leak_metric = u.get("leakage_method", "rlg"), u.get("leakage_metric", "f1")
    agg = aggregate_defenses(scores[scores["method"] == leak_method], cfg)
    leak = agg[agg["metric"] == leak_metric].set_index("defense")["mean"]
    rows["leakage"] = rows["defense"].map(leak)
    rows["table"], rows["config_hash"] = "utility", config_hash(cfg)

    if "times" in out:  # measured wall times: results/benchmarks/, never in a table
        write_text(out["times"], rows[["algorithm", "defense", "seconds"]].to_csv(index=False, float_format="%.6g"))
    rows = rows.drop(columns=["seconds"], errors="ignore")
    write_text(out["csv"], rows.to_csv(index=False, float_format="%.6g"))
    title = (f"Accuracy of {u['model']} on {u['dataset']} trained federatedly ({u['clients']} clients; FedSGD "
             f"{u['rounds']['fedsgd']} rounds, FedAvg {u['rounds']['fedavg']} rounds of {u['local_steps']['fedavg']} "
             f"local steps) against {leak_method.upper()} {leak_metric} on {dm['model']} (N = {dm['batch_size']})")
    lines = ["# Utility: what each defense costs", "", f"{title}. Accuracy with a 95% bootstrap interval over test "
             f"items; epsilon: DP-SGD's per-client (epsilon, {cfg.get('defenses', {}).get('delta', 1e-5)})-DP "
             f"(Opacus RDP accountant). Config hash `{config_hash(cfg)}`.", "",
             "| Defense | Algorithm | Accuracy | 95% CI | Cost vs none | " + f"{leak_method.upper()} {leak_metric} | "
             "epsilon | server lr |", "|---|---|---|---|---|---|---|---|"]
    base = rows[rows["defense"] == "none"].set_index("algorithm")["accuracy"]
    order = {d: i for i, d in enumerate(u["defenses"])}
    for _, r in rows.sort_values(["algorithm", "defense"], key=lambda s: s.map(order) if s.name == "defense" else s).iterrows():
        cost = r["accuracy"] - base.get(r["algorithm"], np.nan)
        eps = "" if r["epsilon"] is None or pd.isna(r["epsilon"]) else f"{r['epsilon']:.3g}"
        lines.append(f"| {defense_label(r['defense'])} | {r['algorithm']} | {r['accuracy']:.3f} | "
                     f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {cost:+.3f} | "
                     f"{'n/a' if pd.isna(r['leakage']) else format(r['leakage'], '.3f')} | {eps} | {r['server_lr']:g} |")
    write_text(out["md"], "\n".join(lines) + "\n")
    privacy_utility_figure(rows, f"{leak_method.upper()} {leak_metric} (attack success, lower = more private)",
                           title, {"pdf": out["pdf"], "png": out["png"]})


def speech_study(cfg: dict, study: str, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Table 2, 3 or 5, or Figure 2, from the study's per-update scores."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.reports.speech import WRITERS

    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""], dtype={"stage": str})
    WRITERS[study](cfg, scores, config_hash(cfg), out)
    log.info("%s written from %d scored updates", study, len(scores))
