"""Figure 2 of Dang et al.: BoW and transcript leakage against the training checkpoint."""

from __future__ import annotations

import pandas as pd

from labelleak.reports.tables import aggregate
from labelleak.studies.base import Study, register


def render(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict, runs=()) -> None:
    """BoW F1 and EM (RLG), transcript EM and WER (GM + BoW, best of R) against the checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labelleak.io import save_figure

    stages = list(cfg["figure2"]["stages"])
    rlg = aggregate(scores[scores["method"] == "rlg"], ["stage"], ("f1", "exact_match"), seed=cfg["seed"])
    gm = aggregate(scores[scores["method"] == "gm_bow"], ["stage"], ("transcript_em", "wer"), seed=cfg["seed"])
    curves = [(rlg, "f1", "BoW F1 (RLG)", "o-"), (rlg, "exact_match", "BoW EM (RLG)", "s-"),
              (gm, "transcript_em", "transcript EM (GM + BoW)", "^-"), (gm, "wer", "transcript WER (GM + BoW)", "v--")]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for agg, metric, label, style in curves:
        sub = agg[agg["metric"] == metric].set_index("stage").reindex(stages)
        x = range(len(stages))
        ax.plot(x, sub["mean"], style, label=label)
        ax.fill_between(x, sub["ci_low"], sub["ci_high"], alpha=0.15)
    ax.set_xticks(range(len(stages)), stages)
    ax.set_xlabel("checkpoint (training steps)")
    ax.set_ylabel("score")
    ax.set_title(f"Figure 2: leakage vs training stage ({cfg['figure2']['num_updates']} utterances)", fontsize=9)
    ax.legend(fontsize=7)
    fig.text(0.01, 0.01, f"config {config_hash}", fontsize=6, color="gray")
    fig.tight_layout()
    save_figure(fig, {key: out[key] for key in ("pdf", "png")}, dpi=150)
    plt.close(fig)
    tidy = pd.concat([rlg.assign(method="rlg"), gm.assign(method="gm_bow")], ignore_index=True)
    from labelleak.io import write_text

    write_text(out["csv"], tidy.assign(figure="figure2", config_hash=config_hash).to_csv(index=False,
                                                                                         float_format="%.6g"))


PAPER = ('Dang et al. 2021, Figure 2 is a plot (no numbers printed): compare the trend, later checkpoints '
         'harder, GM + BoW still about 40% exact at 10k')
STUDY = register(Study("figure2", render=render, paper=PAPER))
