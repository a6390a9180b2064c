"""How a config's dataset spec becomes a dataset: :func:`build_dataset` through the :data:`BUILDERS`
registry, keyed by ``kind`` (see ``src/labelleak/schemas/config.schema.yaml``: ``{"kind": ..., ...}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from labelleak.data.base import SPLITS, ImageDataset
from labelleak.errors import ConfigError, DatasetError
from labelleak.registry import Registry


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
BUILDERS: Registry[Callable[[Mapping[str, Any], str, int | None], ImageDataset]] = Registry("kind", ConfigError, {
    "synthetic_images": _build_synthetic,
    "imagenet_val": _build_imagenet_val,
    "mnist": _build_mnist,
    "cifar": _build_cifar,
})


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
    return BUILDERS.lookup(kind, context="datasets")(spec, split, seed)
