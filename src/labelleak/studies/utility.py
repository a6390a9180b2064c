"""What each defense costs: federated (Flower) accuracy per defense and algorithm beside the attack success it buys."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labelleak.io import read_json, write_text
from labelleak.studies.base import Study, register
from labelleak.studies.defense_matrix import aggregate_defenses


def render(cfg: dict, scores, config_hash: str, out: dict, runs=()) -> None:
    """Accuracy per defense and algorithm beside the attack success it buys; the privacy-utility figure."""

    from labelleak.reports.defenses import defense_label, privacy_utility_figure

    u = cfg["utility"]
    rows = pd.DataFrame([{k: v for k, v in read_json(p).items() if k != "history"} for p in runs])
    dm = cfg["defense_matrix"]
    scores = scores[(scores["model"] == dm["model"]) & (scores["n"] == dm["batch_size"])]
    leak_method, leak_metric = u.get("leakage_method", "rlg"), u.get("leakage_metric", "f1")
    agg = aggregate_defenses(scores[scores["method"] == leak_method], cfg)
    leak = agg[agg["metric"] == leak_metric].set_index("defense")["mean"]
    rows["leakage"] = rows["defense"].map(leak)
    rows["table"], rows["config_hash"] = "utility", config_hash

    if "times" in out:  # measured wall times: results/benchmarks/, never in a table
        write_text(out["times"], rows[["algorithm", "defense", "seconds"]].to_csv(index=False, float_format="%.6g"))
    rows = rows.drop(columns=["seconds"], errors="ignore")
    write_text(out["csv"], rows.to_csv(index=False, float_format="%.6g"))
    title = (f"Accuracy of {u['model']} on {u['dataset']} trained federatedly ({u['clients']} clients; FedSGD "
             f"{u['rounds']['fedsgd']} rounds, FedAvg {u['rounds']['fedavg']} rounds of {u['local_steps']['fedavg']} "
             f"local steps) against {leak_method.upper()} {leak_metric} on {dm['model']} (N = {dm['batch_size']})")
    lines = ["# Utility: what each defense costs", "", f"{title}. Accuracy with a 95% bootstrap interval over test "
             f"items; epsilon: DP-SGD's per-client (epsilon, {cfg.get('defenses', {}).get('delta', 1e-5)})-DP "
             f"(Opacus RDP accountant). Config hash `{config_hash}`.", "",
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


STUDY = register(Study("utility", render=render, paper="no paper: the seed paper reports no utility numbers for its defenses"))
