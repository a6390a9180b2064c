"""Image datasets (synthetic or the ImageNet validation folder) and seeded batch sampling.

* :mod:`labelleak.data.base`: the dataset contract and :func:`build_dataset` (spec -> dataset).
* :mod:`labelleak.data.synthetic`: :class:`SyntheticImages`, generated on demand, no download.
* :mod:`labelleak.data.imagenet`: :class:`ImageNetVal`, read from a folder.
* :mod:`labelleak.data.sampling`: which items form each attacked update, saved as index lists.
"""

from labelleak.data.base import BUILDERS, ImageDataset, build_dataset
from labelleak.data.imagenet import ImageNetVal, read_class_index, read_label_file
from labelleak.data.sampling import COMPOSITIONS, SamplingError, load_batches, sample_batches, save_batches
from labelleak.data.synthetic import SyntheticImages

__all__ = [
    "BUILDERS",
    "COMPOSITIONS",
    "ImageDataset",
    "ImageNetVal",
    "SamplingError",
    "SyntheticImages",
    "build_dataset",
    "load_batches",
    "read_class_index",
    "read_label_file",
    "sample_batches",
    "save_batches",
]
