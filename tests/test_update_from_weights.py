"""``labelleak update``: an update file from a client's weights before/after, and RLG on it.

The end-to-end cases run a real Flower ``NumPyClient`` in process (``client.fit`` called directly,
no server): the global weights it is sent and the weights it returns are saved as named arrays,
turned into an update file by ``labelleak update`` and attacked by ``labelleak reveal --method rlg``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.cli import main
from labelleak.updates.format import load_update
from labelleak.updates.from_weights import load_weights, projection_layer, update_from_weights

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
C, N = 100, 8  # classes of the head, samples in the client's batch (distinct labels)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


class TinyCNN(nn.Module):
    """conv -> relu -> pool -> flatten -> Linear(d, C) named ``fc``: d = 4 * 6 * 6 = 144 on 28x28."""

    def __init__(self, num_classes: int = C):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5, stride=2)
        self.fc = nn.Linear(144, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv1(x)), 2), 1))


def make_client(x, y, seed=0):
    """A Flower NumPyClient over one batch; NDArrays in state_dict order (names: ``client.names``)."""
    from flwr.client import NumPyClient

    class Client(NumPyClient):
        def __init__(self):
            torch.manual_seed(seed)
            self.model = TinyCNN()
            self.names = list(self.model.state_dict())

        def get_parameters(self, config):
            return [v.detach().cpu().numpy().copy() for v in self.model.state_dict().values()]

        def set_parameters(self, parameters):
            self.model.load_state_dict({k: torch.as_tensor(v) for k, v in zip(self.names, parameters)})

        def fit(self, parameters, config):
            self.set_parameters(parameters)
            opt = torch.optim.SGD(self.model.parameters(), lr=config["lr"], momentum=config["momentum"])
            for _ in range(int(config["steps"])):
                opt.zero_grad()
                F.cross_entropy(self.model(x), y).backward()
                opt.step()
            return self.get_parameters({}), len(y), {}

    return Client()


def random_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(C, generator=g)[:N]
    return torch.randn(N, 1, 28, 28, generator=g), y


def mnist_batch():
    """Real digits: the first item of 8 distinct digit classes (labels are the digits, head C = 100)."""
    from labelleak.data import build_dataset

    ds = build_dataset({"kind": "mnist", "root": str(SHARED_MNIST)}, "eval")
    idx = [int(np.flatnonzero(ds.labels == k)[0]) for k in range(N)]
    return ds.images(idx), torch.as_tensor(ds.labels[idx], dtype=torch.long)


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def fit_and_save(tmp_path, batch, steps, momentum, lr=0.05, fmt="npz"):
    """One Flower round: save the global weights sent and the weights returned, as ``fmt``."""
    x, y = batch
    client = make_client(x, y)
    sent = client.get_parameters({})
    returned, n, _ = client.fit([a.copy() for a in sent], {"lr": lr, "momentum": momentum, "steps": steps})
    assert n == N
    paths = []
    for tag, arrays in (("before", sent), ("after", returned)):
        named = dict(zip(client.names, arrays))
        path = tmp_path / f"{tag}.{fmt}"
        if fmt == "npz":
            np.savez(path, **named)
        elif fmt == "pt":
            torch.save({k: torch.as_tensor(v) for k, v in named.items()}, path)
        else:
            from safetensors.numpy import save_file

            save_file(named, str(path))
        paths.append(path)
    return paths, sorted(int(v) for v in y)


@pytest.mark.parametrize("steps,momentum", [(1, 0.0), (1, 0.9), (3, 0.0), (3, 0.9)])
@pytest.mark.parametrize("data", ["random", "mnist"])
def test_flower_client_update_reveals_the_exact_label_set(tmp_path, capsys, request, steps, momentum, data):
    pytest.importorskip("flwr")
    if data == "mnist" and not SHARED_MNIST.is_dir():
        pytest.skip("../shared/data/mnist not present")
    batch = random_batch() if data == "random" else mnist_batch()
    (before, after), truth = fit_and_save(tmp_path, batch, steps, momentum)
    out = tmp_path / "update.npz"
    code, stdout, err = run_cli(capsys, "update", "--before", before, "--after", after, "--layer", "fc",
                                "--lr", 0.05, "--batch-size", N, "--steps", steps, "-o", out)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["dW"] == [144, C] and summary["layout"] == "transposed from torch (C, d)"
    obs, _ = load_update(out)
    assert (obs.batch_size, obs.steps, obs.meta["lr"]) == (N, steps, 0.05)
    # the rank estimate: clear for one step; over K steps the features drift and the gap between
    # rank N and K*N can fall below RLG's margin (exit 3), so it is reported, not asserted
    code, stdout, err = run_cli(capsys, "reveal", "--method", "rlg", out)
    estimate = json.loads(stdout) if code == 0 else None
    if request.config.getoption("capture") == "no":  # pytest -s: show the measured margins
        with capsys.disabled():
            print(f"\n{data} steps={steps} momentum={momentum}: estimate " + (
                f"rank {estimate['rank']['rank']} margin {estimate['rank']['margin']:.3g} "
                f"{'exact' if estimate['labels'] == truth else estimate['labels']}" if estimate else err.strip()))
    if steps == 1:
        assert code == 0, err
        assert estimate["labels"] == truth and estimate["num_labels"] == N and estimate["rank"]["margin"] > 1e3
    else:  # S = batch_size * steps, both in the file: what an attacker reading it knows (the paper's gt_k)
        S = obs.batch_size * obs.steps
        code, stdout, err = run_cli(capsys, "reveal", "--method", "rlg", "--num-labels", S, out)
        assert code == 0, err
        assert json.loads(stdout)["labels"] == truth


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_every_format_gives_the_same_update(tmp_path, capsys, fmt):
    pytest.importorskip("flwr")
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    (tmp_path / "npz").mkdir()
    (npz0, npz1), _ = fit_and_save(tmp_path / "npz", random_batch(), 3, 0.9)
    (f0, f1), _ = fit_and_save(tmp_path, random_batch(), 3, 0.9, fmt=fmt)
    ref, other = update_from_weights(npz0, npz1, "fc", lr=0.05), update_from_weights(f0, f1, "fc", lr=0.05)
    for name in ("dW", "db", "W", "b"):
        np.testing.assert_array_equal(getattr(ref, name), getattr(other, name))
    assert other.meta["before"] == f"before.{fmt}" and other.meta["after"] == f"after.{fmt}"


def _weights(tmp_path, tag, **arrays):
    path = tmp_path / f"{tag}.npz"
    np.savez(path, **arrays)
    return path


def test_sign_one_sgd_step_is_the_gradient(tmp_path):
    """(W0 - W1) / lr of one plain SGD step equals autograd's gradient of the mean loss, transposed."""
    torch.manual_seed(1)
    model, (x, y), lr = TinyCNN(), random_batch(1), 0.1
    W0 = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
    F.cross_entropy(model(x), y).backward()
    grad_W, grad_b = model.fc.weight.grad.double().numpy(), model.fc.bias.grad.double().numpy()
    torch.optim.SGD(model.parameters(), lr=lr).step()
    W1 = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
    obs = update_from_weights(W0, W1, "fc", lr=lr, batch_size=N, steps=1)
    assert obs.dW.dtype == np.float64 and obs.dW.shape == (144, C)
    np.testing.assert_allclose(obs.dW, grad_W.T, rtol=0, atol=1e-6)
    np.testing.assert_allclose(obs.db, grad_b, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(obs.W, W0["fc.weight"].T)  # the weights before, in (d, C)
    np.testing.assert_array_equal(obs.b, W0["fc.bias"])


def test_one_momentum_step_is_a_plain_step():
    """torch's SGD starts its momentum buffer at the gradient: momentum only shows from step 2 on."""
    pytest.importorskip("flwr")
    updates = []
    for momentum in (0.0, 0.9):
        client = make_client(*random_batch())
        sent = client.get_parameters({})
        returned = client.fit([a.copy() for a in sent], {"lr": 0.05, "momentum": momentum, "steps": 1})[0]
        updates.append(update_from_weights(dict(zip(client.names, sent)), dict(zip(client.names, returned)), "fc"))
    np.testing.assert_array_equal(updates[0].dW, updates[1].dW)
    assert updates[0].meta["before"] == "(in memory)"


def test_without_lr_the_scale_is_one(tmp_path, capsys):
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(C, 16)).astype(np.float32), rng.normal(size=C).astype(np.float32)
    w1, b1 = (w0 - 0.01 * rng.normal(size=w0.shape)).astype(np.float32), b0 - np.float32(0.01)
    before = _weights(tmp_path, "before", **{"fc.weight": w0, "fc.bias": b0})
    after = _weights(tmp_path, "after", **{"fc.weight": w1, "fc.bias": b1})
    out = tmp_path / "u.npz"
    code, stdout, err = run_cli(capsys, "update", "--before", before, "--after", after, "--layer", "fc", "-o", out)
    assert code == 0, err
    assert json.loads(stdout)["lr"] == "unscaled"
    obs, truth = load_update(out)
    assert truth is None and obs.batch_size is None and obs.steps is None
    np.testing.assert_array_equal(obs.dW, (w0.astype(np.float64) - w1.astype(np.float64)).T)
    assert obs.meta["lr"] == "unscaled" and obs.meta["layer"] == "fc"
    assert obs.meta["before"] == "before.npz" and obs.meta["after"] == "after.npz"
    scaled = update_from_weights(before, after, "fc", lr=0.5)
    np.testing.assert_allclose(scaled.dW, obs.dW / 0.5, rtol=1e-15)
    assert scaled.meta["lr"] == 0.5


def test_layouts_torch_transposed_keras_as_is():
    rng = np.random.default_rng(0)
    torch_w, bias = rng.normal(size=(C, 16)), rng.normal(size=C)
    W, b = projection_layer({"fc.weight": torch_w, "fc.bias": bias}, "fc")
    assert W.shape == (16, C) and np.array_equal(W, torch_w.T) and np.array_equal(b, bias)
    # a (d, C) array named .weight is taken as is when the bias length says C is its second axis
    assert np.array_equal(projection_layer({"fc.weight": torch_w.T, "fc.bias": bias}, "fc")[0], torch_w.T)
    # Keras kernels are (d, C): NAME.kernel and NAME/kernel
    for key in ("dense.kernel", "dense/kernel"):
        W, b = projection_layer({key: torch_w.T}, "dense")
        assert np.array_equal(W, torch_w.T) and b is None
    # no bias and square: the name decides (torch .weight is (C, d))
    square = rng.normal(size=(8, 8))
    assert np.array_equal(projection_layer({"fc.weight": square}, "fc")[0], square.T)
    # a torch Sequential names its layers by index
    seq = nn.Sequential(*[nn.Identity() for _ in range(9)], nn.Linear(16, C))
    W, b = projection_layer({k: v.detach().numpy() for k, v in seq.state_dict().items()}, "9")
    assert np.array_equal(W, seq[9].weight.detach().numpy().T)


def test_pipeline_checkpoint_is_unwrapped(tmp_path):
    model = TinyCNN()
    torch.save({"state_dict": model.state_dict(), "arch": "tiny"}, tmp_path / "ckpt.pt")
    weights = load_weights(tmp_path / "ckpt.pt")
    assert set(weights) == {"conv1.weight", "conv1.bias", "fc.weight", "fc.bias"}


def _bad_cases(tmp_path):
    """(name, BEFORE, AFTER, layer, extra args, text the one error line must contain)."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(C, 16)).astype(np.float32), np.zeros(C, np.float32)
    conv = rng.normal(size=(4, 1, 5, 5)).astype(np.float32)
    good = _weights(tmp_path, "good", **{"fc.weight": w, "fc.bias": b, "conv1.weight": conv})
    nan_w, inf_b = w.copy(), b.copy()
    nan_w[3, 4], inf_b[7] = np.nan, np.inf
    (tmp_path / "w.h5").write_bytes(b"\x89HDF")
    (tmp_path / "corrupt.pt").write_bytes(b"not a zip")
    return [
        ("missing", tmp_path / "missing.npz", good, "fc", [], "no such weights file"),
        ("extension", tmp_path / "w.h5", good, "fc", [], "unknown weights format '.h5'"),
        ("corrupt", tmp_path / "corrupt.pt", good, "fc", [], "not a readable .pt weights file"),
        ("layer", good, good, "fcx", [], "no layer 'fcx'; layers with a weight: conv1, fc"),
        ("not 2-D", good, good, "conv1", [], "not the 2-D weight"),
        ("shape", good, _weights(tmp_path, "other", **{"fc.weight": w[:50], "fc.bias": b[:50]}), "fc", [],
         "differs in shape"),
        ("int", good, _weights(tmp_path, "int", **{"fc.weight": w.astype(np.int64), "fc.bias": b}), "fc", [],
         "not a floating-point tensor"),
        ("lr 0", good, good, "fc", ["--lr", "0"], "lr must be a positive number"),
        ("lr < 0", good, good, "fc", ["--lr", "-0.1"], "lr must be a positive number"),
        ("nan", good, _weights(tmp_path, "nan", **{"fc.weight": nan_w, "fc.bias": b}), "fc", [], "NaN or Inf"),
        ("inf", _weights(tmp_path, "inf", **{"fc.weight": w, "fc.bias": inf_b}), good, "fc", [], "NaN or Inf"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    name, before, after, layer, extra, text = _bad_cases(tmp_path)[case]
    out = tmp_path / "u.npz"
    code, stdout, err = run_cli(capsys, "update", "--before", before, "--after", after, "--layer", layer,
                                *extra, "-o", out)
    assert code == 2 and stdout == "", name
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and text in err, (name, err)
    assert not out.exists()
