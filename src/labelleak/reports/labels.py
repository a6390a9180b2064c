"""The label-attack tables of the seed papers and the leaderboard: which updates, which layout.

One config section per table (``idlg_table``, ``ilrg_table``, ``geng_table``, ``leaderboard``)
lists (dataset, model) settings, stages, batch sizes N, local steps K, the batch composition, the
methods and how many of each setting's batches are attacked. :func:`study_rows` turns a section
into the (update, result) pairs the DAG builds; :data:`LAYOUTS` says how each table is laid out.
Set-only attacks are scored by set metrics (and iLRG's LeAcc); count metrics apply to attacks that
give counts and are left out (not zero) for the others. Every cell carries its 95% bootstrap CI in
the CSV and the number of updates averaged and of n/a updates.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labelleak.reports.tables import PRETTY, TableSpec, aggregate, write_table

PRETTY.update({
    "idlg": "iDLG", "dlg": "DLG", "llg": "LLG", "llg_plus": "LLG+", "llg_star": "LLG*", "geng": "Geng et al.",
    "ilrg": "iLRG", "leacc": "LeAcc", "lnacc": "LnAcc", "irec": "IRec", "count_exact_match": "count EM",
    "count_accuracy": "CntAcc", "lnacc_present": "LnAcc (present)", "rlg_counts": "RLG counts (ours)",
    "dimitrov": "Dimitrov et al.", "rlu": "RLU",
    "value": "score", "accuracy": "Acc", "median_s": "median s/update", "form": "form",
})

#: activation in front of the head of the architectures that do not take an ``activation`` option.
ARCH_ACTIVATION = {"resnet50": "relu", "efficientnet_b0": "swish"}


def activation_of(cfg: dict, model: str) -> str:
    spec = cfg["models"][model]
    return spec.get("activation") or ARCH_ACTIVATION.get(spec["arch"], "relu")


def section(cfg: dict, table: str) -> dict:
    """The config section of a label table in one shape (settings, stages, N, K, methods, batches).

    ``fl_rounds`` says it in federated terms (rounds, clients, local steps): its stages are the rounds,
    its batches the clients, its composition ``fl`` (the Flower clients draw their own batches).
    """
    t = cfg[table]
    if table != "fl_rounds":
        return t
    from labelleak.config import FL_COMPOSITION as COMPOSITION
    from labelleak.config import round_stages

    return {"settings": [{"dataset": t["dataset"], "model": t["model"]}], "stages": round_stages(t["rounds"]),
            "batch_sizes": [t["batch_size"]], "steps": t["local_steps"], "composition": COMPOSITION,
            "methods": t["methods"], "num_batches": t["clients"]}


def study_rows(cfg: dict, table: str, update_pattern: str, result_pattern: str) -> list[dict]:
    """One row per (setting, stage, N, K, method, batch) of the config section ``table``."""
    t = section(cfg, table)
    composition = t.get("composition", cfg["sampling"]["composition"])
    rows = []
    for setting in t["settings"]:
        ds, model = setting["dataset"], setting["model"]
        for stage in t["stages"]:
            for n in t["batch_sizes"]:
                for k in t.get("steps", [1]):
                    for method in t["methods"]:
                        for b in range(t["num_batches"]):
                            keys = dict(dataset=ds, model=model, stage=stage, composition=composition, n=n, k=k,
                                        batch=f"{b:03d}")
                            rows.append(dict(update=update_pattern.format(**keys),
                                             result=result_pattern.format(defense="none", method=method, **keys),
                                             dataset=ds, model=model, arch=cfg["models"][model]["arch"],
                                             activation=activation_of(cfg, model), stage=stage, n=n, k=k,
                                             method=method, batch=keys["batch"]))
    return rows


def _aggregate(scores: pd.DataFrame, by: list[str], set_metrics: tuple, count_metrics: tuple, seed: int) -> pd.DataFrame:
    """Set metrics for every method, count metrics only for the methods that give counts."""
    counting = scores.groupby("method")["gives_counts"].transform("max").astype(bool)
    parts = [aggregate(scores, by, set_metrics, seed=seed)] if set_metrics else []
    if count_metrics and counting.any():
        parts.append(aggregate(scores[counting], by, count_metrics, seed=seed))
    return pd.concat(parts, ignore_index=True)


def _setting(df: pd.DataFrame, stage: bool = True) -> pd.Series:
    label = df["dataset"] + "/" + df["model"] + " (" + df["activation"] + ")"
    return label + ", " + df["stage"] if stage else label


@dataclass(frozen=True)
class Layout:
    title: str
    caption: str
    build: Callable[[pd.DataFrame, dict, int], tuple[pd.DataFrame, TableSpec]]


DEFINITIONS = {
    "f1": "F1 of the predicted label set (per update, then averaged)",
    "exact_match": "1 iff the predicted set equals the true set",
    "leacc": "iLRG's LeAcc: accuracy over ALL C classes of 'class present' (absent classes predicted absent count "
             "as correct, which inflates the value for large C)",
    "lnacc": "iLRG's LnAcc: accuracy over ALL C classes of the exact count (same inflation)",
    "irec": "instance recall sum_c min(predicted count, true count) / N",
    "count_exact_match": "1 iff every class's count is right (the whole multiset)",
    "count_accuracy": "fraction of classes present or predicted whose count is exactly right",
    "lnacc_present": "fraction of the classes present in the batch whose count is exactly right",
}
COMMON = ("Each cell is the mean over updates of the per-update value (95% bootstrap CI in the CSV and at the end "
          "of the .md); "
          "'n (n/a)' counts the updates averaged and those where the method did not apply.")


def _defs(*metrics: str) -> str:
    return " ".join(f"{PRETTY.get(m, m)}: {DEFINITIONS[m]}." for m in metrics)


def _idlg(scores, cfg, seed):
    scores = scores.assign(setting=_setting(scores), accuracy=scores["exact_match"])
    agg = aggregate(scores, ["method", "setting"], ("accuracy",), seed=seed)
    return agg, TableSpec("idlg_table", "Label accuracy on single samples: DLG vs iDLG",
                          "Label accuracy = the predicted label equals the sample's label (N = K = 1). DLG jointly "
                          "optimises a dummy input and soft label to match the projection layer's (dW, db); iDLG "
                          f"takes the class whose dW column sums most negatively. {COMMON}",
                          rows=("method",), block="setting", metrics=("accuracy",),
                          row_order={"method": ("dlg", "idlg")})


def _ilrg(scores, cfg, seed):
    scores = scores.assign(setting=_setting(scores))
    agg = _aggregate(scores, ["method", "n", "setting"], ("leacc",), ("lnacc", "irec"), seed)
    return agg, TableSpec("ilrg_table", "iLRG's label existence and number accuracy, next to RLG, Yin and iDLG",
                          f"{_defs('leacc', 'lnacc', 'irec')} LnAcc and IRec need counts: blank for set-only "
                          f"methods. Same updates for every method ({cfg['ilrg_table'].get('composition', cfg['sampling']['composition'])} "
                          f"composition). {COMMON}",
                          rows=("method", "n"), block="setting", metrics=("leacc", "lnacc", "irec"),
                          row_order={"method": ("ilrg", "rlg", "yin", "idlg")})


def _geng(scores, cfg, seed):
    form = np.where(scores["k"] == 1, "FedSGD", "FedAvg K=" + scores["k"].astype(str))
    scores = scores.assign(setting=_setting(scores), form=form)
    metrics = ("count_exact_match", "count_accuracy", "irec")
    agg = _aggregate(scores, ["method", "form", "n", "setting"], (), metrics, seed)
    return agg, TableSpec("geng_table", "Label count restoration with repeated labels: Geng et al. next to iLRG",
                          f"{_defs(*metrics)} N = samples per step; a K-step (FedAvg) update holds K*N labels. "
                          f"Composition {cfg['geng_table'].get('composition', 'repeats')}: about N/2 classes, "
                          f"repeated. {COMMON}",
                          rows=("method", "form", "n"), block="setting", metrics=metrics,
                          row_order={"method": ("geng", "ilrg"), "form": ("FedSGD", *sorted(set(form) - {"FedSGD"}))})


def _leaderboard(scores, cfg, seed):
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


def attack_times(scores: pd.DataFrame) -> pd.DataFrame:
    """Wall time per update of each attack (measured, so kept out of the tables): one row per method."""
    grouped = scores.groupby("method", sort=False)["seconds"]
    return pd.DataFrame({"n_updates": grouped.size(), "median_s": grouped.median(), "mean_s": grouped.mean(),
                         "max_s": grouped.max(), "total_s": grouped.sum()}).reset_index()


def _fl_rounds(scores, cfg, seed):
    form = np.where(scores["k"] == 1, "FedSGD", "FedAvg K=" + scores["k"].astype(str))
    scores = scores.assign(form=form, round=scores["stage"])
    s = cfg["fl_rounds"]
    agg = _aggregate(scores, ["method", "form", "round"], ("f1", "exact_match"), ("count_exact_match",), seed)
    return agg, TableSpec("fl_rounds", "Labels revealed from the client updates of Flower FedAvg rounds",
                          f"{s['model']} on {s['dataset']}, {s['clients']} clients, N = {s['batch_size']} per local "
                          f"step, lr {s['lr']}: every client's update (W0 - WK)/lr of every round, attacked as the "
                          f"server sees it (`labelleak update`). F1 / EM of the label set; count EM for count methods. "
                          f"{COMMON}", rows=("method", "form"), block="round",
                          metrics=("f1", "exact_match", "count_exact_match"),
                          row_order={"method": tuple(s["methods"]), "form": ("FedSGD", *sorted(set(form) - {"FedSGD"}))},
                          block_order=tuple(section(cfg, "fl_rounds")["stages"]))


def _counts_by_stage(scores, cfg, seed):
    form = np.where(scores["k"] == 1, "FedSGD", "FedAvg K=" + scores["k"].astype(str))
    scores = scores.assign(setting=_setting(scores, stage=False), form=form)
    metrics = ("count_exact_match", "lnacc_present", "irec")
    t = cfg["counts_by_stage"]
    agg = _aggregate(scores, ["method", "form", "n", "stage", "setting"], (), metrics, seed)
    agg = agg.assign(column=agg["setting"] + ", " + agg["stage"])
    order = tuple(f"{s['dataset']}/{s['model']} ({activation_of(cfg, s['model'])}), {st}" for s in t["settings"]
                  for st in t["stages"])
    return agg.drop(columns=["setting", "stage"]), TableSpec(
        "counts_by_stage", "Instance counts from untrained to trained checkpoints, FedSGD and FedAvg",
        f"{_defs(*metrics)} (iLRG's LnAcc over all C classes counts every correctly absent class and tends to 1.) "
        f"Composition "
        f"{t.get('composition', 'repeats')}: repeated labels. {COMMON}",
        rows=("method", "form", "n"), block="column", metrics=metrics,
        row_order={"method": tuple(t["methods"]), "form": ("FedSGD", *sorted(set(form) - {"FedSGD"}))},
        block_order=order)


def _k_title(k) -> str:
    return "FedSGD (K = 1)" if k == 1 else f"FedAvg (K = {k})"


def _lines_by_panel(df: pd.DataFrame, out: dict[str, str | os.PathLike], *, panel: str, x: str, value: str,
                    methods, title: Callable, ylabel: str, xlabel: str | None = None, xticks=None,
                    logx: bool = False, na_marks: bool = False) -> None:
    """The label figures' one skeleton: a panel per value of ``panel`` (shared y), a line per method
    (mean ``value`` over the ok updates at each ``x``); ``na_marks``: n/a updates as grey x at the bottom
    (counted, never scored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labelleak.io import save_figure

    panels = sorted(df[panel].unique()) or ["none"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False, sharey=True)
    for ax, p in zip(axes[0], panels):
        for method in methods:
            sub = df[(df[panel] == p) & (df["method"] == method)]
            ok = sub[sub["status"] == "ok"].groupby(x)[value].mean()
            if len(ok):
                ax.plot(ok.index, ok.values, marker="o", label=PRETTY.get(method, method))
            na = sub[sub["status"] != "ok"].groupby(x).size()
            if na_marks and len(na):
                ax.scatter(na.index, np.full(len(na), -0.04), marker="x", color="grey")
        ax.set_title(title(p), fontsize=9)
        if xlabel:
            ax.set_xlabel(xlabel)
        if xticks is not None:
            ax.set_xticks(*xticks)
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_ylim(-0.08 if na_marks else -0.05, 1.05)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure(fig, {key: out[key] for key in ("pdf", "png")}, dpi=120)
    plt.close(fig)


def counts_by_stage_figure(cfg: dict, scores: pd.DataFrame, out: dict[str, str | os.PathLike]) -> None:
    """Figure: count exact match of each count method against the training stage, one panel per K."""
    t = cfg["counts_by_stage"]
    stages = list(t["stages"])
    df = scores.assign(x=scores["stage"].map({s: i for i, s in enumerate(stages)}))
    _lines_by_panel(df, out, panel="k", x="x", value="count_exact_match", methods=t["methods"], title=_k_title,
                    ylabel="count exact match (n/a: not drawn)", xticks=(range(len(stages)), stages))


def fl_rounds_figure(cfg: dict, scores: pd.DataFrame, out: dict[str, str | os.PathLike]) -> None:
    """Figure: each attack's F1 (count EM for count methods) against the round, FedSGD and FedAvg panels."""
    rounds = section(cfg, "fl_rounds")["stages"]
    df = scores.assign(value=np.where(scores["gives_counts"].astype(bool), scores["count_exact_match"], scores["f1"]),
                       r=scores["stage"].map({s: i + 1 for i, s in enumerate(rounds)}))
    _lines_by_panel(df, out, panel="k", x="r", value="value", methods=cfg["fl_rounds"]["methods"], title=_k_title,
                    ylabel="F1 (set) / count EM (counts); x: n/a", xlabel="round",
                    xticks=(range(1, len(rounds) + 1),), na_marks=True)


LAYOUTS: dict[str, Callable] = {"idlg_table": _idlg, "ilrg_table": _ilrg, "geng_table": _geng, "leaderboard": _leaderboard,
                                "fl_rounds": _fl_rounds, "counts_by_stage": _counts_by_stage}



def with_intervals(agg: pd.DataFrame, spec: TableSpec) -> str:
    """A Markdown section with every cell as 'mean [95% CI] n (n/a)' (the leaderboard's cells)."""
    from labelleak.reports.tables import _fmt, _layout

    blocks, keyrows, cell = _layout(agg, spec)
    lines = ["", "## With 95% bootstrap intervals", "",
             "| " + " | ".join([pretty_key(k) for k in spec.rows] + [str(b) for b in blocks]) + " |",
             "|" + "---|" * (len(spec.rows) + len(blocks))]
    for key in keyrows:
        row = [PRETTY.get(str(v), str(v)) for v in key]
        for b in blocks:
            texts = []
            for m in spec.metrics:
                if (*key, b, m) in cell.index:
                    c = cell.loc[(*key, b, m)]
                    ci = "" if np.isnan(c["mean"]) else f" [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
                    texts.append(f"{_fmt(c['mean'])}{ci} {int(c['n_updates'])} ({int(c['n_na'])})")
            row.append("; ".join(texts))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def pretty_key(key: str) -> str:
    return "N" if key == "n" else PRETTY.get(key, key)


def write_label_table(cfg: dict, table: str, scores: pd.DataFrame, config_hash: str,
                      out: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Aggregate and write one label table (csv, md, tex); returns the aggregate.

    The Markdown file ends with the same cells as 'mean [95% CI] n (n/a)'.
    """
    from pathlib import Path

    from labelleak.io import write_text

    agg, spec = LAYOUTS[table](scores, cfg, cfg["seed"])
    write_table(agg, spec, config_hash, {k: out[k] for k in ("csv", "md", "tex")})
    write_text(out["md"], Path(out["md"]).read_text() + with_intervals(agg, spec))
    return agg


def attacks_vs_batch(cfg: dict, scores: pd.DataFrame, out: dict[str, str | os.PathLike]) -> None:
    """Figure: leaderboard score against N per attack, one panel per activation (figure_stage)."""
    t = cfg["leaderboard"]
    stage = t.get("figure_stage", t["stages"][0])
    df = scores[(scores["stage"] == stage) & (scores["status"] == "ok")]
    df = df.assign(value=np.where(df["gives_counts"].astype(bool), df["count_exact_match"], df["f1"]))
    _lines_by_panel(df, out, panel="activation", x="n", value="value", methods=t["methods"],
                    title=lambda act: f"{act} ({stage})", ylabel="F1 (set) / count EM (counts)",
                    xlabel="batch size N", logx=True)


#: the figure each label table draws beside it (rule outputs pdf and png)
FIGURES: dict[str, Callable] = {"leaderboard": attacks_vs_batch, "fl_rounds": fl_rounds_figure,
                                "counts_by_stage": counts_by_stage_figure}
