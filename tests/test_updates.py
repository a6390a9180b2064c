"""The update file contract and the gradient facts every attack relies on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet, make_update

from labelleak.errors import UpdateFileError
from labelleak.io import read_json
from labelleak.jobs import attack
from labelleak.updates.compute import projection_update
from labelleak.updates.format import (
    Observation,
    load_ground_truth,
    load_observation,
    load_update,
    save_truth,
    save_update,
)


def test_one_step_update_is_HtG_over_N():
    """Autograd's last-layer gradient equals H^T G / N with G = softmax(z) - onehot(y) (paper eq. 2)."""
    torch.manual_seed(1)
    model = TinyNet(activation="tanh").double()
    x, y = torch.randn(6, 32, dtype=torch.float64), torch.tensor([0, 3, 3, 9, 12, 49])
    upd = projection_update(model, [(x, y)])
    with torch.no_grad():
        H = model.features(x)
        G = F.softmax(model(x), dim=1) - F.one_hot(y, 50).double()
    np.testing.assert_allclose(upd.dW, (H.T @ G / len(y)).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(upd.db, G.mean(0).numpy(), rtol=1e-5, atol=1e-7)
    # each row of G: exactly one negative entry, at the label; rows sum to zero -> columns of dW sum to zero
    assert ((G < 0).sum(1) == 1).all() and (G.argmin(1) == y).all()
    np.testing.assert_allclose(upd.dW.sum(1), 0, atol=1e-6)


def test_k_step_update_is_scaled_weight_difference_and_sum_of_step_gradients():
    model, batches, upd = make_update(labels=(1, 2, 3, 4), steps=4, lr=0.5)
    W0 = model.head.weight.detach().clone()
    # the model itself is untouched
    assert torch.equal(model.head.weight, W0)
    # replay by hand: plain SGD on all parameters, summing the head gradients at each step
    import copy

    m = copy.deepcopy(model)
    total = torch.zeros_like(W0)
    for x, y in batches:
        m.zero_grad()
        F.cross_entropy(m(x), y).backward()
        total += m.head.weight.grad
        with torch.no_grad():
            for p in m.parameters():
                p -= 0.5 * p.grad
    np.testing.assert_allclose(upd.dW, total.T.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(upd.W, W0.T.numpy())
    np.testing.assert_allclose(upd.dW, ((W0 - m.head.weight.detach()) / 0.5).T.numpy(), rtol=1e-4, atol=1e-6)


def test_chunked_forward_gives_the_same_update():
    torch.manual_seed(0)
    model = TinyNet()
    x, y = torch.randn(10, 32), torch.randint(0, 50, (10,))
    whole = projection_update(model, [(x, y)])
    chunked = projection_update(model, [(x, y)], chunk_size=3)
    np.testing.assert_allclose(whole.dW, chunked.dW, rtol=1e-5, atol=1e-7)


def test_round_trip_and_observation_split(tmp_path):
    _, _, upd = make_update()
    path = tmp_path / "u.npz"
    save_update(path, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=4, steps=1, labels=[1, 7, 7, 20],
                meta={"model": "tiny"})
    obs, truth = load_update(path)
    np.testing.assert_array_equal(obs.dW, upd.dW)
    assert obs.batch_size == 4 and obs.steps == 1 and obs.meta == {"model": "tiny"}
    assert truth.label_set == {1, 7, 20} and truth.counts == {1: 1, 7: 2, 20: 1}
    assert load_ground_truth(path).labels.tolist() == [1, 7, 7, 20]
    # the attacker's view has no field that could carry labels
    assert "labels" not in {f.name for f in dataclasses.fields(Observation)}
    assert not any("label" in k for k in load_observation(path).meta)


def test_attack_cannot_reach_ground_truth(tmp_path, update_file):
    """Same update, different stored labels: every attack's output is identical."""
    from labelleak.attacks import registry

    path, _ = update_file()
    obs, truth = load_update(path)
    forged = tmp_path / "forged.npz"
    save_update(forged, obs.dW, db=obs.db, W=obs.W, b=obs.b, batch_size=obs.batch_size, steps=obs.steps,
                labels=np.zeros_like(truth.labels), meta=obs.meta)
    truth_file = tmp_path / "truth.json"
    save_truth(truth_file, truth.labels, obs.num_classes)  # an oracle method's truth file (the rule's input)
    cfg = {"attacks": {}}
    for method in registry():
        attack.attack(cfg, method, path, tmp_path / f"{method}_a.json", truths=[truth_file])
        attack.attack(cfg, method, forged, tmp_path / f"{method}_b.json", truths=[truth_file])
        a, b = read_json(tmp_path / f"{method}_a.json"), read_json(tmp_path / f"{method}_b.json")
        assert a["labels"] == b["labels"] and a["status"] == b["status"]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"dW": np.zeros(5, np.float32)}, "2-D"),
        ({"dW": np.zeros((4, 5), np.float32), "db": np.zeros(4, np.float32)}, "'db' must have shape (5,)"),
        ({"dW": np.full((4, 5), np.nan, np.float32)}, "NaN or Inf"),
        ({"dW": np.zeros((4, 5), np.float32), "W": np.full((4, 5), np.inf)}, "NaN or Inf"),
        ({"dW": np.zeros((4, 5), np.int32)}, "float"),
        ({"db": np.zeros(5, np.float32)}, "missing required array 'dW'"),
        ({"dW": np.zeros((4, 5), np.float32), "labels": np.array([0, 7])}, "labels"),
        ({"dW": np.zeros((4, 5), np.float32), "batch_size": np.array(0)}, "batch_size"),
    ],
)
def test_loader_rejects_bad_files(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UpdateFileError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_update(path)
    assert "\n" not in str(err.value)


def test_loader_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UpdateFileError, match="no such update file"):
        load_update(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(UpdateFileError, match="not a readable"):
        load_update(corrupt)
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, dW=np.ones((50, 50), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(UpdateFileError):
        load_update(truncated)


def test_save_refuses_bad_arrays_and_leaves_no_file(tmp_path):
    path = tmp_path / "u.npz"
    with pytest.raises(UpdateFileError):
        save_update(path, np.full((3, 4), np.nan, np.float32))
    assert list(tmp_path.iterdir()) == []
