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
    """Attack success (x) against test accuracy (y): one panel per algorithm, one point per defense.

    Points carry a number, not a name, and points that coincide (to 0.01) share one label ("2,5"),
    so no label overlaps another; the numbers are keyed under the panels. A defense whose attack was
    n/a on every update has no x: it is drawn in a separate "n/a" strip left of its panel, never at
    a made-up score.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algorithms = sorted(frame["algorithm"].unique())
    defenses = list(dict.fromkeys(frame["defense"]))
    number = {d: i + 1 for i, d in enumerate(defenses)}
    fig = plt.figure(figsize=(4.2 * len(algorithms) + 0.6, 5.2))
    grid = fig.add_gridspec(2, 2 * len(algorithms), width_ratios=[1, 6] * len(algorithms), height_ratios=[5, 1],
                            wspace=0.1)
    acc = frame["accuracy"].to_numpy(float)
    ylim = (max(0.0, np.nanmin(acc) - 0.05), min(1.02, np.nanmax(acc) + 0.05))
    for j, algorithm in enumerate(algorithms):
        group = frame[frame["algorithm"] == algorithm]
        strip = fig.add_subplot(grid[0, 2 * j])
        ax = fig.add_subplot(grid[0, 2 * j + 1], sharey=strip)
        ok = group["leakage"].notna().to_numpy()
        for axis, part, xs in ((ax, group[ok], group[ok]["leakage"]), (strip, group[~ok], np.zeros((~ok).sum()))):
            axis.scatter(xs, part["accuracy"], s=18, facecolors="C0" if axis is ax else "none", edgecolors="C0")
            spots: list[tuple[float, float, list[int]]] = []  # points within 0.03 of one another share a label
            for x, (_, row) in zip(np.asarray(xs, float), part.iterrows()):
                y = float(row["accuracy"])
                near = next((s for s in spots if abs(s[0] - x) < 0.03 and abs(s[1] - y) < 0.03), None)
                (near[2] if near else spots.append((x, y, [])) or spots[-1][2]).append(number[row["defense"]])
            for x, y, nums in spots:
                axis.annotate(",".join(map(str, sorted(nums))), (x, y), fontsize=6, xytext=(3, 2),
                              textcoords="offset points")
        pts = group[ok][["leakage", "accuracy"]].to_numpy(float)
        if len(pts):
            front = pts[pareto_front(pts)]
            front = front[np.argsort(front[:, 0])]
            ax.plot(front[:, 0], front[:, 1], "--", lw=1, color="C1", label="Pareto front")
            ax.legend(fontsize=6, loc="upper left")
        strip.set_xticks([0], ["n/a"])
        strip.set_xlim(-1, 1)
        strip.set_ylim(*ylim)
        strip.grid(alpha=0.3, axis="y")
        strip.tick_params(labelleft=j == 0)
        ax.tick_params(labelleft=False)
        ax.set_xlim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.set_title(algorithm, fontsize=8)
        ax.set_xlabel(leak_label, fontsize=8)
        if j == 0:
            strip.set_ylabel("test accuracy (federated training)")
    key = fig.add_subplot(grid[1, :])
    key.axis("off")
    key.text(0, 0.5, textwrap.fill("   ".join(f"{n}: {defense_label(d)}" for d, n in number.items()), 150),
             fontsize=6, va="top", family="monospace")
    fig.suptitle(textwrap.fill(title, 110), fontsize=8)
    save_figure(fig, {key_: out[key_] for key_ in ("pdf", "png")}, dpi=150)
    plt.close(fig)
