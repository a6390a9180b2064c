"""Reports of the defense study: readable defense names, the attack x defense matrix, the
privacy-utility figure (attack success against accuracy, one point per defense, Pareto front)."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pandas as pd

from labelleak.io import save_figure, write_text
from labelleak.reports.tables import _fmt, _tex, pretty

_FAMILY_LABELS = {
    "none": lambda: "No defense",
    "signsgd": lambda: "Sign-SGD",
    "graddrop": lambda p: f"GradDrop {_pct(p)}",
    "topk": lambda f: f"Top-k {_pct(f)}",
    "qsgd": lambda s: f"QSGD s={s}",
    "noise": lambda s: f"Noise sigma={s}",
    "clip": lambda c: f"Clip {c}",
    "dpsgd": lambda c, s: f"DP-SGD C={c} sigma={s}",
}


def _pct(x: str) -> str:
    return f"{float(x) * 100:g}%"


def defense_label(name: str) -> str:
    """'graddrop-0.5' -> 'GradDrop 50%'; parts joined with ' + '; unknown families as written."""
    labels = []
    for part in name.split("+"):
        family, *params = part.split("-")
        fn = _FAMILY_LABELS.get(family)
        try:
            labels.append(fn(*params) if fn else part)
        except TypeError:
            labels.append(part)
    return " + ".join(labels)


def _cell(row) -> str:
    if row is None or np.isnan(row["mean"]):
        return "n/a" + (f" ({int(row['n_na'])})" if row is not None else "")
    ci = f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]" if not np.isnan(row["ci_low"]) else ""
    na = f" ({int(row['n_na'])} n/a)" if row["n_na"] else ""
    return f"{_fmt(row['mean'])}{ci}{na}"


def write_matrix(agg: pd.DataFrame, metric: str, methods: list[str], defenses: list[str], title: str,
                 caption: str, config_hash: str, out: dict[str, str | os.PathLike]) -> None:
    """Rows = attacks, columns = defenses, cell = mean [95% CI] of ``metric``; tidy CSV of all metrics."""
    write_text(out["csv"], agg.assign(table="defense_matrix", config_hash=config_hash)
               .to_csv(index=False, float_format="%.6g"))
    cell = agg[agg["metric"] == metric].set_index(["method", "defense"])
    get = lambda m, d: cell.loc[(m, d)] if (m, d) in cell.index else None  # noqa: E731
    head = ["Attack", *(defense_label(d) for d in defenses)]
    md = [f"# {title}", "", f"{caption} Config hash `{config_hash}`.", "", "| " + " | ".join(head) + " |",
          "|" + "---|" * len(head)]
    md += ["| " + " | ".join([pretty(m), *(_cell(get(m, d)) for d in defenses)]) + " |" for m in methods]
    write_text(out["md"], "\n".join(md) + "\n")
    tex = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(title)}. {_tex(caption)} Config hash "
           rf"\texttt{{{config_hash}}}.}}", rf"\begin{{tabular}}{{l{'r' * len(defenses)}}}", r"\toprule",
           " & ".join(_tex(h) for h in head) + r" \\", r"\midrule"]
    tex += [" & ".join([_tex(pretty(m)), *(_tex(_cell(get(m, d))) for d in defenses)]) + r" \\" for m in methods]
    tex += [r"\bottomrule", r"\end{tabular}", r"\label{tab:defense_matrix}", r"\end{table}", ""]
    write_text(out["tex"], "\n".join(tex))


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the points (leakage, accuracy) not dominated by one with less leakage and more accuracy."""
    keep = []
    for i, (leak, acc) in enumerate(points):
        dominated = np.any((points[:, 0] <= leak) & (points[:, 1] >= acc)
                           & ((points[:, 0] < leak) | (points[:, 1] > acc)))
        if not dominated:
            keep.append(i)
    return np.asarray(sorted(keep, key=lambda i: points[i, 0]), dtype=int)


def privacy_utility_figure(frame: pd.DataFrame, leak_label: str, title: str, out: dict[str, str | os.PathLike]
                           ) -> None:
    """Scatter of attack success (x) against test accuracy (y), one point per (algorithm, defense)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    na_x = -0.08  # where defenses go whose attack was n/a on every update (shown, never given a score)
    for (algorithm, group), marker in zip(frame.groupby("algorithm", sort=True), "os^Dv"):
        pts = group[["leakage", "accuracy"]].to_numpy(float)
        ok = ~np.isnan(pts).any(axis=1)
        dots = ax.scatter(pts[ok, 0], pts[ok, 1], marker=marker, label=algorithm)
        if (~ok).any():
            ax.scatter(np.full((~ok).sum(), na_x), pts[~ok, 1], marker=marker, facecolors="none",
                       edgecolors=dots.get_facecolor(), label=f"{algorithm}: attack n/a on every update")
        for (_, row) in group.iterrows():
            x = na_x if np.isnan(row["leakage"]) else row["leakage"]
            ax.annotate(defense_label(row["defense"]), (x, row["accuracy"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        if ok.any():
            front = pts[ok][pareto_front(pts[ok])]
            ax.plot(front[:, 0], front[:, 1], "--", lw=1, label=f"{algorithm} Pareto front")
    ax.set_xlabel(leak_label)
    ax.set_ylabel("test accuracy (federated training)")
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, {key: out[key] for key in ("pdf", "png")}, dpi=150)
    plt.close(fig)
