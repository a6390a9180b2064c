"""How a label study's table and figure are drawn: the cells with their 95% bootstrap intervals,
one panel-per-value figure skeleton, and the attacks' measured run times (kept out of the tables).
What each study lays out is its own module in :mod:`labelleak.studies`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from labelleak.reports.tables import PRETTY, TableSpec, write_table


def attack_times(scores: pd.DataFrame) -> pd.DataFrame:
    """Wall time per update of each attack (measured, so kept out of the tables): one row per method."""
    grouped = scores.groupby("method", sort=False)["seconds"]
    return pd.DataFrame({"n_updates": grouped.size(), "median_s": grouped.median(), "mean_s": grouped.mean(),
                         "max_s": grouped.max(), "total_s": grouped.sum()}).reset_index()


def k_title(k) -> str:
    return "FedSGD (K = 1)" if k == 1 else f"FedAvg (K = {k})"


def lines_by_panel(df: pd.DataFrame, out: dict[str, str | os.PathLike], *, panel: str, x: str, value: str,
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


def write_label_table(cfg: dict, layout: Callable, scores: pd.DataFrame, config_hash: str,
                      out: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Aggregate and write one label table (csv, md, tex); returns the aggregate.

    The Markdown file ends with the same cells as 'mean [95% CI] n (n/a)'.
    """
    from pathlib import Path

    from labelleak.io import write_text

    agg, spec = layout(scores, cfg, cfg["seed"])
    write_table(agg, spec, config_hash, {k: out[k] for k in ("csv", "md", "tex")})
    write_text(out["md"], Path(out["md"]).read_text() + with_intervals(agg, spec))
    return agg


