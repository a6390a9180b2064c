"""Stage "render": a study's tables and figures from its score file (:mod:`labelleak.studies`)."""

from __future__ import annotations

import logging
import os

from labelleak.jobs.runner import Paths

log = logging.getLogger("labelleak")


def render(cfg: dict, study: str, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike],
           runs: Paths = ()) -> None:
    """Render the study ``study`` (a registered study; the rule's name) from its per-update scores.

    ``runs`` are other inputs a study reads (utility: the federated training runs).
    """
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.studies import STUDIES

    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""], dtype={"stage": str})  # "n/a" is no NaN
    STUDIES.lookup(study).render(cfg, scores, config_hash(cfg), dict(out), list(runs))
    log.info("%s written from %d scored updates", study, len(scores))
