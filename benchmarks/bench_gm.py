"""Benchmark: gradients matching on ASR decoder updates, the former sequential runs against the batched ones.

Builds the config's speech corpus and ASR model the way the DAG does (``train_asr`` to the stage's
checkpoint, ``asr_update`` of single utterances: one utterance, one step), then on ``--n``
utterances measures, in this one process and on one torch thread:

* seconds per utterance of ``--runs`` GM + BoW runs done one after the other by the former
  implementation (:func:`~labelleak.attacks.gm_asr.reconstruct_sequential`, on the first
  ``--timing-n`` utterances) and by the batched one (:func:`~labelleak.attacks.gm_asr.reconstruct`),
  and their ratio;
* transcript EM / WER of GM without BoW (1 run), GM + BoW run 0 (the "1 run" row of Table 5; runs are
  independent, so run 0 of a batch is a 1-run job) and GM + BoW best of ``--runs`` by gradient distance;
* convergence: the median relative gradient distance of the best runs at a few steps.

    python benchmarks/bench_gm.py --n 4                      # ~5 min on one core
    python benchmarks/bench_gm.py --n 20 --opts '{"schedule": "cosine", "plateau": 100}'

The trained checkpoints and dumped updates are cached under ``--work`` (default /tmp/bench_gm).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def prepare(cfg: dict, stage: str, n: int, work: Path):
    """(model, [(decoder update, observation, labels)]) for the first ``n`` 1x1 groups of the DAG."""
    from labelleak.data.speech import corpus_groups
    from labelleak.jobs import context as ps
    from labelleak.jobs.context import derived_seed
    from labelleak.metrics.sequence import pieces_to_words
    from labelleak.models.asr import build_asr_model
    from labelleak.models.asr_train import load_asr_checkpoint, train_asr
    from labelleak.updates.asr import asr_update

    name = cfg["speech"]["corpus"]
    tcfg = cfg["speech"]["training"]
    ckpt = work / f"{name}-{stage}.pt"
    if not ckpt.exists():
        data = ps.corpus(cfg, name, training=True)
        seed = derived_seed(cfg, "train_asr", name)
        torch.manual_seed(seed)
        model = build_asr_model(len(data.vocab), **ps.model_sizes(cfg))
        last = max(tcfg["checkpoints"], key=lambda s: tcfg["checkpoints"][s])  # the DAG's lr schedule
        outputs = {stage: ckpt, last: work / f"{name}-{last}.pt"}
        train_asr(model, data.utterances, data.features, checkpoints=dict(tcfg["checkpoints"]), outputs=outputs,
                  batch_size=tcfg["batch_size"], lr=tcfg["lr"], optimizer=tcfg.get("optimizer", "adam"), seed=seed,
                  device="cpu", log=lambda m: None)
    model = load_asr_checkpoint(ckpt)
    att = ps.corpus(cfg, name)
    groups = corpus_groups(cfg["speech"]["corpora"][name], att, 1, 1, n,
                           derived_seed(cfg, "speech_groups", name, 1, 1))
    items = []
    for g in groups:
        upd = asr_update(model, g, att.utterances, att.features, local_lr=cfg["speech"].get("local_lr", 0.1))
        items.append((upd.decoder, upd.dW, [int(x) for x in upd.labels]))
    return model, items, functools.partial(pieces_to_words, pieces=att.vocab.pieces)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--stage", default=None, help="checkpoint stage (default: the config's table5 stage)")
    ap.add_argument("--n", type=int, default=4, help="utterances")
    ap.add_argument("--timing-n", type=int, default=2, help="utterances the sequential implementation is timed on")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--opts", default="{}", help="JSON options of reconstruct over the config's gm_bow ones")
    ap.add_argument("--no-plain", action="store_true", help="skip GM without BoW")
    ap.add_argument("--work", default="/tmp/bench_gm")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from labelleak.attacks.gm_asr import reconstruct, reconstruct_sequential
    from labelleak.attacks.rlg import reveal_labels
    from labelleak.config import load_config
    from labelleak.metrics.sequence import exact_match, word_error_rate

    cfg = load_config(args.config)
    stage = args.stage or cfg.get("table5", {}).get("stage", "0")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, items, decode = prepare(cfg, stage, args.n, work)
    print(f"{len(items)} updates of stage {stage} ready in {time.perf_counter() - t0:.0f}s "
          f"(vocab {model.vocab_size}); torch threads 1")
    base = {k: v for k, v in (cfg["attacks"].get("gm_bow") or {}).items() if k != "runs"}
    new_opts = {**base, **json.loads(args.opts)}
    plain_opts = {**{k: v for k, v in (cfg["attacks"].get("gm_asr") or {}).items()}, **json.loads(args.opts)}
    print(f"former options: {base}\nbatched options: {new_opts}")

    rows = {k: [] for k in ("plain", "bow1", "bowR")}
    t_seq, t_bat, t_bat_timed = [], [], []
    curves = []
    for i, (decoder, dW, labels) in enumerate(items):
        bow = reveal_labels(dW, None)
        S, cols = bow.num_labels, sorted(bow.labels)
        if i < args.timing_n:
            t = time.perf_counter()
            reconstruct_sequential(model, decoder, S, bow=cols, runs=args.runs, **base)
            t_seq.append(time.perf_counter() - t)
            t = time.perf_counter()
            reconstruct(model, decoder, S, bow=cols, runs=args.runs, **base)
            t_bat_timed.append(time.perf_counter() - t)
        t = time.perf_counter()
        res = reconstruct(model, decoder, S, bow=cols, runs=args.runs, **new_opts)
        t_bat.append(time.perf_counter() - t)
        best = min(res, key=lambda r: r.distance)
        curves.append(best.history)
        for key, run in (("bow1", res[0]), ("bowR", best)):
            rows[key].append((exact_match(run.transcript, labels, decode), word_error_rate(run.transcript, labels, decode)))
        if not args.no_plain:
            plain = reconstruct(model, decoder, S, bow=None, runs=1, **plain_opts)[0]
            rows["plain"].append((exact_match(plain.transcript, labels, decode),
                                  word_error_rate(plain.transcript, labels, decode)))
        print(f"  utterance {i}: S={len(labels)} (RLG {S}) 1-run EM {rows['bow1'][-1][0]:.0f}, best-of-{args.runs} EM "
              f"{rows['bowR'][-1][0]:.0f} (relative distance {best.relative_distance:.2e}, {best.steps} steps, "
              f"{best.stopped}), {t_bat[-1]:.1f}s", flush=True)

    print(f"\nseconds per utterance, {args.runs} runs, former options, first {len(t_seq)} utterances:")
    if t_seq:
        s, b = np.mean(t_seq), np.mean(t_bat_timed)
        print(f"  sequential (former) {s:.1f}s   batched {b:.1f}s   ratio {s / b:.1f}x")
    print(f"  batched, chosen options, all {len(t_bat)} utterances: {np.mean(t_bat):.1f}s")
    print(f"\ntranscripts on {len(items)} utterances (EM, WER; mean):")
    for key, label in (("plain", "GM w/o BoW (1 run)"), ("bow1", "GM + BoW (1 run)"),
                       ("bowR", f"GM + BoW (best of {args.runs})")):
        if rows[key]:
            em, wer = np.mean(rows[key], axis=0)
            print(f"  {label:<24} EM {em:.3f}   WER {wer:.3f}")
    print("\nconvergence of the best runs: median relative gradient distance at step")
    for step in (1, 10, 50, 100, 200, 300, 500, 700, 1000):
        vals = [c[min(step, len(c)) - 1] for c in curves if c]
        if vals and step <= max(len(c) for c in curves):
            print(f"  {step:>5}: {np.median(vals):.3e}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
