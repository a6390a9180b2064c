"""The speech tables and figure of Dang et al.: Tables 2, 3, 5 and Figure 2, from per-update scores.

Rows of each study (which update, which result, which table keys) come from :func:`speech_rows`;
the scores from :func:`labelleak.jobs.score.score_speech`. Every cell is a mean over updates
with its 95% bootstrap interval in the csv, and the number of updates and of n/a results.
"""

from __future__ import annotations

import os

import pandas as pd

from labelleak.reports.tables import TableSpec, aggregate, write_table

SPEECH_STUDIES = ("table2", "table3", "table5", "figure2")
GM_METHODS = ("gm_asr", "gm_bow")
BOW = ("precision", "recall", "f1", "exact_match")

#: Published numbers (Dang et al. 2021; LibriSpeech, lingvo Librispeech960Wpm, 402 utterances).
TABLE2 = {"GM": (None, .007, .008, .008, .018), "RLG (0)": (0, .998, 1, .999, .988),
          "RLG (4k)": (0, .993, 1, .996, .955), "RLG (10k)": (.092, .989, 1, .994, .933)}
TABLE3 = {(4, 1): (1, 1, 1, 1), (8, 1): (1, 1, 1, 1), (1, 4): (.959, .903, .930, .535),
          (1, 8): (.931, .862, .895, .160), (2, 2): (1, .914, .955, .330)}
TABLE5 = {"GM w/o BoW (1 run)": ("130k", ">1", .018), "GM with BoW (1 run)": ("20k", .284, .519),
          "GM with BoW (best of 5)": ("20k", .010, .975)}


def study_settings(cfg: dict, study: str) -> list[dict]:
    """(stage, n, k, method, count) of every attacked setting of one speech study."""
    sec, scfg = cfg[study], cfg["speech"]
    count = scfg["num_updates"]
    if study == "table2":
        out = [dict(stage=sec["gm_stage"], n=1, k=1, method="gm_asr", count=sec.get("gm_updates", count))]
        return out + [dict(stage=s, n=1, k=1, method="rlg", count=count) for s in sec["stages"]]
    if study == "table3":
        return [dict(stage=sec["stage"], n=n, k=k, method=m, count=count)
                for n, k in sec["shapes"] for m in ("rlg", "rlg_true_s")]
    if study == "table5":
        return [dict(stage=sec["stage"], n=1, k=1, method=m, count=sec.get("num_updates", count)) for m in GM_METHODS]
    if study == "figure2":
        return [dict(stage=s, n=1, k=1, method=m, count=sec["num_updates"]) for s in sec["stages"]
                for m in ("rlg", "gm_bow")]
    raise ValueError(f"unknown speech study {study!r}")


def speech_rows(cfg: dict, study: str, update_pattern: str, result_pattern: str) -> list[dict]:
    """(update, result, keys) of every attacked update of one speech study."""
    corpus = cfg["speech"]["corpus"]
    rows = []
    for s in study_settings(cfg, study):
        for i in range(s["count"]):
            keys = dict(dataset=corpus, model="las", stage=s["stage"], composition="utt", n=s["n"], k=s["k"],
                        batch=f"{i:03d}")
            rows.append(dict(update=update_pattern.format(**keys),
                             result=result_pattern.format(defense="none", method=s["method"], **keys),
                             stage=s["stage"], n=s["n"], k=s["k"], method=s["method"], batch=keys["batch"]))
    return rows


def _caption(cfg: dict, what: str) -> str:
    scfg = cfg["speech"]
    corpus = scfg["corpus"]
    steps = ", ".join(f"{k} = {v} steps" for k, v in scfg["training"]["checkpoints"].items())
    return (f"{what} Corpus {corpus} ({scfg['corpora'][corpus]['kind']}), checkpoints {steps}. Bag-of-words "
            "metrics leave out <unk>, <s>, </s> (ids 0-2) as the paper's report script does; "
            "LE = 1 - S_hat / S (its definition: signed, > 0 when the rank underestimates S). "
            "Cells: means over updates; 'n (n/a)' = updates averaged and updates where the method did not apply.")


def table2(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict) -> None:
    s = scores.copy()
    s["row"] = [("GM" if m == "gm_asr" else f"RLG ({st})") for m, st in zip(s["method"], s["stage"])]
    s["corpus"] = cfg["speech"]["corpus"]
    agg = aggregate(s, ["row", "corpus"], ("length_error", *BOW), seed=cfg["seed"])
    order = ["GM"] + [f"RLG ({st})" for st in cfg["table2"]["stages"]]
    spec = TableSpec("table2", "Table 2: bag of words from one utterance's update (GM baseline, RLG by checkpoint)",
                     _caption(cfg, "GM: gradients matching over the whole vocabulary on the "
                                   f"{cfg['table2']['gm_stage']} checkpoint (sec. 2.5.2)."),
                     rows=("row",), block="corpus", metrics=("length_error", *BOW), row_order={"row": order})
    write_table(agg, spec, config_hash, out)
    _append_published(out["md"], "Published (Dang et al. 2021, Table 2)", ["", "LE", "P", "R", "F1", "EM"],
                      [[k, *v] for k, v in TABLE2.items()])


def table3(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict) -> None:
    s = scores.copy()
    s["S"] = s["method"].map({"rlg": "estimated S", "rlg_true_s": "true S"})
    agg = aggregate(s, ["n", "k", "S"], BOW, seed=cfg["seed"])
    spec = TableSpec("table3", "Table 3: bag of words from N-sample, K-step updates (RLG)",
                     _caption(cfg, f"Checkpoint {cfg['table3']['stage']}. 'true S': S given to RLG (the paper's "
                                   "choice: an experimenter's oracle); 'estimated S': the rank of the update."),
                     rows=("n", "k"), block="S", metrics=BOW, block_order=("true S", "estimated S"))
    write_table(agg, spec, config_hash, out)
    _append_published(out["md"], "Published (Dang et al. 2021, Table 3; true S)", ["N", "K", "P", "R", "F1", "EM"],
                      [[n, k, *v] for (n, k), v in TABLE3.items()])


def table5(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict) -> None:
    runs = (cfg["attacks"].get("gm_bow") or {}).get("runs", 1)
    parts = []
    gm = scores[scores["method"] == "gm_asr"]
    parts.append(gm.assign(row="GM w/o BoW (1 run)"))
    bow = scores[scores["method"] == "gm_bow"]
    parts.append(bow.assign(row="GM with BoW (1 run)", wer=bow["wer_run0"], transcript_em=bow["transcript_em_run0"]))
    parts.append(bow.assign(row=f"GM with BoW (best of {runs})"))
    s = pd.concat(parts, ignore_index=True).assign(corpus=cfg["speech"]["corpus"])
    metrics = ("num_variables", "wer", "transcript_em")
    agg = aggregate(s, ["row", "corpus"], metrics, seed=cfg["seed"])
    spec = TableSpec("table5", "Table 5: transcript reconstruction by gradients matching, with and without the BoW",
                     _caption(cfg, f"Checkpoint {cfg['table5']['stage']}; best of {runs} runs chosen by the final "
                                   "gradient distance (attacker side); WER over words (can exceed 1)."),
                     rows=("row",), block="corpus", metrics=metrics,
                     row_order={"row": [p["row"].iloc[0] for p in parts if len(p)]})
    write_table(agg, spec, config_hash, out)
    _append_published(out["md"], "Published (Dang et al. 2021, Table 5)", ["", "#vars", "WER", "EM"],
                      [[k, *v] for k, v in TABLE5.items()])


def figure2(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict) -> None:
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


def _append_published(md_path: str | os.PathLike, title: str, header: list[str], rows: list[list]) -> None:
    lines = ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in r) + " |" for r in rows]
    with open(md_path, "a") as fh:
        fh.write("\n".join(lines) + "\n")


WRITERS = {"table2": table2, "table3": table3, "table5": table5, "figure2": figure2}
