"""What an attack is: a named function of an :class:`Observation` that declares what it needs.

An attack never receives ground truth: its only input is the observation (the pipeline and the
command line build it with :func:`labelleak.updates.format.load_observation`). Each attack states
which optional fields of the observation it needs beyond ``dW`` and which paper it comes from, and
the runner refuses to call it on an observation that lacks them (LeakPro-style capabilities).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from labelleak.errors import NotApplicable
from labelleak.registry import Registry
from labelleak.updates.format import Observation

#: Optional observation fields an attack may declare (beyond ``dW``, which all attacks get).
#: ``model`` is the network at the update's checkpoint (weights only, never labels) and
#: ``aux_data`` the attacker's own labelled data (LLG+); ``decoder_update`` the update of an ASR
#: model's decoder (parameter name -> array, gradients matching on the decoder); the pipeline
#: passes them as options.
KNOWN_NEEDS = frozenset({"db", "W", "b", "batch_size", "steps", "model", "aux_data", "decoder_update"})
OPTION_NEEDS = frozenset({"model", "aux_data", "decoder_update"})


@dataclass(frozen=True)
class Prediction:
    """An attack's answer for one update."""

    labels: frozenset[int]  # predicted set of class ids
    num_labels: int | None = None  # estimate of S (label positions), when the method gives one
    counts: dict[int, int] | None = None  # class -> count, for count-capable attacks
    info: dict = field(default_factory=dict)  # method-specific diagnostics (never ground truth)
    #: checkable evidence for the answer (RLG: :class:`labelleak.attacks.rlg.Certificates`), not in the JSON record
    evidence: object | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Attack:
    """A registered label attack."""

    name: str
    paper: str
    needs: frozenset[str]
    run: Callable[..., Prediction]
    gives_counts: bool = False
    description: str = ""

    def __call__(self, obs: Observation, **options) -> Prediction:
        missing = sorted(n for n in self.needs if n not in OPTION_NEEDS and not obs.has(n))
        if missing:
            raise NotApplicable(f"{self.name} needs {', '.join(missing)}, which this update does not have")
        absent = sorted(n for n in self.needs & OPTION_NEEDS if options.get(n) is None)
        if absent:
            raise NotApplicable(f"{self.name} needs {', '.join(absent)}, which was not given")
        return self.run(obs, **options)


_REGISTRY: Registry[Attack] = Registry("attack")


def register(name: str, *, paper: str, needs: tuple[str, ...] = (), gives_counts: bool = False):
    """Decorator: register ``fn(obs, **options) -> Prediction`` as the attack ``name``."""
    unknown = set(needs) - KNOWN_NEEDS
    if unknown:
        raise ValueError(f"attack {name}: unknown needs {sorted(unknown)}")

    def deco(fn: Callable[..., Prediction]) -> Callable[..., Prediction]:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY.add(name, Attack(name, paper, frozenset(needs), fn, gives_counts, doc[0] if doc else ""))
        return fn

    return deco


def registry() -> dict[str, Attack]:
    """Name -> attack, for every attack module imported by :mod:`labelleak.attacks`."""
    return _REGISTRY.as_dict()


def get_attack(name: str, context: str = "") -> Attack:
    """The registered attack ``name``; KeyError with the registry's one message otherwise."""
    return _REGISTRY.lookup(name, context)


def run_attack(name: str, obs: Observation, **options) -> dict:
    """Run an attack and return its result record (the JSON written per update and method).

    ``status`` is ``"ok"`` or ``"n/a"`` (with a one-line ``reason``); an n/a result is a row in the
    tables, counted and shown, never dropped and never turned into a number.
    """
    attack = get_attack(name)
    start = time.perf_counter()
    try:
        pred = attack(obs, **options)
    except NotApplicable as exc:
        return {"method": name, "status": "n/a", "reason": str(exc), "labels": None, "num_labels": None,
                "seconds": time.perf_counter() - start}
    record = {
        "method": name,
        "status": "ok",
        "labels": sorted(int(c) for c in pred.labels),
        "num_labels": None if pred.num_labels is None else int(pred.num_labels),
        "seconds": time.perf_counter() - start,
    }
    if pred.counts is not None:
        record["counts"] = {str(int(k)): int(v) for k, v in sorted(pred.counts.items())}
    if pred.info:
        record["info"] = pred.info
    return record
