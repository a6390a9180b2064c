"""Stage "attack": one registered attack over every update of a setting, one result file per update.
"""

from __future__ import annotations

import logging
import os

from labelleak.io import write_json
from labelleak.jobs.context import attacker_context, update_context
from labelleak.jobs.runner import Paths

log = logging.getLogger("labelleak")


def attack_options(cfg: dict, method: str, obs) -> dict:
    """Attack options from the config (the attacker's choices; never ground truth)."""
    if method != "rlg":
        return dict(cfg.get("attacks", {}).get(method) or {})
    rcfg = cfg.get("attacks", {}).get("rlg") or {}
    options = {"max_lp_seconds": rcfg["max_lp_seconds"]} if rcfg.get("max_lp_seconds") is not None else {}
    if rcfg.get("num_labels", "rank") == "batch_size" and obs.batch_size is not None:
        options["num_labels"] = obs.batch_size * (obs.steps or 1)
    return options


def attack(cfg: dict, method: str, updates, outs, checkpoint: str | os.PathLike | None = None,
           dataset_name: str | None = None, model_name: str | None = None, truths: Paths | None = None) -> None:
    """Run one attack on every update of a setting (one result file each); n/a is an explicit record.

    ``truths`` (the updates' truth files) reach only an oracle method (``ORACLE_METHODS``: an
    experimenter's variant that is told the number of labels); the rule gives them to no other.

    ``updates`` and ``outs`` are paths or equally long lists of paths: one job per setting keeps
    the per-process start-up (torch import, model build) off the per-update cost. An attack that
    needs the model gets it built from ``checkpoint`` (weights only, once); one that needs
    auxiliary data gets the attacker's own items of the dataset's train split.
    """
    from labelleak.attacks import get_attack, run_attack
    from labelleak.attacks.oracles import ORACLE_METHODS, attack_name
    from labelleak.updates.format import load_observation, load_truth

    updates = [updates] if isinstance(updates, (str, os.PathLike)) else list(updates)
    truths = list(truths or [])
    if method in ORACLE_METHODS and len(truths) != len(updates):
        raise ValueError(f"oracle method {method!r} needs one truth file per update (rule input 'truth')")
    outs = [outs] if isinstance(outs, (str, os.PathLike)) else list(outs)
    if len(updates) != len(outs):
        raise ValueError(f"{len(updates)} updates for {len(outs)} result files")
    name = attack_name(method)
    needs = get_attack(name).needs
    extras = attacker_context(cfg, needs, checkpoint, dataset_name, model_name)
    for update, out in zip(updates, outs):
        obs = load_observation(update)  # the attacker's view: no labels
        options = {**attack_options(cfg, name, obs), **extras, **update_context(needs, update)}
        if method in ORACLE_METHODS:  # an experimenter's oracle, named in the method and the tables
            options[ORACLE_METHODS[method][1]] = int(load_truth(truths[updates.index(update)]).labels.size)
        record = run_attack(name, obs, **options)
        record.update(method=method, update=str(update))
        write_json(out, record)
        log.info("%s on %s: %s, %s labels in %.2fs", method, update, record["status"],
                 "n/a" if record["labels"] is None else len(record["labels"]), record["seconds"])
