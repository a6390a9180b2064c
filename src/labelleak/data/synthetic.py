"""A synthetic labelled image set: generated on demand, deterministic, no download.

Generative model (``seed``, ``num_classes`` = C, ``image_size`` = S, ``grid`` = g,
``max_shift`` = m, ``noise`` = sigma, ``brightness`` = beta, ``contrast`` = c):

* **Class prototypes.** Class k has a low-resolution Gaussian field ``Z_k`` of shape (3, g, g)
  with i.i.d. N(0, 1) entries, drawn for all classes at once from
  ``SeedSequence([seed, PROTOTYPES])``. Its prototype image ``P_k`` is ``Z_k`` upsampled
  bilinearly (``align_corners=False``) to (3, S + 2m, S + 2m) and scaled by the exact constant that
  gives it unit variance per pixel in expectation: a smooth random colour pattern. Prototypes depend
  on ``seed`` only, not on the split, so a model trained on the "train" split is evaluated on the
  same classes in the "eval" split. For C = 1000 and the default g = 8 they are 192-dimensional
  independent Gaussian vectors, pairwise nearly orthogonal (|cosine| ~ 0.07), hence distinct.
* **Labels.** Split ``split`` (``"train"`` = 0, ``"eval"`` = 1) has ``size`` items; its label array
  is a balanced list (``size // C`` or one more items per class) shuffled by a permutation drawn
  from ``SeedSequence([seed, LABELS, split_id])``. Consecutive items are therefore not
  class-sorted.
* **Items.** Item i (label k) is generated with its own generator
  ``SeedSequence([seed, ITEMS, split_id, i])``, drawing in this order: a shift
  ``(dy, dx)`` uniform in ``{-m..m}^2``, a contrast ``a ~ U(1 - c, 1 + c)``, a brightness
  ``b ~ N(0, beta^2)`` (one per item, shared by the channels) and pixel noise
  ``eps ~ N(0, 1)^(3, S, S)``. The image is the S x S window of ``P_k`` at offset
  ``(m + dy, m + dx)``::

      x = (a * window(P_k) + b + sigma * eps) / sqrt(1 + c^2 / 3 + beta^2 + sigma^2)

  so each pixel has zero mean and unit variance in expectation (normalized per channel, like
  ImageNet inputs after mean/std normalization).

Item i of a split is thus a pure function of ``(seed, split, i)`` and the constructor arguments:
nothing large is stored, and items can be generated in any order, alone or in batches, with the
same result. Defaults (g = 8, m = S // 16, sigma = 0.5, beta = 0.2, c = 0.2) keep the classes
easy: the class signal dominates the noise, so a CNN trained for a few hundred steps reaches
confident (peaked) softmax outputs, as a pretrained model does on ImageNet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelleak.data.base import ImageDataset, check_spec_keys
from labelleak.errors import ConfigError

#: split name -> the id mixed into the seeds.
SPLIT_IDS = {"train": 0, "eval": 1}
#: Default items per class of each split, when ``size`` is not given.
DEFAULT_PER_CLASS = {"train": 100, "eval": 50}

# Domain tags that keep the seed streams of prototypes, labels and items apart.
_PROTOTYPES, _LABELS, _ITEMS = 0x5052, 0x4C42, 0x4954

#: Keys of a ``synthetic_images`` dataset spec (besides ``kind`` and ``train``).
SPEC_KEYS = frozenset({"num_classes", "image_size", "train_size", "eval_size", "noise", "seed"})


def _upsampled_variance(grid: int, length: int, start: int, size: int) -> float:
    """Mean per-pixel variance of a (grid x grid) i.i.d. N(0, 1) field upsampled bilinearly to
    (length x length), over the window ``[start, start + size)`` in both directions.

    Bilinear interpolation is separable and linear, so pixel (y, x) has variance
    ``v[y] * v[x]`` with ``v[t] = sum_k w_k(t)^2`` (w = 1-D linear interpolation weights).
    """
    eye = torch.eye(grid, dtype=torch.float64)[:, None, :]  # (grid, 1, grid): one-hot fields
    weights = F.interpolate(eye, size=length, mode="linear", align_corners=False)[:, 0, :]  # (grid, length)
    v = (weights**2).sum(dim=0)[start : start + size]
    return float(v.mean()) ** 2


class SyntheticImages(ImageDataset):
    """A split of the synthetic image set (see the module docstring for the generative model)."""

    def __init__(
        self,
        num_classes: int = 1000,
        image_size: int = 32,
        size: int | None = None,
        seed: int = 0,
        split: str = "train",
        noise: float = 0.5,
        brightness: float = 0.2,
        contrast: float = 0.2,
        max_shift: int | None = None,
        grid: int = 8,
        name: str = "synthetic_images",
    ) -> None:
        if split not in SPLIT_IDS:
            raise ConfigError(f"synthetic_images: unknown split {split!r}; expected one of {', '.join(SPLIT_IDS)}")
        for key, value, low in (("num_classes", num_classes, 2), ("image_size", image_size, 1), ("grid", grid, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ConfigError(f"synthetic_images: {key} must be an integer >= {low}, got {value!r}")
        for key, value in (("noise", noise), ("brightness", brightness)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"synthetic_images: {key} must be a finite number >= 0, got {value!r}")
        if not (isinstance(contrast, (int, float)) and 0 <= contrast < 1):
            raise ConfigError(f"synthetic_images: contrast must be in [0, 1), got {contrast!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"synthetic_images: seed must be an integer >= 0, got {seed!r}")
        if size is None:
            size = DEFAULT_PER_CLASS[split] * int(num_classes)
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"synthetic_images: size must be an integer >= 1, got {size!r}")
        if max_shift is None:
            max_shift = int(image_size) // 16
        if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ConfigError(f"synthetic_images: max_shift must be an integer >= 0, got {max_shift!r}")

        self.name = name
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.split = split
        self.noise = float(noise)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.max_shift = int(max_shift)
        self.grid = int(grid)
        self._split_id = SPLIT_IDS[split]

        # Balanced labels in a seeded random order.
        size = int(size)
        balanced = np.arange(size, dtype=np.int64) % self.num_classes
        perm = np.random.default_rng(np.random.SeedSequence([self.seed, _LABELS, self._split_id])).permutation(size)
        self.labels = balanced[perm]
        self.labels.setflags(write=False)

        # Low-resolution class fields: all classes at once, split-independent.
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _PROTOTYPES]))
        fields = rng.standard_normal((self.num_classes, 3, self.grid, self.grid), dtype=np.float32)
        self._fields = torch.from_numpy(fields)
        self._canvas = self.image_size + 2 * self.max_shift
        self._proto_scale = 1.0 / math.sqrt(_upsampled_variance(self.grid, self._canvas, 0, self._canvas))
        self._norm = math.sqrt(1.0 + self.contrast**2 / 3.0 + self.brightness**2 + self.noise**2)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], split: str, *, seed: int | None = None) -> SyntheticImages:
        """Build from a ``synthetic_images`` dataset spec (keys in :data:`SPEC_KEYS`).

        ``train_size`` / ``eval_size`` give the size of the requested split (default:
        :data:`DEFAULT_PER_CLASS` items per class). ``seed`` overrides ``spec["seed"]`` (default 0).
        """
        check_spec_keys(spec, SPEC_KEYS)
        kwargs: dict[str, Any] = {
            key: spec[key] for key in ("num_classes", "image_size", "noise") if spec.get(key) is not None
        }
        size = spec.get(f"{split}_size")
        if seed is None:
            seed = spec.get("seed", 0)
        return cls(size=size, seed=seed, split=split, name=str(spec.get("name", "synthetic_images")), **kwargs)

    # ------------------------------------------------------------------ generation

    def _upsample(self, classes: np.ndarray) -> torch.Tensor:
        """Prototype canvases (n, 3, S + 2m, S + 2m) of ``classes``, unit variance in expectation."""
        low = self._fields[torch.from_numpy(np.asarray(classes, dtype=np.int64))]
        up = F.interpolate(low, size=(self._canvas, self._canvas), mode="bilinear", align_corners=False)
        return up * self._proto_scale

    def prototypes(self, classes: Sequence[int] | None = None) -> torch.Tensor:
        """The noise-free, unshifted images of ``classes`` (default: all), on the scale of
        :meth:`images` (i.e. divided by the same normalization constant)."""
        cls_idx = np.arange(self.num_classes) if classes is None else np.asarray(classes, dtype=np.int64)
        if cls_idx.size and (cls_idx.min() < 0 or cls_idx.max() >= self.num_classes):
            raise IndexError(f"{self.name}: class ids must be in [0, {self.num_classes})")
        m, s = self.max_shift, self.image_size
        return (self._upsample(cls_idx)[:, :, m : m + s, m : m + s] / self._norm).contiguous()

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        idx = self._check_indices(indices)
        n, s, m = len(idx), self.image_size, self.max_shift
        shifts = np.empty((n, 2), dtype=np.int64)
        gains = np.empty(n, dtype=np.float32)
        offsets = np.empty(n, dtype=np.float32)
        eps = np.empty((n, 3, s, s), dtype=np.float32)
        for j, i in enumerate(idx):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, _ITEMS, self._split_id, int(i)]))
            shifts[j] = rng.integers(-m, m + 1, size=2)
            gains[j] = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
            offsets[j] = self.brightness * rng.standard_normal()
            rng.standard_normal(out=eps[j], dtype=np.float32)
        canvas = self._upsample(self.labels[idx])
        out = torch.empty((n, 3, s, s), dtype=torch.float32)
        for j in range(n):
            y, x = m + int(shifts[j, 0]), m + int(shifts[j, 1])
            out[j] = canvas[j, :, y : y + s, x : x + s]
        out.mul_(torch.from_numpy(gains)[:, None, None, None])
        out.add_(torch.from_numpy(offsets)[:, None, None, None])
        out.add_(torch.from_numpy(eps), alpha=self.noise)
        out.div_(self._norm)
        return out
