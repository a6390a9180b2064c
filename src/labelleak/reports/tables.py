"""Aggregate per-update scores into paper-style tables: tidy CSV, readable Markdown, booktabs LaTeX.

Each cell is the mean over updates of a per-update score, with a 95% bootstrap interval, the number
of updates it averages and the number of updates for which the attack was not applicable ("n/a").
n/a updates are counted and shown, never averaged in and never dropped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labelleak.io import write_text
from labelleak.metrics.bootstrap import mean_ci

PRETTY = {
    "resnet50": "ResNet50", "efficientnet_b0": "EfficientNetB0",
    "rlg": "RLG", "rlg_true_s": "RLG, S given", "rlg_official": "RLG, released code", "yin": "Yin et al. (Eq. 5)",
    "precision": "Prec", "recall": "Recall", "f1": "F1", "exact_match": "EM",
    "las": "ASR (LAS)", "length_error": "LE", "wer": "WER", "transcript_em": "EM", "num_variables": "#vars",
    "row": "Method", "k": "K",
    "idlg": "iDLG", "dlg": "DLG", "llg": "LLG", "llg_plus": "LLG+", "llg_star": "LLG*", "geng": "Geng et al.",
    "ilrg": "iLRG", "leacc": "LeAcc", "lnacc": "LnAcc", "irec": "IRec", "count_exact_match": "count EM",
    "count_accuracy": "CntAcc", "lnacc_present": "LnAcc (present)", "rlg_counts": "RLG counts (ours)",
    "dimitrov": "Dimitrov et al.", "rlu": "RLU",
    "value": "score", "accuracy": "Acc", "median_s": "median s/update", "form": "form",
}


def pretty(name) -> str:
    return PRETTY.get(str(name), str(name))


def na_reasons(group: pd.DataFrame) -> str:
    """Why the n/a updates of a cell did not apply: each kind of reason once (numbers as #), with its count."""
    if "reason" not in group:
        return ""
    na = group.loc[group["status"] == "n/a", "reason"].fillna("").astype(str)
    kinds = na.map(lambda r: re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", r.strip())[:200].rstrip("; ") or "no reason given")
    counts = kinds.value_counts()
    return "; ".join(f"{n} x {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def aggregate(scores: pd.DataFrame, by: list[str], metrics: tuple[str, ...], seed: int = 0) -> pd.DataFrame:
    """One row per group x metric: mean, ci_low, ci_high over 'ok' updates; n_updates, n_na and why (na_reasons)."""
    rows = []
    for keys, group in scores.groupby(by, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        ok = group[group["status"] == "ok"]
        why = na_reasons(group)
        for metric in metrics:
            mean, lo, hi = mean_ci(ok[metric].to_numpy(dtype=float), seed=seed)
            rows.append({**dict(zip(by, keys)), "metric": metric, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "n_updates": int(len(ok)), "n_na": int((group["status"] == "n/a").sum()), "na_reasons": why})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class TableSpec:
    """How to lay out an aggregated table: row keys, one column block per ``block`` value."""

    name: str
    title: str
    caption: str
    rows: tuple[str, ...]  # e.g. ("method", "n")
    block: str  # e.g. "model"
    metrics: tuple[str, ...]
    row_order: dict | None = None  # key -> ordered values
    block_order: tuple | None = None


def _fmt(x: float) -> str:
    if np.isnan(x):
        return "n/a"
    s = f"{x:.3f}"
    return "1" if s == "1.000" else ("0" if s == "0.000" else s.lstrip("0") if x < 1 else s)


def _ordered(values, order):
    values = list(dict.fromkeys(values))
    if not order:
        return sorted(values, key=lambda v: (str(type(v)), v))
    return [v for v in order if v in values] + [v for v in values if v not in order]


def _layout(agg: pd.DataFrame, spec: TableSpec):
    blocks = _ordered(agg[spec.block], spec.block_order)
    keyrows = agg[list(spec.rows)].drop_duplicates().itertuples(index=False, name=None)
    keyrows = list(keyrows)
    for i, key in reversed(list(enumerate(spec.rows))):
        order = (spec.row_order or {}).get(key)
        rank = {v: j for j, v in enumerate(_ordered([r[i] for r in keyrows], order))}
        keyrows.sort(key=lambda r: rank[r[i]])
    cell = agg.set_index([*spec.rows, spec.block, "metric"])
    return blocks, keyrows, cell


def _row_cells(cell: pd.DataFrame, key: tuple, blocks: list, metrics: tuple[str, ...]) -> list[str]:
    """Formatted means of one table row, each block followed by its 'n (n/a)' count."""
    out = []
    for b in blocks:
        counts = ""
        for m in metrics:
            idx = (*key, b, m)
            if idx in cell.index:
                c = cell.loc[idx]
                out.append(_fmt(c["mean"]))
                counts = f"{int(c['n_updates'])} ({int(c['n_na'])})"
            else:
                out.append("")
        out.append(counts)
    return out


def to_markdown(agg: pd.DataFrame, spec: TableSpec, config_hash: str) -> str:
    blocks, keyrows, cell = _layout(agg, spec)
    header = [pretty(k) if k != "n" else "N" for k in spec.rows]
    for b in blocks:
        header += [f"{pretty(b)} {pretty(m)}" for m in spec.metrics] + [f"{pretty(b)} n (n/a)"]
    provenance = f" Config hash `{config_hash}`." if config_hash else ""
    lines = [f"# {spec.title}", "", f"{spec.caption}{provenance}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keyrows:
        row = [pretty(v) for v in key] + _row_cells(cell, key, blocks, spec.metrics)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + _na_notes(agg, spec)) + "\n"


def _na_notes(agg: pd.DataFrame, spec: TableSpec) -> list[str]:
    """Below the table: each cell with n/a updates, and why they did not apply (the method's own limits)."""
    if "na_reasons" not in agg or not (agg["n_na"] > 0).any():
        return []
    keys = [*spec.rows, spec.block]
    cells = agg[agg["n_na"] > 0].drop_duplicates(keys)
    notes = ["", "Not applicable (updates where the method did not apply, and why):", ""]
    for _, r in cells.iterrows():
        where = ", ".join({"n": "N = ", "k": "K = "}.get(k, "") + pretty(r[k]) for k in keys)
        notes.append(f"- {where}: {int(r['n_na'])} n/a: {r['na_reasons']}")
    return notes


def to_latex(agg: pd.DataFrame, spec: TableSpec, config_hash: str) -> str:
    blocks, keyrows, cell = _layout(agg, spec)
    nrow, nm = len(spec.rows), len(spec.metrics)
    cols = "l" * nrow + ("r" * nm + "r") * len(blocks)
    top = " & " * nrow + " & ".join(rf"\multicolumn{{{nm + 1}}}{{c}}{{{pretty(b)}}}" for b in blocks) + r" \\"
    rules = " ".join(rf"\cmidrule(lr){{{nrow + 1 + i * (nm + 1)}-{nrow + (i + 1) * (nm + 1)}}}" for i in range(len(blocks)))
    heads = ["N" if k == "n" else _tex(pretty(k)) for k in spec.rows]
    for _ in blocks:
        heads += [pretty(m) for m in spec.metrics] + ["$n$ (n/a)"]
    sub = " & ".join(heads) + r" \\"
    body = []
    prev = None
    for key in keyrows:
        shown = [("" if prev is not None and prev[0] == key[0] and i == 0 else _tex(pretty(v))) for i, v in enumerate(key)]
        if prev is not None and prev[0] != key[0]:
            body.append(r"\midrule")
        row = shown + _row_cells(cell, key, blocks, spec.metrics)
        body.append(" & ".join(row) + r" \\")
        prev = key
    return "\n".join([
        r"\begin{table}[t]", r"\centering",
        rf"\caption{{{_tex(spec.title)}. {_tex(spec.caption)} Config hash \texttt{{{config_hash}}}.}}",
        rf"\begin{{tabular}}{{{cols}}}", r"\toprule", top, rules, sub, r"\midrule", *body,
        r"\bottomrule", r"\end{tabular}", rf"\label{{tab:{spec.name}}}", r"\end{table}", ""])


def _tex(s: str) -> str:
    return str(s).replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def write_table(agg: pd.DataFrame, spec: TableSpec, config_hash: str, out: dict[str, str | os.PathLike],
                extra_columns: dict | None = None) -> None:
    """Write ``out["csv"]`` (tidy), ``out["md"]`` and ``out["tex"]``."""
    tidy = agg.assign(table=spec.name, config_hash=config_hash, **(extra_columns or {}))
    front = ["table", "config_hash", *(extra_columns or {}), *spec.rows, spec.block, "metric"]
    tidy = tidy[front + [c for c in tidy.columns if c not in front]]
    write_text(out["csv"], tidy.to_csv(index=False, float_format="%.6g"))
    write_text(out["md"], to_markdown(agg, spec, config_hash))
    write_text(out["tex"], to_latex(agg, spec, config_hash))
