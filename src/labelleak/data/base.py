"""What an image dataset is, and how a config's dataset spec becomes one.

A dataset is anything with

* ``name: str`` -- recorded in the provenance of everything built from it,
* ``num_classes: int``,
* ``labels: np.ndarray`` -- int64, shape ``(len(ds),)``, one class id in ``[0, num_classes)`` per
  item; cheap (no image is decoded to get it),
* ``__len__()``,
* ``images(indices) -> torch.Tensor`` -- float32 ``(n, 3, H, W)`` (MNIST: ``(n, 1, 28, 28)`` unless
  ``channels: 3``) for the items ``indices`` (in that
  order, repeats allowed), normalized: roughly zero mean and unit variance per channel.

:class:`ImageDataset` is that contract as an ABC (with index checking shared by the
implementations); :mod:`labelleak.data.build` turns a config's dataset spec into one.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from labelleak.errors import ConfigError

#: The splits a dataset spec can be asked for.
SPLITS = ("train", "eval")


class ImageDataset(abc.ABC):
    """An indexable set of labelled images (see the module docstring for the contract)."""

    name: str
    num_classes: int
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abc.abstractmethod
    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Float32 ``(len(indices), 3, H, W)``, normalized, for the items ``indices`` in order."""

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        """``indices`` as a 1-D int64 array, or IndexError naming the first bad one."""
        idx = np.asarray(indices)
        if idx.ndim != 1:
            raise IndexError(f"{self.name}: indices must be a 1-D sequence, got shape {idx.shape}")
        if idx.size == 0:
            return idx.astype(np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"{self.name}: indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        bad = (idx < 0) | (idx >= len(self))
        if bad.any():
            raise IndexError(f"{self.name}: index {int(idx[bad][0])} out of range for {len(self)} items")
        return idx

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, items={len(self)}, classes={self.num_classes})"


def check_spec_keys(spec: Mapping[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """ConfigError naming the first key of ``spec`` that its kind does not use.

    ``kind``, ``train`` and ``name`` (recorded as the dataset's ``name``) are always allowed.
    """
    extra = sorted(set(spec) - set(allowed) - {"kind", "train", "name"})
    if extra:
        raise ConfigError(
            f"datasets: key {extra[0]!r} does not apply to kind {spec.get('kind')!r} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
