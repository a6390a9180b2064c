"""What the label studies share: their config section in one shape, the cells (update, result) the DAG
builds from it, and the scoring conventions of their tables.

One config section per study lists (dataset, model) settings, stages, batch sizes N, local steps K,
the batch composition, the methods and how many of each setting's batches are attacked. Set-only
attacks are scored by set metrics (and iLRG's LeAcc); count metrics apply to attacks that give
counts and are left out (not zero) for the others. Every cell carries its 95% bootstrap CI in the
CSV and the number of updates averaged and of n/a updates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labelleak.reports.tables import PRETTY, aggregate

#: activation in front of the head of the architectures that do not take an ``activation`` option.
ARCH_ACTIVATION = {"resnet50": "relu", "efficientnet_b0": "swish"}


#: the fl_rounds study's composition name: client batches drawn by the Flower clients themselves
FL_COMPOSITION = "fl"


def round_stages(rounds: int) -> list[str]:
    """The stage names of the fl_rounds study's rounds, in order."""
    return [f"round{r}" for r in range(1, int(rounds) + 1)]


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
    return {"settings": [{"dataset": t["dataset"], "model": t["model"]}], "stages": round_stages(t["rounds"]),
            "batch_sizes": [t["batch_size"]], "steps": t["local_steps"], "composition": FL_COMPOSITION,
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


def aggregate_by_kind(scores: pd.DataFrame, by: list[str], set_metrics: tuple, count_metrics: tuple, seed: int) -> pd.DataFrame:
    """Set metrics for every method, count metrics only for the methods that give counts."""
    counting = scores.groupby("method")["gives_counts"].transform("max").astype(bool)
    parts = [aggregate(scores, by, set_metrics, seed=seed)] if set_metrics else []
    if count_metrics and counting.any():
        parts.append(aggregate(scores[counting], by, count_metrics, seed=seed))
    return pd.concat(parts, ignore_index=True)


def setting_label(df: pd.DataFrame, stage: bool = True) -> pd.Series:
    label = df["dataset"] + "/" + df["model"] + " (" + df["activation"] + ")"
    return label + ", " + df["stage"] if stage else label


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


def defs(*metrics: str) -> str:
    return " ".join(f"{PRETTY.get(m, m)}: {DEFINITIONS[m]}." for m in metrics)


def form_of(scores: pd.DataFrame) -> np.ndarray:
    """FedSGD for K = 1, "FedAvg K=k" otherwise (the form column of the K-step studies)."""
    return np.where(scores["k"] == 1, "FedSGD", "FedAvg K=" + scores["k"].astype(str))


def form_order(form) -> tuple:
    return ("FedSGD", *sorted(set(form) - {"FedSGD"}))


def label_study(name: str, layout, figure, paper: str):
    """A label study: its table (with the cells' intervals) from ``layout``, its figure, its attack times."""
    from labelleak.studies.base import Study

    def render(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict, runs=()) -> None:
        from labelleak.io import write_text
        from labelleak.reports.labels import attack_times, write_label_table

        write_label_table(cfg, layout, scores, config_hash, out)
        if "pdf" in out and figure is not None:
            figure(cfg, scores, out)
        if "times" in out:  # measured wall times: results/benchmarks/, never in a table
            write_text(out["times"], attack_times(scores).to_csv(index=False, float_format="%.6g"))

    return Study(name, render, paper, layout, figure)
