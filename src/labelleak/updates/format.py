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
                           for scoring only, never given to an attack. (Version 1 writers; the
                           pipeline writes it to a truth file instead, see below.)
``meta``       ()          optional str. JSON with provenance (model, stage, device, ...). An attack
                           sees only the keys of :data:`ATTACKER_META`.
=============  ==========  ==================================================================

``format_version`` (scalar int) is always written; a file of a newer version is refused and one
without it (older writers) is read as version 1. Version 2 (this one) changes no key: the pipeline
no longer writes ``labels`` (nor the batch seed, batch index or utterance ids in ``meta``, from which
labels can be rebuilt) into update files, and an attacker's :class:`Observation` keeps only the
allow-listed ``meta`` keys. Version 1 files, labels included, are read as before.

**Truth files** (``.json``, kind ``labelleak-truth``): the ground truth of one update, beside it in the
DAG but never an input of an attack job: ``{"kind", "version": 1, "labels": [...], "num_classes": C,
"provenance": {...}}`` (:func:`save_truth`, :func:`load_truth`).

:func:`load_observation` never reads ``labels`` (not even to check them): only the scoring side,
:func:`load_ground_truth` / :func:`load_update` / :func:`load_truth`, reads and checks them.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelleak.errors import UpdateFileError
from labelleak.io import atomic_path

FORMAT_VERSION = 2
TRUTH_KIND = "labelleak-truth"
TRUTH_VERSION = 1

#: the meta keys an attack may see (provenance that is no ground truth and cannot rebuild it)
ATTACKER_META = frozenset({
    "dataset", "model", "arch", "framework", "stage", "checkpoint_step", "device", "bn_mode", "local_lr",
    "defense", "dp_clip", "dp_noise_multiplier", "dp_epsilon", "dp_delta", "decoder_file",
    "source", "before", "after", "layer", "weight_key", "layout", "dtype", "lr",  # labelleak update
})


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
    num_classes: int | None = None  # C, where the truth file says (update files: dW's columns)

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
    if "labels" in arrays:
        _validate_labels(arrays["labels"], arrays["dW"].shape[1], str(path))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_npz(path: str | os.PathLike, what: str, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of an .npz file but those named in ``skip`` (never read), no pickles.

    Anything else (a directory, a ``.npy`` or other file under an ``.npz`` name, a corrupt archive,
    a member that is not an array) raises :class:`UpdateFileError` with one line naming ``what`` it
    should be.
    """
    if Path(path).is_dir():
        raise UpdateFileError(f"{path}: is a directory, not an .npz {what}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy file holds one bare array
            raise UpdateFileError(f"{path}: a single .npy array, not an .npz {what} (keyed arrays such as 'dW', "
                                  f"written by numpy.savez)")
        with data:
            arrays = {key: data[key] for key in data.files if key not in skip}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as exc:
        msg = " ".join(str(exc).split())
        raise UpdateFileError(f"{path}: not a readable .npz {what} ({type(exc).__name__}: {msg})") from None
    bad = next((key for key, value in arrays.items() if not isinstance(value, np.ndarray)), None)
    if bad is not None:
        raise UpdateFileError(f"{path}: member {bad!r} is not a .npy array, not a readable .npz {what}")
    return arrays


def check_format_version(arrays: dict[str, np.ndarray], where: str, supported: int = FORMAT_VERSION) -> int:
    """The file's ``format_version`` (absent: 1, older writers); refuses a newer or malformed one."""
    if "format_version" not in arrays:
        return 1
    arr = arrays["format_version"]
    if arr.shape != () or not np.issubdtype(arr.dtype, np.integer) or int(arr) < 1:
        raise UpdateFileError(f"{where}: 'format_version' must be a positive integer scalar")
    version = int(arr)
    if version > supported:
        raise UpdateFileError(f"{where}: format_version {version} is newer than this labelleak reads "
                              f"(format_version {supported}); upgrade labelleak")
    return version


def _read(path: str | os.PathLike, with_labels: bool) -> tuple[Observation, dict[str, np.ndarray]]:
    """The observation of an update file (validated) and its arrays; ``labels`` only if ``with_labels``."""
    path = Path(path)
    if not path.exists():
        raise UpdateFileError(f"{path}: no such update file")
    arrays = read_npz(path, "update file", skip=() if with_labels else ("labels",))
    check_format_version(arrays, str(path))
    _validate(arrays, str(path))
    meta = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise UpdateFileError(f"{path}: 'meta' is not valid JSON") from None
        if not isinstance(meta, dict):
            raise UpdateFileError(f"{path}: 'meta' must be a JSON object, got {type(meta).__name__}")
    if not with_labels:  # the attacker's view: allow-listed provenance only
        meta = {k: v for k, v in meta.items() if k in ATTACKER_META}
    obs = Observation(
        dW=arrays["dW"],
        db=arrays.get("db"),
        W=arrays.get("W"),
        b=arrays.get("b"),
        batch_size=int(arrays["batch_size"]) if "batch_size" in arrays else None,
        steps=int(arrays["steps"]) if "steps" in arrays else None,
        meta=meta,
    )
    return obs, arrays


def load_update(path: str | os.PathLike) -> tuple[Observation, GroundTruth | None]:
    """Read and validate an update file, labels included (the analysis side); one-line :class:`UpdateFileError`."""
    obs, arrays = _read(path, with_labels=True)
    if "labels" not in arrays:
        return obs, None
    _validate_labels(arrays["labels"], obs.num_classes, str(path))
    return obs, GroundTruth(labels=arrays["labels"].astype(np.int64), num_classes=obs.num_classes)


def load_observation(path: str | os.PathLike) -> Observation:
    """The attacker's view of an update file: the ground truth is never read (nor checked), at the boundary."""
    return _read(path, with_labels=False)[0]


def load_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """The analysis' view: the labels. Raises if the file has none."""
    truth = load_update(path)[1]
    if truth is None:
        raise UpdateFileError(f"{path}: has no 'labels' (ground truth), cannot be scored")
    return truth


def save_truth(path: str | os.PathLike, labels, num_classes: int, **provenance: Any) -> None:
    """Write the ground truth of one update (labels with repeats, in order) as a truth file, atomically."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    _validate_labels(labels, int(num_classes), str(path))
    doc = {"kind": TRUTH_KIND, "version": TRUTH_VERSION, "labels": labels.tolist(), "num_classes": int(num_classes),
           "provenance": provenance}
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(doc, sort_keys=True, default=str) + "\n")


def load_truth(path: str | os.PathLike) -> GroundTruth:
    """The ground truth of a truth file (the analysis side); one-line :class:`UpdateFileError`."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UpdateFileError(f"{path}: no such truth file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpdateFileError(f"{path}: not a readable truth file ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("kind") != TRUTH_KIND:
        raise UpdateFileError(f"{path}: not a truth file (kind {TRUTH_KIND!r})")
    if not isinstance(doc.get("version"), int) or doc["version"] > TRUTH_VERSION:
        raise UpdateFileError(f"{path}: truth file version {doc.get('version')!r} is not one this labelleak reads")
    raw, C = doc.get("labels"), doc.get("num_classes")
    if not isinstance(raw, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in raw) \
            or not isinstance(C, int) or C < 1:
        raise UpdateFileError(f"{path}: 'labels' must be a list of integers and 'num_classes' a positive integer")
    labels = np.asarray(raw, dtype=np.int64)
    _validate_labels(labels, C, str(path))
    return GroundTruth(labels=labels, num_classes=C)


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


def _validate_labels(labels: np.ndarray, C: int, where: str) -> None:
    """The ground truth's checks: scoring only (an attacker's load never reads the labels)."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UpdateFileError(f"{where}: 'labels' must be a 1-D integer array")
    if labels.size and (labels.min() < 0 or labels.max() >= C):
        raise UpdateFileError(f"{where}: 'labels' must lie in [0, {C}), the columns of dW")
