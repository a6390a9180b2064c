"""CIFAR-10 / CIFAR-100 from the python pickle batches; nothing is downloaded.

``root`` is the extracted ``cifar-10-batches-py`` (``data_batch_1`` ... ``data_batch_5``,
``test_batch``; key ``labels``) or ``cifar-100-python`` (``train``, ``test``; key ``fine_labels``)
folder. Each file is a pickled dict with ``data`` (n, 3072) uint8 rows (1024 red, 1024 green,
1024 blue, row-major 32 x 32) and the label list. The train split is the training files, the eval
split the test file. Images are (n, 3, 32, 32) float32 in [0, 1], normalised with the per-channel
mean and std of the set. These are pickles: only point ``root`` at files you trust.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelleak.data.base import ImageDataset, check_spec_keys
from labelleak.errors import ConfigError, DatasetError

SPEC_KEYS = frozenset({"root"})
#: variant -> (train files, eval files, label key, classes, mean, std)
VARIANTS = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10,
                (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": (["train"], ["test"], b"fine_labels", 100,
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(data (n, 3, 32, 32) uint8, labels (n,)) of one pickled batch; one-line error otherwise."""
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable CIFAR python batch ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or b"data" not in obj or label_key not in obj:
        raise DatasetError(f"{path}: expected a dict with b'data' and {label_key!r}")
    data = np.asarray(obj[b"data"], dtype=np.uint8)
    labels = np.asarray(obj[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DatasetError(f"{path}: data must be (n, 3072) with n labels, got {data.shape} and {len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels


class CIFAR(ImageDataset):
    """A split of CIFAR-10 or CIFAR-100 (variant from the files in ``root``)."""

    def __init__(self, root: str | Path, split: str = "eval", name: str = "cifar") -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: no such directory (expected cifar-10-batches-py or cifar-100-python)")
        variant = next((v for v, spec in VARIANTS.items() if (root / spec[1][0]).is_file()), None)
        if variant is None:
            raise DatasetError(f"{root}: no test_batch (CIFAR-10) or test (CIFAR-100) file")
        train_files, eval_files, key, classes, mean, std = VARIANTS[variant]
        files = [root / f for f in (train_files if split == "train" else eval_files)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DatasetError(f"{root}: missing {', '.join(missing)} for the {split} split of {variant}")
        parts = [read_batch(f, key) for f in files]
        self._data = np.concatenate([p[0] for p in parts])
        self.labels = np.concatenate([p[1] for p in parts])
        if self.labels.min() < 0 or self.labels.max() >= classes:
            raise DatasetError(f"{root}: labels outside [0, {classes}) for {variant}")
        self.labels.setflags(write=False)
        self.name, self.variant, self.num_classes = name, variant, classes
        self._mean = torch.tensor(mean)[:, None, None]
        self._std = torch.tensor(std)[:, None, None]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], split: str) -> CIFAR:
        check_spec_keys(spec, SPEC_KEYS)
        if "root" not in spec:
            raise ConfigError("cifar: 'root' (the folder of python batches) is required")
        return cls(spec["root"], split, name=str(spec.get("name", "cifar")))

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        idx = self._check_indices(indices)
        x = torch.from_numpy(self._data[idx].astype(np.float32) / 255.0)
        return (x - self._mean) / self._std
