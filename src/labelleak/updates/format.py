"""The update file: one weight update of the projection layer = one ``.npz`` (a public contract).

Keys (all arrays; extra keys are ignored by readers, so the format can grow):

=============  ==========  ==================================================================
key            shape       meaning
=============  ==========  ==================================================================
``dW``         (d, C)      required. Projection-layer update in the paper's orientation (rows =
                           input features, columns = classes) with the sign of a gradient: a
                           one-step update is the gradient of the mean loss; a K-step update
                           from W0 to WK with learning rate lr is (W0 - WK) / lr.
``db``         (C,)        optional. The bias update, same convention.
``W``          (d, C)      optional. The layer's weights before the update.
``b``          (C,)        optional. The layer's bias before the update.
``batch_size`` ()          optional int. Samples per step (N).
``steps``      ()          optional int. Local steps (K).
``labels``     (K*N,)      optional int. Every label used, with repeats, in order. Ground truth:
                           for scoring only, never given to an attack.
``meta``       ()          optional str. JSON with provenance (model, stage, device, seed, ...).
=============  ==========  ==================================================================

``load_update`` splits a file into the :class:`Observation` an attacker sees and the
:class:`GroundTruth` only the analysis sees; attacks receive the observation alone.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelleak.errors import UpdateFileError
from labelleak.io import atomic_path

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Observation:
    """What the adversary sees: the update of the projection layer and optional context."""

    dW: np.ndarray
    db: np.ndarray | None = None
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    batch_size: int | None = None
    steps: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return int(self.dW.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.dW.shape[1])

    def has(self, name: str) -> bool:
        """True when the optional field ``name`` is present."""
        return getattr(self, name) is not None


@dataclass(frozen=True)
class GroundTruth:
    """What only the analysis sees: the labels used to compute the update."""

    labels: np.ndarray  # (K*N,) ints, with repeats, in order

    @property
    def label_set(self) -> set[int]:
        return {int(x) for x in np.unique(self.labels)}

    @property
    def counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}


def save_update(
    path: str | os.PathLike,
    dW: np.ndarray,
    *,
    db: np.ndarray | None = None,
    W: np.ndarray | None = None,
    b: np.ndarray | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    labels: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write an update file atomically; validates shapes first so no bad file is ever written."""
    arrays: dict[str, np.ndarray] = {"dW": np.asarray(dW)}
    for name, value in (("db", db), ("W", W), ("b", b)):
        if value is not None:
            arrays[name] = np.asarray(value)
    for name, value in (("batch_size", batch_size), ("steps", steps)):
        if value is not None:
            arrays[name] = np.asarray(int(value), dtype=np.int64)
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64).reshape(-1)
    arrays["format_version"] = np.asarray(FORMAT_VERSION, dtype=np.int64)
    arrays["meta"] = np.asarray(json.dumps(meta or {}, sort_keys=True))
    _validate(arrays, str(path))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file (no pickles), or :class:`UpdateFileError` naming ``what`` it should be."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise UpdateFileError(f"{path}: not a readable .npz {what} ({type(exc).__name__}: {msg})") from None


def load_update(path: str | os.PathLike) -> tuple[Observation, GroundTruth | None]:
    """Read and validate an update file; raise :class:`UpdateFileError` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise UpdateFileError(f"{path}: no such update file")
    arrays = read_npz(path, "update file")
    _validate(arrays, str(path))
    meta = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise UpdateFileError(f"{path}: 'meta' is not valid JSON") from None
    obs = Observation(
        dW=arrays["dW"],
        db=arrays.get("db"),
        W=arrays.get("W"),
        b=arrays.get("b"),
        batch_size=int(arrays["batch_size"]) if "batch_size" in arrays else None,
        steps=int(arrays["steps"]) if "steps" in arrays else None,
        meta=meta,
    )
    truth = GroundTruth(labels=arrays["labels"].astype(np.int64)) if "labels" in arrays else None
    return obs, truth


def load_observation(path: str | os.PathLike) -> Observation:
    """The attacker's view of an update file: the ground truth is dropped here, at the boundary."""
    return load_update(path)[0]


def load_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """The analysis' view: the labels. Raises if the file has none."""
    truth = load_update(path)[1]
    if truth is None:
        raise UpdateFileError(f"{path}: has no 'labels' (ground truth), cannot be scored")
    return truth


def _validate(arrays: dict[str, np.ndarray], where: str) -> None:
    if "dW" not in arrays:
        raise UpdateFileError(f"{where}: missing required array 'dW'")
    dW = arrays["dW"]
    if dW.ndim != 2 or min(dW.shape) < 1:
        raise UpdateFileError(f"{where}: 'dW' must be a 2-D array (d, C), got shape {dW.shape}")
    if not np.issubdtype(dW.dtype, np.floating):
        raise UpdateFileError(f"{where}: 'dW' must be a float array, got dtype {dW.dtype}")
    d, C = dW.shape
    expected = {"db": (C,), "W": (d, C), "b": (C,)}
    for name, shape in expected.items():
        if name in arrays:
            arr = arrays[name]
            if arr.shape != shape:
                raise UpdateFileError(f"{where}: '{name}' must have shape {shape} to match dW {dW.shape}, got {arr.shape}")
            if not np.issubdtype(arr.dtype, np.floating):
                raise UpdateFileError(f"{where}: '{name}' must be a float array, got dtype {arr.dtype}")
    for name in ("dW", "db", "W", "b"):
        if name in arrays and not np.all(np.isfinite(arrays[name])):
            raise UpdateFileError(f"{where}: '{name}' contains NaN or Inf values")
    for name in ("batch_size", "steps"):
        if name in arrays:
            arr = arrays[name]
            if arr.shape != () or not np.issubdtype(arr.dtype, np.integer) or int(arr) < 1:
                raise UpdateFileError(f"{where}: '{name}' must be a positive integer scalar")
    if "labels" in arrays:
        labels = arrays["labels"]
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise UpdateFileError(f"{where}: 'labels' must be a 1-D integer array")
        if labels.size and (labels.min() < 0 or labels.max() >= C):
            raise UpdateFileError(f"{where}: 'labels' must lie in [0, {C}), the columns of dW")
