"""Table 2 of Dang et al.: the bag of words from one utterance's update, GM baseline and RLG by checkpoint."""

from __future__ import annotations

import pandas as pd

from labelleak.reports.speech import BOW, append_published, caption
from labelleak.reports.tables import TableSpec, aggregate, write_table
from labelleak.studies.base import Study, register

#: published (Dang et al. 2021; LibriSpeech, lingvo Librispeech960Wpm, 402 utterances)
PUBLISHED = {"GM": (None, .007, .008, .008, .018), "RLG (0)": (0, .998, 1, .999, .988),
          "RLG (4k)": (0, .993, 1, .996, .955), "RLG (10k)": (.092, .989, 1, .994, .933)}


def render(cfg: dict, scores: pd.DataFrame, config_hash: str, out: dict, runs=()) -> None:
    s = scores.copy()
    s["row"] = [("GM" if m == "gm_asr" else f"RLG ({st})") for m, st in zip(s["method"], s["stage"])]
    s["corpus"] = cfg["speech"]["corpus"]
    agg = aggregate(s, ["row", "corpus"], ("length_error", *BOW), seed=cfg["seed"])
    order = ["GM"] + [f"RLG ({st})" for st in cfg["table2"]["stages"]]
    spec = TableSpec("table2", "Table 2: bag of words from one utterance's update (GM baseline, RLG by checkpoint)",
                     caption(cfg, "GM: gradients matching over the whole vocabulary on the "
                                   f"{cfg['table2']['gm_stage']} checkpoint (sec. 2.5.2)."),
                     rows=("row",), block="corpus", metrics=("length_error", *BOW), row_order={"row": order})
    write_table(agg, spec, config_hash, out)
    append_published(out["md"], "Published (Dang et al. 2021, Table 2)", ["", "LE", "P", "R", "F1", "EM"],
                      [[k, *v] for k, v in PUBLISHED.items()])


STUDY = register(Study("table2", render=render, paper='Dang et al. 2021, Table 2: PUBLISHED here, printed under our table'))
