"""MNIST from the original IDX files (gzip or not); nothing is downloaded.

``root`` holds ``train-images-idx3-ubyte[.gz]`` / ``train-labels-idx1-ubyte[.gz]`` (train split)
and ``t10k-images-idx3-ubyte[.gz]`` / ``t10k-labels-idx1-ubyte[.gz]`` (eval split). When the
folder has only the t10k files (as ``../shared/data/mnist``), the t10k set is split: its last
``eval_size`` items (default 2000) are the eval split and the rest the train split (disjoint).
Images are scaled to [0, 1] and normalised with MNIST's mean 0.1307 and std 0.3081, as
``(n, channels, 28, 28)`` float32; ``channels: 3`` repeats the grey channel for colour models.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelleak.data.base import ImageDataset, check_spec_keys
from labelleak.errors import ConfigError, DatasetError

MEAN, STD = 0.1307, 0.3081
SPEC_KEYS = frozenset({"root", "channels", "eval_size"})
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MAGIC = {3: 2051, 1: 2049}  # ndim -> IDX magic number (unsigned byte data)


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX array of unsigned bytes (images: ndim 3, labels: ndim 1); one-line error otherwise."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable IDX file ({exc})") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    if int.from_bytes(raw[:4], "big") != MAGIC.get(ndim):
        raise DatasetError(f"{path}: unexpected IDX magic number {int.from_bytes(raw[:4], 'big')}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: header says {shape} but the file holds {body.size} bytes of data")
    return body.reshape(shape)


class MNIST(ImageDataset):
    """One split of MNIST read from IDX files (see the module docstring)."""

    def __init__(self, root: str | Path, split: str = "eval", channels: int = 1, eval_size: int = 2000,
                 name: str = "mnist") -> None:
        root = Path(root)
        if channels not in (1, 3):
            raise ConfigError(f"mnist: channels must be 1 or 3, got {channels!r}")
        if not root.is_dir():
            raise DatasetError(f"{root}: no such directory (expected MNIST IDX files t10k-images-idx3-ubyte[.gz], ...)")
        test = [_find(root, f) for f in FILES["t10k"]]
        train = [_find(root, f) for f in FILES["train"]]
        if split == "train" and all(train):
            images, labels = read_idx(train[0]), read_idx(train[1])
        else:
            if not all(test):
                raise DatasetError(f"{root}: missing {FILES['t10k'][0]}[.gz] or {FILES['t10k'][1]}[.gz]")
            images, labels = read_idx(test[0]), read_idx(test[1])
            if not all(train):  # only the test set: split it into disjoint train / eval parts
                if not 0 < eval_size < len(labels):
                    raise ConfigError(f"mnist: eval_size must be in [1, {len(labels)}), got {eval_size!r}")
                cut = len(labels) - eval_size
                sl = slice(cut, None) if split == "eval" else slice(0, cut)
                images, labels = images[sl], labels[sl]
        if images.ndim != 3 or len(images) != len(labels):
            raise DatasetError(f"{root}: {len(images)} images for {len(labels)} labels")
        self.name, self.channels, self.num_classes = name, channels, 10
        self._images = images
        self.labels = labels.astype(np.int64)
        self.labels.setflags(write=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], split: str) -> MNIST:
        check_spec_keys(spec, SPEC_KEYS)
        if "root" not in spec:
            raise ConfigError("mnist: 'root' (the folder of IDX files) is required")
        return cls(spec["root"], split, channels=int(spec.get("channels", 1)),
                   eval_size=int(spec.get("eval_size", 2000)), name=str(spec.get("name", "mnist")))

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        idx = self._check_indices(indices)
        x = torch.from_numpy(self._images[idx].astype(np.float32) / 255.0)[:, None]
        x = (x - MEAN) / STD
        return x.repeat(1, self.channels, 1, 1) if self.channels == 3 else x
