"""Table 5 of Dang et al.: transcripts by gradients matching, with and without the bag of words."""

from __future__ import annotations

import pandas as pd

from labelleak.reports.speech import append_published, caption
from labelleak.reports.tables import TableSpec, aggregate, write_table
from labelleak.studies.base import Study, register

#: published (Dang et al. 2021; LibriSpeech, lingvo Librispeech960Wpm, 402 utterances)
PUBLISHED = {"GM w/o BoW (1 run)": ("130k", ">1", .018), "GM with BoW (1 run)": ("20k", .284, .519),
          "GM with BoW (best of 5)": ("20k", .010, .975)}


def render(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict, runs=()) -> None:
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
                     caption(cfg, f"Checkpoint {cfg['table5']['stage']}; best of {runs} runs chosen by the final "
                                   "gradient distance (attacker side); WER over words (can exceed 1)."),
                     rows=("row",), block="corpus", metrics=metrics,
                     row_order={"row": [p["row"].iloc[0] for p in parts if len(p)]})
    write_table(agg, spec, config_hash, out)
    append_published(out["md"], "Published (Dang et al. 2021, Table 5)", ["", "#vars", "WER", "EM"],
                      [[k, *v] for k, v in PUBLISHED.items()])


STUDY = register(Study("table5", render=render, paper='Dang et al. 2021, Table 5: PUBLISHED here, printed under our table'))
