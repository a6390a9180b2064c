"""Stage "defend": a defended copy of every update file (the attacker sees only the copy).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from labelleak.jobs.context import derived_seed
from labelleak.jobs.runner import Paths

log = logging.getLogger("labelleak")


def _defended_arrays(obs):
    return (obs.dW,) if obs.db is None else (obs.dW, obs.db)


def defend(cfg: dict, defense: str, inputs: Paths, outputs: Paths) -> None:
    """Apply an update-stage defense to each dumped update (same format; the truth file stays the source's)."""
    from labelleak.defenses import apply, compute_step
    from labelleak.defenses.base import DefenseError
    from labelleak.updates.format import load_observation, save_update

    if compute_step(defense) is not None:
        raise DefenseError(f"defense {defense!r} acts while the update is computed (rule dump_dp_updates)")
    start = time.perf_counter()
    for src, out in zip(inputs, outputs):
        obs = load_observation(src)  # a defense is the client's: it never sees more than the attacker
        rng = np.random.default_rng(derived_seed(cfg, "defend", defense, Path(src).as_posix()))
        sent = apply(defense, _defended_arrays(obs), rng)
        meta = {**obs.meta, "defense": defense}
        save_update(out, sent[0], db=sent[1] if len(sent) > 1 else None, W=obs.W, b=obs.b,
                    batch_size=obs.batch_size, steps=obs.steps, meta=meta)
    log.info("defense %s on %d updates in %.2fs", defense, len(outputs), time.perf_counter() - start)
