"""What the speech studies (Tables 2, 3, 5, Figure 2 of Dang et al.; :mod:`labelleak.studies`) share:
their cells from the config (:func:`speech_rows`), their caption and the published block under a table.

The scores come from :func:`labelleak.jobs.score.score_speech`. Every cell is a mean over updates
with its 95% bootstrap interval in the csv, and the number of updates and of n/a results.
"""

from __future__ import annotations

import os

SPEECH_STUDIES = ("table2", "table3", "table5", "figure2")
GM_METHODS = ("gm_asr", "gm_bow")
BOW = ("precision", "recall", "f1", "exact_match")

def study_settings(cfg: dict, study: str) -> list[dict]:
    """(stage, n, k, method, count) of every attacked setting of one speech study."""
    sec, scfg = cfg[study], cfg["speech"]
    count = scfg["num_updates"]
    if study == "table2":
        out = [dict(stage=sec["gm_stage"], n=1, k=1, method="gm_asr", count=sec.get("gm_updates", count))]
        return out + [dict(stage=s, n=1, k=1, method="rlg", count=count) for s in sec["stages"]]
    if study == "table3":
        return [dict(stage=sec["stage"], n=n, k=k, method=m, count=count)
                for n, k in sec["shapes"] for m in sec.get("methods", ["rlg", "rlg_true_s"])]
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


def caption(cfg: dict, what: str) -> str:
    scfg = cfg["speech"]
    corpus = scfg["corpus"]
    steps = ", ".join(f"{k} = {v} steps" for k, v in scfg["training"]["checkpoints"].items())
    return (f"{what} Corpus {corpus} ({scfg['corpora'][corpus]['kind']}), checkpoints {steps}. Bag-of-words "
            "metrics leave out <unk>, <s>, </s> (ids 0-2) as the paper's report script does; "
            "LE = 1 - S_hat / S (its definition: signed, > 0 when the rank underestimates S). "
            "Cells: means over updates; 'n (n/a)' = updates averaged and updates where the method did not apply.")


def append_published(md_path: str | os.PathLike, title: str, header: list[str], rows: list[list]) -> None:
    lines = ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in r) + " |" for r in rows]
    with open(md_path, "a") as fh:
        fh.write("\n".join(lines) + "\n")
