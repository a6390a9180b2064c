"""Which items make up each attacked update: explicit, seeded index lists, saved as JSON.

:func:`sample_batches` returns ``num_batches`` updates, each ``steps`` local batches of
``batch_size`` item indices (an update of K steps with N samples per step uses ``K * N`` items).
The composition is applied to all ``K * N`` items of an update, and their order is random: no batch
is ever "the first N items of a class-sorted list". Compositions (registry :data:`COMPOSITIONS`):

``random``
    ``K * N`` distinct items drawn uniformly without replacement from the whole dataset, in the
    order drawn, as the paper's random batches from the ImageNet validation set: a label repeats
    exactly as often as chance makes it.
``unique``
    ``K * N`` distinct classes drawn uniformly (in random order), then one random item of each:
    all labels of the update differ. Needs ``K * N <=`` the number of classes in the dataset.
``repeats``
    Labels repeated on purpose: ``k = ceil(K * N / 2)`` distinct classes drawn uniformly; each gets
    one item, and each of the remaining ``K * N - k`` slots goes to a class drawn uniformly among
    the chosen classes that still have an unused item; the items of a class are drawn without
    replacement, and the ``K * N`` positions are then shuffled. So an update holds about half as
    many classes as samples, and at least one class twice. Needs ``K * N >= 2``.

Update ``b`` is drawn with its own generator ``SeedSequence([seed, batch_size, steps,
crc32(composition), b])``: batches for different ``(batch_size, steps)`` are independent, and
asking for more batches keeps the first ones unchanged. A composition that cannot be satisfied
raises :class:`SamplingError` (a one-line ``ValueError``).

:func:`save_batches` / :func:`load_batches` write and read the lists as JSON (atomically)::

    {"format": "labelleak.batches", "version": 1,
     "meta": {"composition": ..., "seed": ..., "dataset": ..., "batch_size": N, "steps": K,
              "num_batches": B, ...},
     "batches": [[[i, ...] * N] * K] * B}
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelleak.errors import DatasetError, LabelleakError
from labelleak.io import read_json, write_json
from labelleak.registry import Registry

FORMAT = "labelleak.batches"
FORMAT_VERSION = 1
#: Keys ``save_batches`` requires in ``meta`` (``batch_size``, ``steps``, ``num_batches`` are
#: filled in from the batches).
REQUIRED_META = ("composition", "seed", "dataset")


class SamplingError(LabelleakError, ValueError):
    """Batches that cannot be drawn as asked (unknown composition, too few items or classes)."""


@dataclass(frozen=True)
class _Pool:
    """The dataset's labels grouped by class (class ids ascending, members by index)."""

    size: int
    classes: np.ndarray  # (C',) class ids present
    members: list[np.ndarray]  # members[j] = item indices of class classes[j]

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> _Pool:
        order = np.argsort(labels, kind="stable")
        classes, starts = np.unique(labels[order], return_index=True)
        members = np.split(order, starts[1:])
        return cls(int(labels.shape[0]), classes, members)


def _random(rng: np.random.Generator, pool: _Pool, n: int) -> np.ndarray:
    if n > pool.size:
        raise SamplingError(f"composition 'random' needs {n} distinct items per update; the dataset has {pool.size}")
    return rng.choice(pool.size, size=n, replace=False, shuffle=True)


def _unique(rng: np.random.Generator, pool: _Pool, n: int) -> np.ndarray:
    if n > len(pool.classes):
        raise SamplingError(
            f"composition 'unique' needs {n} distinct labels per update (batch_size * steps); "
            f"the dataset has {len(pool.classes)} classes"
        )
    chosen = rng.choice(len(pool.classes), size=n, replace=False, shuffle=True)
    return np.array([pool.members[j][rng.integers(len(pool.members[j]))] for j in chosen], dtype=np.int64)


def _repeats(rng: np.random.Generator, pool: _Pool, n: int) -> np.ndarray:
    if n < 2:
        raise SamplingError("composition 'repeats' needs at least 2 items per update (batch_size * steps)")
    k = math.ceil(n / 2)
    if k > len(pool.classes):
        raise SamplingError(
            f"composition 'repeats' needs {k} distinct labels for {n} items per update; "
            f"the dataset has {len(pool.classes)} classes"
        )
    chosen = rng.choice(len(pool.classes), size=k, replace=False, shuffle=True)
    caps = np.array([len(pool.members[j]) for j in chosen])
    counts = np.ones(k, dtype=np.int64)
    for _ in range(n - k):
        open_ = np.flatnonzero(counts < caps)
        if open_.size == 0:
            raise SamplingError(
                f"composition 'repeats': the {k} classes drawn have only {int(caps.sum())} items "
                f"for {n} samples per update"
            )
        counts[open_[rng.integers(open_.size)]] += 1
    parts = [rng.choice(pool.members[j], size=int(c), replace=False) for j, c in zip(chosen, counts)]
    return rng.permutation(np.concatenate(parts)).astype(np.int64)


#: composition name -> ``draw(rng, pool, n) -> n item indices`` (in batch order).
COMPOSITIONS: Registry[Callable[[np.random.Generator, _Pool, int], np.ndarray]] = Registry("composition", SamplingError, {
    "random": _random,
    "unique": _unique,
    "repeats": _repeats,
})


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SamplingError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def batch_generator(seed: int, batch_size: int, steps: int, composition: str, batch: int) -> np.random.Generator:
    """The generator of update ``batch`` (see the module docstring)."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), int(batch_size), int(steps), zlib.crc32(composition.encode()), int(batch)])
    )


def sample_batches(
    labels: np.ndarray,
    batch_size: int,
    steps: int,
    num_batches: int,
    composition: str,
    seed: int,
) -> list[list[list[int]]]:
    """``num_batches`` x ``steps`` x ``batch_size`` item indices into ``labels``' dataset."""
    draw = COMPOSITIONS.lookup(composition)
    batch_size = _positive_int("batch_size", batch_size)
    steps = _positive_int("steps", steps)
    num_batches = _positive_int("num_batches", num_batches)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SamplingError(f"seed must be an integer >= 0, got {seed!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise SamplingError(f"labels must be a non-empty 1-D integer array, got shape {labels.shape}, dtype {labels.dtype}")
    if labels.min() < 0:
        raise SamplingError(f"labels must be >= 0, got {int(labels.min())}")
    pool = _Pool.from_labels(labels.astype(np.int64))
    n = batch_size * steps
    out = []
    for b in range(num_batches):
        idx = draw(batch_generator(seed, batch_size, steps, composition, b), pool, n)
        assert idx.shape == (n,)
        out.append(idx.reshape(steps, batch_size).tolist())
    return out


def _shape(batches: Any) -> tuple[int, int, int] | None:
    """(num_batches, steps, batch_size) of a well-formed nested list of non-negative ints, else None."""
    if not isinstance(batches, list) or not batches or not isinstance(batches[0], list) or not batches[0]:
        return None
    if not isinstance(batches[0][0], list) or not batches[0][0]:
        return None
    shape = (len(batches), len(batches[0]), len(batches[0][0]))
    for update in batches:
        if not isinstance(update, list) or len(update) != shape[1]:
            return None
        for step in update:
            if not isinstance(step, list) or len(step) != shape[2]:
                return None
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in step):
                return None
    return shape


def save_batches(path: str | os.PathLike, batches: list[list[list[int]]], meta: dict[str, Any]) -> None:
    """Write ``batches`` (as from :func:`sample_batches`) and ``meta`` to ``path`` as JSON, atomically.

    ``meta`` must hold ``composition``, ``seed`` and ``dataset`` (its name); ``batch_size``,
    ``steps`` and ``num_batches`` are filled in from the batches (and must agree if given). Other
    keys are kept.
    """
    batches = [[[int(i) for i in step] for step in update] for update in batches]
    shape = _shape(batches)
    if shape is None:
        raise SamplingError("batches must be a non-empty num_batches x steps x batch_size nested list of indices >= 0")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise SamplingError(f"batch meta lacks {', '.join(missing)}")
    meta = dict(meta)
    for key, value in zip(("num_batches", "steps", "batch_size"), shape):
        if meta.setdefault(key, value) != value:
            raise SamplingError(f"batch meta says {key}={meta[key]!r} but the batches have {value}")
    write_json(path, {"format": FORMAT, "version": FORMAT_VERSION, "meta": meta, "batches": batches})


def load_batches(path: str | os.PathLike) -> tuple[list[list[list[int]]], dict[str, Any]]:
    """``(batches, meta)`` from a file written by :func:`save_batches`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such batch file")
    try:
        obj = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON batch file ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a {FORMAT} file")
    if obj.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: unsupported batch file version {obj.get('version')!r} (expected {FORMAT_VERSION})")
    meta, batches = obj.get("meta"), obj.get("batches")
    shape = _shape(batches)
    if not isinstance(meta, dict) or shape is None:
        raise DatasetError(f"{path}: malformed batch file (needs 'meta' and a num_batches x steps x batch_size 'batches')")
    for key, value in zip(("num_batches", "steps", "batch_size"), shape):
        if meta.get(key) != value:
            raise DatasetError(f"{path}: meta {key}={meta.get(key)!r} does not match the batches ({value})")
    return batches, meta
