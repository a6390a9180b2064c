"""MNIST (IDX files, gzip or not) and CIFAR-10/100 (python pickle batches) loaders."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from labelleak.data import build_dataset
from labelleak.data.mnist import read_idx
from labelleak.errors import DatasetError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def write_idx(path: Path, arr: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx_round_trip_and_splits(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    assert (read_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}") == images).all()
    spec = {"kind": "mnist", "root": str(tmp_path), "eval_size": 20}
    ev, tr = build_dataset(spec, "eval"), build_dataset(spec, "train")
    assert (len(ev), len(tr), ev.num_classes) == (20, 30, 10)  # only t10k: disjoint split of it
    assert (ev.labels == labels[30:]).all() and (tr.labels == labels[:30]).all()
    x = ev.images([0, 5])
    expected = (images[30] / 255.0 - 0.1307) / 0.3081
    assert x.shape == (2, 1, 28, 28) and np.allclose(x[0, 0].numpy(), expected, atol=1e-5)
    assert build_dataset({**spec, "channels": 3}, "eval").images([1]).shape == (1, 3, 28, 28)


def test_mnist_errors(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 12 + b"\x01")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="bad magic|header"):
        build_dataset({"kind": "mnist", "root": str(tmp_path)}, "eval")
    with pytest.raises(DatasetError, match="no such directory"):
        build_dataset({"kind": "mnist", "root": str(tmp_path / "nope")}, "eval")


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist not present")
def test_real_mnist_test_set():
    ds = build_dataset({"kind": "mnist", "root": str(SHARED_MNIST)}, "eval")
    assert len(ds) == 2000 and set(np.unique(ds.labels)) == set(range(10))
    x = ds.images(range(200))
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # MNIST's own normalisation


def write_cifar(root: Path, variant: str, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(1)
    root.mkdir()
    key, classes, names = ((b"labels", 10, ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                            "data_batch_5", "test_batch"])
                           if variant == "cifar10" else (b"fine_labels", 100, ["train", "test"]))
    for name in names:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, size=n).tolist()
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": data, key: labels}, fh)
    return data  # of the test file


@pytest.mark.parametrize(("variant", "classes", "train_items"), [("cifar10", 10, 60), ("cifar100", 100, 12)])
def test_cifar_pickle_batches(tmp_path, variant, classes, train_items):
    data = write_cifar(tmp_path / variant, variant)
    spec = {"kind": "cifar", "root": str(tmp_path / variant)}
    ev, tr = build_dataset(spec, "eval"), build_dataset(spec, "train")
    assert (ev.num_classes, len(ev), len(tr)) == (classes, 12, train_items)
    x = ev.images([3])
    red = data[3, :1024].reshape(32, 32) / 255.0  # channel-major rows: first 1024 bytes are red
    assert x.shape == (1, 3, 32, 32)
    assert np.allclose(x[0, 0].numpy() * ev._std[0, 0, 0].item() + ev._mean[0, 0, 0].item(), red, atol=1e-5)


def test_cifar_errors(tmp_path):
    with pytest.raises(DatasetError, match="no test_batch"):
        build_dataset({"kind": "cifar", "root": str(tmp_path)}, "eval")
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a readable"):
        build_dataset({"kind": "cifar", "root": str(tmp_path)}, "eval")
