"""Stage "sample": the batches (image settings) and utterance groups (speech) a setting attacks.
"""

from __future__ import annotations

import logging
import os

from labelleak.io import write_json
from labelleak.jobs.context import corpus, dataset, derived_seed

log = logging.getLogger("labelleak")


def sample(cfg: dict, dataset_name: str, composition: str, n: int, k: int, out: str | os.PathLike) -> None:
    """Seeded batch index lists (num_batches x K x N) over the dataset's eval split."""
    from labelleak.data.sampling import sample_batches, save_batches

    data = dataset(cfg, dataset_name, "eval")
    seed = derived_seed(cfg, "batches", dataset_name, composition)
    batches = sample_batches(data.labels, batch_size=n, steps=k, num_batches=cfg["sampling"]["num_batches"],
                             composition=composition, seed=seed)
    save_batches(out, batches, {"dataset": dataset_name, "composition": composition, "batch_size": n,
                                "steps": k, "seed": seed})
    log.info("sampled %d batches of %d x %d from %s (%s)", len(batches), k, n, dataset_name, composition)


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
