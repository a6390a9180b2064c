"""The ImageNet (ILSVRC2012) validation set, read from a folder; nothing is downloaded.

Expected layout:

* ``root``: a folder with the validation images ``ILSVRC2012_val_00000001.JPEG`` ... (flat, as
  distributed; the extension may be in any case). Other files are ignored.
* ``labels_file``: the label file in the Caffe format, one line per image::

      ILSVRC2012_val_00000001.JPEG 65

  with class indices 0..999 in sorted-WordNet-id order (the Keras / torchvision order). Blank lines
  are ignored; any other line that is not ``<file name> <integer in [0, num_classes)>`` is an error
  naming the file and line. (The devkit's ``ILSVRC2012_validation_ground_truth.txt`` uses another,
  1-based order and one field per line: it is rejected, not silently mis-read.)
* ``class_index`` (optional): ``imagenet_class_index.json`` in the Keras format
  ``{"0": ["n01440764", "tench"], ...}``; gives ``num_classes`` (default 1000), ``wnids`` and
  ``class_names``.

Items are the images that are both in ``root`` and in the label file, sorted by file name. A
label-file entry whose image is not in ``root`` is skipped (counted in ``.missing``), as is an image
in ``root`` that the label file does not list (counted in ``.skipped``), so a subset of the 50,000
images can be used as is. No item at all is a :class:`~labelleak.errors.DatasetError`.

Preprocessing (torchvision's standard evaluation transform): decode with Pillow, convert to RGB
(grayscale, CMYK, palette), resize the shorter side to ``resize`` (default
``round(image_size * 256 / 224)``, i.e. 256 for 224) with bilinear filtering, center-crop
``image_size`` x ``image_size``, scale to [0, 1] and normalize with the ImageNet mean and std.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from labelleak.data.base import ImageDataset, check_spec_keys
from labelleak.errors import ConfigError, DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: File names of validation images in ``root``.
IMAGE_NAME = re.compile(r"^ILSVRC2012_val_\d+\.jpe?g$", re.IGNORECASE)

LAYOUT = (
    "expected an ImageNet validation folder with ILSVRC2012_val_*.JPEG files and a label file "
    "with lines '<file> <class index>'"
)

#: Keys of an ``imagenet_val`` dataset spec (besides ``kind`` and ``train``).
SPEC_KEYS = frozenset({"root", "labels_file", "class_index", "image_size", "resize"})


def read_class_index(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(wnid, name), ...]`` by class index from a Keras ``imagenet_class_index.json``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; expected a class index JSON {{\"0\": [\"n01440764\", \"tench\"], ...}}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{path}: expected a non-empty JSON object {{\"0\": [wnid, name], ...}}")
    if sorted(raw) != sorted(str(k) for k in range(len(raw))):
        raise DatasetError(f"{path}: keys must be the class indices \"0\"..\"{len(raw) - 1}\"")
    out = []
    for k in range(len(raw)):
        entry = raw[str(k)]
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)):
            raise DatasetError(f"{path}: class {k}: expected [wnid, name], got {json.dumps(entry)[:60]}")
        out.append((entry[0], entry[1]))
    return out


def read_label_file(path: str | os.PathLike, num_classes: int = 1000) -> dict[str, int]:
    """File name -> class index from a Caffe-format label file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such label file; {LAYOUT}")
    labels: dict[str, int] = {}
    try:
        with path.open("r", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                fields = line.split()
                if not fields:
                    continue
                label = None
                if len(fields) == 2:
                    try:
                        label = int(fields[1])
                    except ValueError:
                        pass
                if label is None or not 0 <= label < num_classes:
                    raise DatasetError(
                        f"{path}, line {lineno}: expected '<file> <class index in 0..{num_classes - 1}>', "
                        f"got {line.strip()[:60]!r}"
                    )
                name = fields[0]
                if labels.setdefault(name, label) != label:
                    raise DatasetError(f"{path}, line {lineno}: {name} is listed twice with different labels")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file; {LAYOUT}") from None
    if not labels:
        raise DatasetError(f"{path}: empty label file; {LAYOUT}")
    return labels


class ImageNetVal(ImageDataset):
    """The ImageNet validation images found in ``root`` (see the module docstring)."""

    split = "eval"

    def __init__(
        self,
        root: str | os.PathLike,
        labels_file: str | os.PathLike,
        class_index: str | os.PathLike | None = None,
        image_size: int = 224,
        resize: int | None = None,
        name: str = "imagenet_val",
    ) -> None:
        if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 1:
            raise ConfigError(f"imagenet_val: image_size must be an integer >= 1, got {image_size!r}")
        if resize is None:
            resize = round(image_size * 256 / 224)
        if not isinstance(resize, (int, np.integer)) or isinstance(resize, bool) or resize < image_size:
            raise ConfigError(f"imagenet_val: resize must be an integer >= image_size ({image_size}), got {resize!r}")
        self.name = name
        self.image_size = int(image_size)
        self.resize = int(resize)
        self.root = Path(root)
        self.labels_file = Path(labels_file)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such directory; {LAYOUT}")

        if class_index is not None:
            classes = read_class_index(class_index)
            self.wnids: list[str] | None = [c[0] for c in classes]
            self.class_names: list[str] | None = [c[1] for c in classes]
            self.num_classes = len(classes)
        else:
            self.wnids = self.class_names = None
            self.num_classes = 1000
        listed = read_label_file(self.labels_file, self.num_classes)

        present = sorted(e.name for e in os.scandir(self.root) if e.is_file() and IMAGE_NAME.match(e.name))
        if not present:
            raise DatasetError(f"{self.root}: no ILSVRC2012_val_*.JPEG files; {LAYOUT}")
        self.files: list[str] = [f for f in present if f in listed]
        #: images in ``root`` that the label file does not list (not used)
        self.skipped: int = len(present) - len(self.files)
        #: label-file entries whose image is not in ``root`` (not used)
        self.missing: int = len(listed) - len(self.files)
        if not self.files:
            raise DatasetError(
                f"{self.root}: none of its {len(present)} images is listed in {self.labels_file}; {LAYOUT}"
            )
        self.labels = np.array([listed[f] for f in self.files], dtype=np.int64)
        self.labels.setflags(write=False)
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], split: str) -> ImageNetVal:
        """Build from an ``imagenet_val`` dataset spec (keys in :data:`SPEC_KEYS`); "eval" only."""
        check_spec_keys(spec, SPEC_KEYS)
        if split != "eval":
            raise DatasetError(
                f"imagenet_val has only an 'eval' split (the ImageNet validation set), not {split!r}; "
                "give the dataset a 'train' spec to train on other data"
            )
        for key in ("root", "labels_file"):
            if not spec.get(key):
                raise ConfigError(f"datasets: kind 'imagenet_val' needs {key!r}")
        kwargs = {k: spec[k] for k in ("image_size", "resize") if spec.get(k) is not None}
        return cls(spec["root"], spec["labels_file"], spec.get("class_index"),
                   name=str(spec.get("name", "imagenet_val")), **kwargs)

    def load(self, index: int) -> torch.Tensor:
        """The preprocessed image of one item, float32 (3, image_size, image_size)."""
        path = self.root / self.files[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size
                short, long = (w, h) if w <= h else (h, w)
                new_long = int(self.resize * long / short)
                size = (self.resize, new_long) if w <= h else (new_long, self.resize)
                img = img.resize(size, Image.Resampling.BILINEAR)
                w, h = img.size
                top = int(round((h - self.image_size) / 2.0))
                left = int(round((w - self.image_size) / 2.0))
                img = img.crop((left, top, left + self.image_size, top + self.image_size))
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{path}: cannot read image ({exc})") from None
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return (x - self._mean) / self._std

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        idx = self._check_indices(indices)
        out = torch.empty((len(idx), 3, self.image_size, self.image_size), dtype=torch.float32)
        for j, i in enumerate(idx):
            out[j] = self.load(int(i))
        return out
