"""What a defense is: a named, parameterised, pure transform of the update a client sends.

A defense name is a string usable as a Snakemake wildcard and in file names: ``none``, a family
with an optional parameter (``signsgd``, ``graddrop-0.5``, ``noise-0.01``), or several joined with
``+`` and applied left to right (``clip-1.0+noise-0.01``). The same string names the defense in the
config, in result paths and in the tables.

A transform takes the tensors the client sends (``dW`` and, where present, ``db``: the client sends
its whole update, so the bias is defended too) and an explicit ``numpy.random.Generator``; it
returns new arrays and never changes its input in place. DP-SGD is not a transform of a finished
update (it clips per sample while the update is computed): it is registered with
``stage="compute"`` so that the pipeline routes it to its own update computation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from labelleak.errors import LabelleakError
from labelleak.registry import Registry


class DefenseError(LabelleakError):
    """A defense name that does not parse or a parameter out of range (one line)."""


#: One family name, optionally followed by dash-separated numeric parameters.
_PART = re.compile(r"^([a-z][a-z0-9]*)((?:-[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)*)$")
#: The regular expression of a whole defense name (for the Snakemake wildcard constraint).
NAME_PATTERN = r"[a-z][a-z0-9]*(?:-[0-9.e]+)*(?:\+[a-z][a-z0-9]*(?:-[0-9.e]+)*)*"

Tensors = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Family:
    """A registered defense family: its transform and how its parameters are read and checked."""

    name: str
    transform: Callable[..., Tensors] | None  # (tensors, *params, rng) -> tensors; None for compute-stage
    params: tuple[tuple[str, type, Callable[[float], bool], str], ...]  # (name, type, check, rule)
    stage: str = "update"  # "update": applied to the sent update; "compute": during its computation
    description: str = ""


@dataclass(frozen=True)
class Step:
    """One parsed part of a defense name: a family and its parameter values."""

    family: Family
    values: tuple

    @property
    def name(self) -> str:
        return "-".join([self.family.name, *(_fmt(v) for v in self.values)])


_FAMILIES: Registry[Family] = Registry("defense family", DefenseError)


def register(name: str, *params: tuple[str, type, Callable[[float], bool], str], stage: str = "update"):
    """Decorator: register ``fn(tensors, *params, rng) -> tensors`` as the defense family ``name``."""

    def deco(fn):
        doc = (fn.__doc__ or "").strip().splitlines()
        _FAMILIES.add(name, Family(name, fn if stage == "update" else None, tuple(params), stage, doc[0] if doc else ""))
        return fn

    return deco


def families() -> dict[str, Family]:
    """Name -> defense family, for every family module imported by :mod:`labelleak.defenses`."""
    return _FAMILIES.as_dict()


def _fmt(v) -> str:
    return str(int(v)) if isinstance(v, int) else repr(float(v))


def parse(name: str) -> tuple[Step, ...]:
    """Parse a defense name into steps (``none`` = no steps); a bad name raises DefenseError."""
    if not isinstance(name, str) or not name:
        raise DefenseError(f"defense name must be a non-empty string, got {name!r}")
    if name == "none":
        return ()
    steps = []
    for part in name.split("+"):
        m = _PART.match(part)
        if not m:
            raise DefenseError(f"defense {name!r}: cannot parse {part!r} (expected e.g. signsgd, graddrop-0.5, "
                               f"clip-1.0+noise-0.01)")
        fam = _FAMILIES.lookup(m.group(1), context=f"defense {name!r}")
        raw = [p for p in m.group(2).split("-") if p]
        if len(raw) != len(fam.params):
            want = ", ".join(p[0] for p in fam.params) or "no parameters"
            raise DefenseError(f"defense {name!r}: {fam.name} takes {want}, got {len(raw)} value(s)")
        values = []
        for text, (pname, ptype, check, rule) in zip(raw, fam.params):
            value = float(text)
            if ptype is int:
                if value != int(value):
                    raise DefenseError(f"defense {name!r}: {fam.name} {pname} must be an integer, got {text}")
                value = int(value)
            if not check(value):
                raise DefenseError(f"defense {name!r}: {fam.name} {pname} must be {rule}, got {text}")
            values.append(value)
        steps.append(Step(fam, tuple(values)))
    for i, step in enumerate(steps):
        if step.family.stage == "compute" and i != 0:
            raise DefenseError(f"defense {name!r}: {step.family.name} acts while the update is computed, so it "
                               f"must come first")
    return tuple(steps)


def compute_step(name: str) -> Step | None:
    """The compute-stage step of a defense (DP-SGD), or None when it only transforms the update."""
    steps = parse(name)
    return steps[0] if steps and steps[0].family.stage == "compute" else None


def apply(name: str, tensors: Sequence[np.ndarray], rng: np.random.Generator) -> Tensors:
    """Apply the update-stage steps of defense ``name`` to ``tensors`` (new arrays; input untouched)."""
    out = tuple(np.array(t, copy=True) for t in tensors)
    for step in parse(name):
        if step.family.stage != "update":
            continue
        out = tuple(np.asarray(t) for t in step.family.transform(out, *step.values, rng=rng))
    return out
