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
implementations). :func:`build_dataset` turns a dataset spec of the config (see
``workflow/schemas/config.schema.yaml``: ``{"kind": ..., ...}``) into a dataset through the
:data:`BUILDERS` registry, keyed by ``kind``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np
import torch

from labelleak.errors import ConfigError, DatasetError

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


def _build_synthetic(spec: Mapping[str, Any], split: str, seed: int | None) -> ImageDataset:
    from labelleak.data.synthetic import SyntheticImages

    return SyntheticImages.from_spec(spec, split, seed=seed)


def _build_imagenet_val(spec: Mapping[str, Any], split: str, seed: int | None) -> ImageDataset:
    from labelleak.data.imagenet import ImageNetVal

    return ImageNetVal.from_spec(spec, split)


def _build_mnist(spec: Mapping[str, Any], split: str, seed: int | None) -> ImageDataset:
    from labelleak.data.mnist import MNIST

    return MNIST.from_spec(spec, split)


def _build_cifar(spec: Mapping[str, Any], split: str, seed: int | None) -> ImageDataset:
    from labelleak.data.cifar import CIFAR

    return CIFAR.from_spec(spec, split)


#: kind -> ``builder(spec, split, seed)``. Builders import their module lazily, so importing
#: :mod:`labelleak.data` stays cheap.
BUILDERS: dict[str, Callable[[Mapping[str, Any], str, int | None], ImageDataset]] = {
    "synthetic_images": _build_synthetic,
    "imagenet_val": _build_imagenet_val,
    "mnist": _build_mnist,
    "cifar": _build_cifar,
}


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


def build_dataset(spec: Mapping[str, Any], split: str, *, seed: int | None = None) -> ImageDataset:
    """The ``split`` ("train" or "eval") of the dataset described by ``spec``.

    ``spec["kind"]`` picks the builder in :data:`BUILDERS`. When ``split == "train"`` and the spec
    has a non-null ``train`` entry (a second dataset spec), that spec is built instead: this is how
    an ``imagenet_val`` dataset (which has only an "eval" split) names the data a model trains on.
    ``seed`` (e.g. the config's master seed) seeds generated datasets; ``spec["seed"]`` is used
    when it is None, and 0 when neither is given. Real datasets ignore it.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"datasets: a dataset spec must be a mapping, got {type(spec).__name__}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "train" and spec.get("train") is not None:
        return build_dataset(spec["train"], "train", seed=seed)
    kind = spec.get("kind")
    try:
        builder = BUILDERS[kind]
    except (KeyError, TypeError):
        raise ConfigError(f"datasets: unknown kind {kind!r}; known: {', '.join(sorted(BUILDERS))}") from None
    return builder(spec, split, seed)
