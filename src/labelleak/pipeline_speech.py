"""The speech rules' jobs (Dang et al. sections 2.5.2 and 4): one function per DAG stage, like pipeline.py.

Corpus -> utterance groups -> ASR training with checkpoints -> N x K updates (projection layer in the
update-file contract, the decoder's full update in a sibling file) -> the generic ``attack`` job
(RLG's bag of words; gradients matching with and without it) -> scores -> Tables 2, 3, 5, Figure 2.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time

import numpy as np

from labelleak.data.wordpiece import SPECIAL_MAX_ID
from labelleak.io import read_json, write_json, write_text
from labelleak.pipeline import Paths, derived_seed, run_job  # noqa: F401 (run_job: the scripts' entry)

log = logging.getLogger("labelleak")

#: Method aliases that run a registered attack with one experimenter-given option (an oracle, stated in
#: the tables): Table 3 of the paper runs RLG with the true number of target positions S; rlg_official, the
#: released script, always gets it (gt_k: the number of labels, repeats included).
ORACLE_METHODS = {"rlg_true_s": ("rlg", "num_labels"), "rlg_official": ("rlg_official", "num_labels")}


def attack_name(method: str) -> str:
    """The registered attack behind a method name of the config (an oracle alias or the name itself)."""
    return ORACLE_METHODS.get(method, (method,))[0]


def is_speech(cfg: dict, dataset_name: str | None) -> bool:
    return bool(dataset_name) and dataset_name in cfg.get("speech", {}).get("corpora", {})


@functools.lru_cache(maxsize=4)
def _corpus(spec_json: str, seed: int, training: int | None = None):
    from labelleak.data.speech import build_speech_corpus, training_utterances

    spec = json.loads(spec_json)
    corpus = build_speech_corpus(spec, seed)
    return corpus if training is None else training_utterances(spec, corpus, training, seed)


def corpus(cfg: dict, name: str, training: bool = False):
    """The attacked utterances of corpus ``name`` (or, with ``training``, the disjoint training set)."""
    scfg = cfg["speech"]
    count = scfg["training"].get("num_utterances") if training else None
    return _corpus(json.dumps(scfg["corpora"][name], sort_keys=True), cfg["seed"], count if training else None)


def model_sizes(cfg: dict) -> dict:
    return dict(cfg["speech"].get("model") or {})


# --------------------------------------------------------------------------- data and model
def speech_groups(cfg: dict, corpus_name: str, n: int, k: int, out: str | os.PathLike) -> None:
    """Seeded utterance groups (num_updates groups of K steps of N utterances) for one update shape."""
    from labelleak.data.speech import corpus_groups

    seed = derived_seed(cfg, "speech_groups", corpus_name, n, k)
    groups = corpus_groups(cfg["speech"]["corpora"][corpus_name], corpus(cfg, corpus_name), n, k,
                           cfg["speech"]["num_updates"], seed)
    if len(groups) < cfg["speech"]["num_updates"]:
        raise ValueError(f"{corpus_name}: only {len(groups)} groups of {n} x {k} for "
                         f"speech.num_updates = {cfg['speech']['num_updates']}")
    write_json(out, {"groups": groups, "corpus": corpus_name, "batch_size": n, "steps": k, "seed": seed})
    log.info("%d groups of %d utterances x %d steps from %s", len(groups), n, k, corpus_name)


def train_asr(cfg: dict, corpus_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train the ASR model on the corpus's training utterances; one checkpoint per stage."""
    import torch

    from labelleak.device import describe, pick_device
    from labelleak.models.asr import build_asr_model
    from labelleak.models.asr_train import train_asr as fit

    tcfg = cfg["speech"]["training"]
    data = corpus(cfg, corpus_name, training=True)
    seed = derived_seed(cfg, "train_asr", corpus_name)
    torch.manual_seed(seed)
    model = build_asr_model(len(data.vocab), **model_sizes(cfg))
    device = pick_device(cfg.get("device", "auto"))
    log.info("training the ASR model (%d parameters) on %d utterances of %s on %s",
             sum(p.numel() for p in model.parameters()), len(data), corpus_name, describe(device))
    stats = fit(model, data.utterances, data.features, checkpoints=dict(tcfg["checkpoints"]), outputs=outputs,
                batch_size=tcfg["batch_size"], lr=tcfg["lr"], optimizer=tcfg.get("optimizer", "adam"), seed=seed,
                device=device, log=log.info)
    log.info("training done: %s", stats)


def dump_asr(cfg: dict, corpus_name: str, stage: str, checkpoint: str | os.PathLike,
             groups_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """One update per utterance group: the projection layer's update plus the decoder's (sibling file),
    and its truth file (the target pieces and the utterance ids, which could rebuild them)."""
    from labelleak.device import describe
    from labelleak.models.asr_train import load_asr_checkpoint
    from labelleak.updates.asr import asr_update, save_asr_update
    from labelleak.updates.format import save_truth

    data = corpus(cfg, corpus_name)
    groups = read_json(groups_file)["groups"]
    outputs = [o for o in outputs if not str(o).endswith(".decoder.npz")]
    if len(groups) < len(outputs) or len(truths) != len(outputs):
        raise ValueError(f"{groups_file}: {len(groups)} groups for {len(outputs)} update files, {len(truths)} truths")
    model = load_asr_checkpoint(checkpoint)
    local_lr = cfg["speech"].get("local_lr", 0.1)
    start = time.perf_counter()
    for i, (group, out) in enumerate(zip(groups, outputs)):
        upd = asr_update(model, group, data.utterances, data.features, local_lr=local_lr)
        save_asr_update(out, upd, {"dataset": corpus_name, "model": "las", "stage": stage, "local_lr": local_lr,
                                   "device": describe(next(model.parameters()).device)})
        save_truth(truths[i], upd.labels, upd.dW.shape[1], batch=i, utterances=group)
    log.info("dumped %d ASR updates at stage %s in %.1fs", len(outputs), stage, time.perf_counter() - start)


# --------------------------------------------------------------------------- scores
def _bow(ids) -> set[int]:
    return {int(i) for i in ids if int(i) > SPECIAL_MAX_ID}


def score_speech(cfg: dict, corpus_name: str, rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update scores of the speech tables (the analysis side: reads the ground truth).

    Bag of words: P/R/F1/EM of the predicted set of pieces against the true one, both without ids
    0-2; LE = 1 - S_hat / S (the paper's report script; S = target positions incl. one </s> per
    utterance). Transcripts (gradients matching): WER over words and exact match, for the best run
    and for run 0 (the "1 run" row of Table 5).
    """
    import functools

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


# --------------------------------------------------------------------------- tables and figure
def speech_study(cfg: dict, study: str, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Table 2, 3 or 5, or Figure 2, from the study's per-update scores."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.reports.speech import WRITERS

    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""], dtype={"stage": str})
    WRITERS[study](cfg, scores, config_hash(cfg), out)
    log.info("%s written from %d scored updates", study, len(scores))
