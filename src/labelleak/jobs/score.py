"""Stage "score": attack results against the truth files (only scoring jobs read them).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from labelleak.data.wordpiece import SPECIAL_MAX_ID
from labelleak.io import read_json, write_text
from labelleak.jobs.context import corpus


def score(rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update scores: each row names an update file, an attack result and its table keys."""
    import pandas as pd

    from labelleak.io import write_text
    from labelleak.metrics.sets import SET_METRICS, set_scores
    from labelleak.updates.format import load_truth

    records = []
    for row in rows:
        truth = load_truth(row["truth"])
        result = read_json(row["result"])
        rec = {k: v for k, v in row.items() if k not in ("update", "truth", "result", "ignore_ids_upto")}
        floor = row.get("ignore_ids_upto", -1)  # a bag of words leaves out <unk>, <s>, </s> (ids 0-2)
        true_set = {int(c) for c in truth.label_set if c > floor}
        rec.update(status=result["status"], seconds=result["seconds"], true_set_size=len(true_set),
                   true_num_labels=int(truth.labels.size), reason=result.get("reason", ""))
        if result["status"] == "ok":
            pred = {int(c) for c in result["labels"] if c > floor}
            rec.update(set_scores(pred, true_set), pred_set_size=len(pred), num_labels=result["num_labels"])
        else:
            rec.update({m: np.nan for m in SET_METRICS}, pred_set_size=np.nan, num_labels=np.nan)
        records.append(rec)
    write_text(out, pd.DataFrame(records).to_csv(index=False))


def score_labels(rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update set and count scores of the label tables (the analysis side: reads the ground truth).

    Set metrics and iLRG's LeAcc for every 'ok' result; count metrics where the attack gave counts;
    NaN (never 0) for n/a results, which the tables count and show.
    """
    import pandas as pd

    from labelleak.attacks import get_attack
    from labelleak.attacks.oracles import attack_name
    from labelleak.io import write_text
    from labelleak.metrics.counts import COUNT_METRICS, count_scores, existence_accuracy
    from labelleak.metrics.sets import SET_METRICS, set_scores
    from labelleak.updates.format import load_truth

    records = []
    for row in rows:
        truth = load_truth(row["truth"])
        C = truth.num_classes
        result = read_json(row["result"])
        rec = {k: v for k, v in row.items() if k not in ("update", "truth", "result")}
        rec.update(status=result["status"], seconds=result["seconds"], reason=result.get("reason", ""),
                   gives_counts=get_attack(attack_name(row["method"])).gives_counts, num_classes=C,
                   true_set_size=len(truth.label_set), true_num_labels=int(truth.labels.size))
        rec.update({m: np.nan for m in (*SET_METRICS, *COUNT_METRICS)})
        if result["status"] == "ok":
            rec.update(set_scores(result["labels"], truth.label_set))
            rec["leacc"] = existence_accuracy(result["labels"], truth.label_set, C)
            if result.get("counts") is not None:
                rec.update(count_scores({int(c): n for c, n in result["counts"].items()}, truth.counts, C))
        records.append(rec)
    write_text(out, pd.DataFrame(records).to_csv(index=False))


def _bow(ids) -> set[int]:
    return {int(i) for i in ids if int(i) > SPECIAL_MAX_ID}


def score_speech(cfg: dict, corpus_name: str, rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update scores of the speech tables (the analysis side: reads the ground truth).

    Bag of words: P/R/F1/EM of the predicted set of pieces against the true one, both without ids
    0-2; LE = 1 - S_hat / S (the paper's report script; S = target positions incl. one </s> per
    utterance). Transcripts (gradients matching): WER over words and exact match, for the best run
    and for run 0 (the "1 run" row of Table 5).
    """

    import pandas as pd

    from labelleak.metrics.sequence import exact_match, length_error, pieces_to_words, word_error_rate
    from labelleak.metrics.sets import SET_METRICS, set_scores
    from labelleak.updates.format import load_truth

    decode = functools.partial(pieces_to_words, pieces=corpus(cfg, corpus_name).vocab.pieces)
    records = []
    for row in rows:
        truth = load_truth(row["truth"])
        labels = [int(x) for x in truth.labels]
        result = read_json(row["result"])
        rec = {k: v for k, v in row.items() if k not in ("update", "truth", "result")}
        rec.update(status=result["status"], seconds=result["seconds"], true_length=len(labels),
                   reason=result.get("reason", ""))
        rec.update(dict.fromkeys((*SET_METRICS, "length_error", "wer", "transcript_em", "wer_run0",
                                  "transcript_em_run0", "num_variables", "pred_length"), np.nan))
        if result["status"] == "ok":
            rec.update(set_scores(_bow(result["labels"]), _bow(labels)))
            if result.get("num_labels") is not None:
                rec.update(pred_length=result["num_labels"], length_error=length_error(result["num_labels"], len(labels)))
            info = result.get("info") or {}
            if "transcript" in info:
                runs = info.get("runs") or [info]
                for suffix, run in (("", info), ("_run0", runs[0])):
                    rec["wer" + suffix] = word_error_rate(run["transcript"], labels, decode)
                    rec["transcript_em" + suffix] = exact_match(run["transcript"], labels, decode)
                rec["num_variables"] = info.get("num_variables", np.nan)
        records.append(rec)
    write_text(out, pd.DataFrame(records).to_csv(index=False))
