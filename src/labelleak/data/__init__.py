"""Image datasets (synthetic or the ImageNet validation folder) and seeded batch sampling.

* :mod:`labelleak.data.base`: the dataset contract; :mod:`labelleak.data.build`: :func:`build_dataset` (spec -> dataset).
* :mod:`labelleak.data.synthetic`: :class:`SyntheticImages`, generated on demand, no download.
* :mod:`labelleak.data.imagenet`: :class:`ImageNetVal`, read from a folder.
* :mod:`labelleak.data.sampling`: which items form each attacked update, saved as index lists.
"""

import importlib

#: name -> submodule; imported on first use (PEP 562), so ``labelleak.data.wordpiece`` or the workflow's
#: constants do not pull in torch through ``labelleak.data.base``.
_HOME = {
    "BUILDERS": "build", "ImageDataset": "base", "build_dataset": "build",
    "ImageNetVal": "imagenet", "read_class_index": "imagenet", "read_label_file": "imagenet",
    "COMPOSITIONS": "sampling", "SamplingError": "sampling", "load_batches": "sampling", "sample_batches": "sampling",
    "save_batches": "sampling", "SyntheticImages": "synthetic",
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'labelleak.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"labelleak.data.{_HOME[name]}"), name)


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
