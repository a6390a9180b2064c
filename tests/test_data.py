"""Data: synthetic image set, ImageNet validation folder reader, seeded batch sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labelleak.data import (
    BUILDERS,
    COMPOSITIONS,
    ImageNetVal,
    SamplingError,
    SyntheticImages,
    build_dataset,
    load_batches,
    read_class_index,
    read_label_file,
    sample_batches,
    save_batches,
)
from labelleak.errors import ConfigError, DatasetError, LabelleakError

SHARED = Path("/work/shared/data/imagenet")


# ----------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synth() -> SyntheticImages:
    return SyntheticImages(num_classes=1000, image_size=32, seed=0, split="train")


def test_synthetic_deterministic_in_any_order(synth):
    a = synth.images([5, 17, 999, 5])
    b = synth.images([999])
    c = synth.images([17, 5])
    assert torch.equal(a[0], a[3])
    assert torch.equal(a[2], b[0])
    assert torch.equal(a[1], c[0]) and torch.equal(a[0], c[1])
    again = SyntheticImages(num_classes=1000, image_size=32, seed=0, split="train")
    assert np.array_equal(again.labels, synth.labels)
    assert torch.equal(again.images([5, 17, 999]), a[:3])


def test_synthetic_seeds_and_splits_differ(synth):
    other_seed = SyntheticImages(num_classes=1000, image_size=32, seed=1, split="train")
    assert not np.array_equal(other_seed.labels, synth.labels)
    assert not torch.allclose(other_seed.images([0]), synth.images([0]))
    ev = SyntheticImages(num_classes=1000, image_size=32, seed=0, split="eval")
    assert not np.array_equal(ev.labels[:100], synth.labels[:100])
    # same item index, same label -> still a different image in the other split
    i = int(np.flatnonzero(ev.labels[: len(ev)] == synth.labels[: len(ev)])[0])
    assert not torch.allclose(ev.images([i]), synth.images([i]))
    # but the class prototypes are shared by the splits (same classes to train and evaluate on)
    assert torch.equal(ev.prototypes([3, 4]), synth.prototypes([3, 4]))


def test_synthetic_shapes_dtypes_normalization(synth):
    x = synth.images(np.arange(1500))
    assert x.shape == (1500, 3, 32, 32) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    assert (mean.abs() < 0.1).all(), mean
    assert ((std > 0.85) & (std < 1.15)).all(), std
    assert synth.images([]).shape == (0, 3, 32, 32)
    big = SyntheticImages(num_classes=10, image_size=64, size=20)
    assert big.images([0, 1]).shape == (2, 3, 64, 64)
    with pytest.raises(IndexError):
        synth.images([len(synth)])
    with pytest.raises(IndexError):
        synth.images([-1])


def test_synthetic_labels_balanced_and_shuffled(synth):
    assert synth.labels.dtype == np.int64 and synth.labels.shape == (len(synth),)
    assert len(synth) == 100 * 1000  # default train size: 100 per class
    counts = np.bincount(synth.labels, minlength=1000)
    assert counts.min() == counts.max() == 100
    # not class-sorted and not the cyclic i % C pattern
    assert not np.all(np.diff(synth.labels) >= 0)
    assert not np.array_equal(synth.labels[:1000], np.arange(1000))
    odd = SyntheticImages(num_classes=7, size=52, split="eval")
    counts = np.bincount(odd.labels, minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 52
    assert len(SyntheticImages(num_classes=1000, split="eval")) == 50 * 1000


def test_synthetic_classes_separable():
    """Nearest class mean, learned on the train split, classifies the eval split of 20 classes."""
    train = SyntheticImages(num_classes=20, image_size=32, size=20 * 10, seed=3, split="train")
    ev = SyntheticImages(num_classes=20, image_size=32, size=20 * 10, seed=3, split="eval")
    xtr = train.images(np.arange(len(train))).flatten(1)
    xev = ev.images(np.arange(len(ev))).flatten(1)
    means = torch.stack([xtr[torch.from_numpy(train.labels == k)].mean(0) for k in range(20)])
    pred = torch.cdist(xev, means).argmin(1).numpy()
    acc = float((pred == ev.labels).mean())
    assert acc > 0.9, acc
    # and the class signal is a real one: shuffled training labels give chance-level accuracy
    perm = np.random.default_rng(0).permutation(train.labels)
    means = torch.stack([xtr[torch.from_numpy(perm == k)].mean(0) for k in range(20)])
    chance = float((torch.cdist(xev, means).argmin(1).numpy() == ev.labels).mean())
    assert chance < 0.3, chance


def test_synthetic_1000_prototypes_distinct(synth):
    p = synth.prototypes().flatten(1)
    p = p / p.norm(dim=1, keepdim=True)
    cos = p @ p.T
    cos.fill_diagonal_(0)
    assert cos.abs().max() < 0.6, cos.abs().max()


def test_synthetic_bad_arguments():
    with pytest.raises(ConfigError):
        SyntheticImages(num_classes=1)
    with pytest.raises(ConfigError):
        SyntheticImages(split="test")
    with pytest.raises(ConfigError):
        SyntheticImages(noise=-1.0)


# ----------------------------------------------------------------------------- build_dataset


def test_build_dataset_registry():
    assert set(BUILDERS) == {"synthetic_images", "imagenet_val", "mnist", "cifar"}
    spec = {"kind": "synthetic_images", "num_classes": 10, "image_size": 32, "train_size": 30, "eval_size": 20,
            "noise": 0.3}
    tr, ev = build_dataset(spec, "train", seed=4), build_dataset(spec, "eval", seed=4)
    assert (len(tr), len(ev), tr.num_classes, tr.seed, tr.noise) == (30, 20, 10, 4, 0.3)
    assert ev.split == "eval"
    with pytest.raises(ConfigError, match="unknown kind"):
        build_dataset({"kind": "emnist"}, "eval")
    with pytest.raises(DatasetError, match="split"):
        build_dataset(spec, "test")
    with pytest.raises(ConfigError, match="root"):
        build_dataset({**spec, "root": "/x"}, "eval")


# ----------------------------------------------------------------------------- ImageNet folder


def _write_imagenet(root: Path) -> tuple[Path, Path]:
    """4 tiny JPEGs (one grayscale, one CMYK) + an unlabeled one, a label file, a class index."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGB", "CMYK", "RGB"]
    for i, mode in enumerate(modes, start=1):
        arr = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
        img = Image.fromarray(arr, "RGB")
        if mode != "RGB":
            img = img.convert(mode)
        if i == 3:
            img = img.transpose(Image.Transpose.ROTATE_90)  # portrait 30x40
        img.save(root / f"ILSVRC2012_val_{i:08d}.JPEG", quality=90)
    (root / "README.txt").write_text("not an image\n")
    labels = root.parent / "val_labels.txt"
    # image 5 is not listed; image 6 is listed but absent; order in the file is not sorted
    labels.write_text(
        "ILSVRC2012_val_00000002.JPEG 1\nILSVRC2012_val_00000001.JPEG 2\n\n"
        "ILSVRC2012_val_00000003.JPEG 0\nILSVRC2012_val_00000004.JPEG 2\nILSVRC2012_val_00000006.JPEG 1\n"
    )
    index = root.parent / "class_index.json"
    index.write_text(json.dumps({"0": ["n0", "zero"], "1": ["n1", "one"], "2": ["n2", "two"]}))
    return labels, index


def test_imagenet_folder(tmp_path):
    labels, index = _write_imagenet(tmp_path / "val")
    ds = ImageNetVal(tmp_path / "val", labels, class_index=index, image_size=32)
    assert ds.num_classes == 3 and ds.class_names == ["zero", "one", "two"] and ds.wnids == ["n0", "n1", "n2"]
    assert ds.files == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3, 4)]
    assert ds.labels.tolist() == [2, 1, 0, 2] and ds.labels.dtype == np.int64
    assert (ds.skipped, ds.missing, len(ds)) == (1, 1, 4)
    assert ds.resize == 37  # round(32 * 256 / 224)
    x = ds.images([3, 0, 1, 2])
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()
    # uniform random pixels, normalized with ImageNet mean/std: values inside the normalized range
    lo = (0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    hi = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert (x >= lo[:, None, None] - 1e-5).all() and (x <= hi[:, None, None] + 1e-5).all()
    # grayscale image (item 1) has three equal channels after un-normalizing
    g = x[2] * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    assert torch.allclose(g[0], g[1], atol=1e-5) and torch.allclose(g[1], g[2], atol=1e-5)
    assert torch.equal(ds.images([1])[0], x[2])
    # without a class index: 1000 classes, same labels
    assert ImageNetVal(tmp_path / "val", labels, image_size=32).num_classes == 1000


def test_imagenet_build_dataset(tmp_path):
    labels, index = _write_imagenet(tmp_path / "val")
    spec = {"kind": "imagenet_val", "root": str(tmp_path / "val"), "labels_file": str(labels),
            "class_index": str(index), "image_size": 32}
    ds = build_dataset(spec, "eval")
    assert isinstance(ds, ImageNetVal) and len(ds) == 4
    with pytest.raises(DatasetError, match="only an 'eval' split"):
        build_dataset(spec, "train")
    train = build_dataset({**spec, "train": {"kind": "synthetic_images", "num_classes": 3, "train_size": 9}}, "train")
    assert isinstance(train, SyntheticImages) and len(train) == 9


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_imagenet_errors(tmp_path):
    labels, index = _write_imagenet(tmp_path / "val")
    with pytest.raises(DatasetError) as e:
        ImageNetVal(tmp_path / "nope", labels)
    msg = _one_line(e.value)
    assert str(tmp_path / "nope") in msg and "ILSVRC2012_val_" in msg and "<class index>" in msg

    with pytest.raises(DatasetError) as e:
        ImageNetVal(tmp_path / "val", tmp_path / "missing.txt")
    msg = _one_line(e.value)
    assert str(tmp_path / "missing.txt") in msg and "label file" in msg

    bad = tmp_path / "bad.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG 2\nILSVRC2012_val_00000002.JPEG two\n")
    with pytest.raises(DatasetError) as e:
        ImageNetVal(tmp_path / "val", bad)
    msg = _one_line(e.value)
    assert str(bad) in msg and "line 2" in msg

    # devkit ground truth format (one 1-based id per line) is rejected, not mis-read
    bad.write_text("490\n361\n")
    with pytest.raises(DatasetError, match="line 1"):
        ImageNetVal(tmp_path / "val", bad)

    # label out of range for the class index
    bad.write_text("ILSVRC2012_val_00000001.JPEG 3\n")
    with pytest.raises(DatasetError, match="line 1"):
        ImageNetVal(tmp_path / "val", bad, class_index=index)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as e:
        ImageNetVal(empty, labels)
    assert str(empty) in _one_line(e.value)

    # images present but none listed
    other = tmp_path / "other.txt"
    other.write_text("ILSVRC2012_val_00000099.JPEG 1\n")
    with pytest.raises(DatasetError, match="none of its"):
        ImageNetVal(tmp_path / "val", other)

    # a corrupt image is reported when read, naming the file
    (tmp_path / "val" / "ILSVRC2012_val_00000002.JPEG").write_bytes(b"not a jpeg")
    ds = ImageNetVal(tmp_path / "val", labels, image_size=32)
    with pytest.raises(DatasetError, match="ILSVRC2012_val_00000002.JPEG"):
        ds.images([1])
    assert issubclass(DatasetError, LabelleakError)


@pytest.mark.skipif(not (SHARED / "ILSVRC2012_val_labels_caffe.txt").is_file(), reason="shared label file absent")
def test_real_label_file():
    labels = read_label_file(SHARED / "ILSVRC2012_val_labels_caffe.txt")
    assert len(labels) == 50_000
    counts = np.bincount(np.fromiter(labels.values(), dtype=np.int64), minlength=1000)
    assert counts.shape == (1000,) and (counts == 50).all()
    assert labels["ILSVRC2012_val_00000001.JPEG"] == 65
    if (SHARED / "imagenet_class_index.json").is_file():
        classes = read_class_index(SHARED / "imagenet_class_index.json")
        assert len(classes) == 1000 and classes[0] == ("n01440764", "tench")
        assert [c[0] for c in classes] == sorted(c[0] for c in classes)  # sorted-wnid order


# ----------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def imagenet_like_labels() -> np.ndarray:
    """50 items per class of 1000 classes, stored class-sorted (the worst case for naive sampling)."""
    return np.repeat(np.arange(1000, dtype=np.int64), 50)


@pytest.mark.parametrize("composition", sorted(COMPOSITIONS))
def test_sampling_shapes_range_determinism(imagenet_like_labels, composition):
    labels = imagenet_like_labels
    b = sample_batches(labels, batch_size=8, steps=3, num_batches=5, composition=composition, seed=11)
    arr = np.array(b)
    assert arr.shape == (5, 3, 8)
    assert all(isinstance(i, int) for i in arr.ravel().tolist())
    assert arr.min() >= 0 and arr.max() < len(labels)
    for update in arr:
        assert len(set(update.ravel().tolist())) == update.size  # no item twice in an update
    assert sample_batches(labels, 8, 3, 5, composition, 11) == b
    assert sample_batches(labels, 8, 3, 5, composition, 12) != b
    # more batches keep the first ones; other (batch_size, steps) are drawn independently
    assert sample_batches(labels, 8, 3, 7, composition, 11)[:5] == b
    other = np.array(sample_batches(labels, 8, 1, 5, composition, 11))
    assert not np.array_equal(other[:, 0], arr[:, 0])


def test_sampling_unique_and_repeats(imagenet_like_labels):
    labels = imagenet_like_labels
    for update in np.array(sample_batches(labels, 16, 4, 20, "unique", 0)):
        lab = labels[update.ravel()]
        assert len(set(lab.tolist())) == 64
    for update in np.array(sample_batches(labels, 10, 1, 20, "repeats", 0)):
        lab = labels[update.ravel()]
        assert len(set(lab.tolist())) == 5  # ceil(10 / 2) distinct classes, so some repeated
    with pytest.raises(SamplingError, match="unique"):
        sample_batches(np.arange(10) % 5, 3, 2, 1, "unique", 0)
    with pytest.raises(SamplingError, match="repeats"):
        sample_batches(labels, 1, 1, 1, "repeats", 0)
    with pytest.raises(SamplingError, match="items"):
        sample_batches(np.array([0, 1, 2, 3]), 2, 1, 1, "repeats", 0)  # one item per class
    with pytest.raises(SamplingError, match="random"):
        sample_batches(np.array([0, 1, 2]), 4, 1, 1, "random", 0)
    with pytest.raises(SamplingError, match="unknown composition"):
        sample_batches(labels, 4, 1, 1, "sorted", 0)
    with pytest.raises(ValueError, match="batch_size"):  # SamplingError is a ValueError
        sample_batches(labels, 0, 1, 1, "random", 0)


def test_sampling_random_not_class_sorted(imagenet_like_labels):
    labels = imagenet_like_labels
    batches = np.array(sample_batches(labels, 32, 1, 200, "random", 5))[:, 0]
    lab = labels[batches]
    monotone = [bool(np.all(np.diff(row) >= 0)) for row in lab]
    assert not any(monotone)
    spread = lab.max(axis=1) - lab.min(axis=1)
    assert np.median(spread) > 500  # classes from all over the label range, not a consecutive block
    # repeated labels occur naturally (birthday problem: ~40% of 32-sample batches from 1000 classes)
    has_repeat = np.mean([len(set(row.tolist())) < 32 for row in lab])
    assert 0.2 < has_repeat < 0.7, has_repeat
    # every class can be drawn
    big = np.array(sample_batches(labels, 64, 1, 300, "random", 6))
    assert len(set(labels[big.ravel()].tolist())) > 990


def test_batches_file_round_trip(tmp_path, imagenet_like_labels):
    b = sample_batches(imagenet_like_labels, 4, 2, 3, "random", 1)
    meta = {"composition": "random", "seed": 1, "dataset": "imagenet_val", "note": "x"}
    path = tmp_path / "sub" / "batches.json"
    save_batches(path, b, meta)
    loaded, m = load_batches(path)
    assert loaded == b
    assert m == {**meta, "batch_size": 4, "steps": 2, "num_batches": 3}
    assert [p.name for p in path.parent.iterdir()] == ["batches.json"]  # no temp file left
    with pytest.raises(SamplingError, match="dataset"):
        save_batches(path, b, {"composition": "random", "seed": 1})
    with pytest.raises(SamplingError, match="batch_size"):
        save_batches(path, b, {**meta, "batch_size": 5})
    with pytest.raises(DatasetError, match="no such batch file"):
        load_batches(tmp_path / "none.json")
    path.write_text("{")
    with pytest.raises(DatasetError, match="JSON"):
        load_batches(path)
    path.write_text(json.dumps({"format": "labelleak.batches", "version": 1, "meta": {}, "batches": [[[1, 2]]]}))
    with pytest.raises(DatasetError, match="does not match"):
        load_batches(path)
