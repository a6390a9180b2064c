"""Table 3 of Dang et al.: the bag of words from N-sample, K-step updates (RLG, S given and estimated)."""

from __future__ import annotations

import pandas as pd

from labelleak.reports.speech import BOW, append_published, caption
from labelleak.reports.tables import TableSpec, aggregate, write_table
from labelleak.studies.base import Study, register

#: published (Dang et al. 2021; LibriSpeech, lingvo Librispeech960Wpm, 402 utterances)
PUBLISHED = {(4, 1): (1, 1, 1, 1), (8, 1): (1, 1, 1, 1), (1, 4): (.959, .903, .930, .535),
          (1, 8): (.931, .862, .895, .160), (2, 2): (1, .914, .955, .330)}


def render(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict, runs=()) -> None:
    s = scores.copy()
    s["S"] = s["method"].map({"rlg": "estimated S", "rlg_true_s": "true S"})
    agg = aggregate(s, ["n", "k", "S"], BOW, seed=cfg["seed"])
    spec = TableSpec("table3", "Table 3: bag of words from N-sample, K-step updates (RLG)",
                     caption(cfg, f"Checkpoint {cfg['table3']['stage']}. 'true S': S given to RLG (the paper's "
                                   "choice: an experimenter's oracle); 'estimated S': the rank of the update."),
                     rows=("n", "k"), block="S", metrics=BOW, block_order=("true S", "estimated S"))
    write_table(agg, spec, config_hash, out)
    append_published(out["md"], "Published (Dang et al. 2021, Table 3; true S)", ["N", "K", "P", "R", "F1", "EM"],
                      [[n, k, *v] for (n, k), v in PUBLISHED.items()])


STUDY = register(Study("table3", render=render, paper='Dang et al. 2021, Table 3 (true S): PUBLISHED here, printed under our table'))
