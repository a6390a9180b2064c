"""Federated training through Flower (``labelleak.federated.flower``): real NumPyClients, Flower's FedAvg.

Small real computations on a TinyNet (conftest): the strategy's aggregate is the sample-weighted mean of
what the clients return; a seed fixes every weight; the defense acts in the client; a client's returned
weights, written through the hook as an update file (labels in a separate truth file), give RLG the
exact label set; DP-SGD trains through Opacus and reports a finite epsilon.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TinyNet

from labelleak.attacks import run_attack
from labelleak.defenses.dpsgd import epsilon as rdp_epsilon
from labelleak.errors import LabelleakError
from labelleak.federated import (
    FedResult,
    flower_train,
    make_strategy,
    write_client_update,
)
from labelleak.updates.format import load_observation, load_truth, load_update
from labelleak.updates.from_weights import update_from_weights

C = 50  # classes of the TinyNet head


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def _data(n=120, classes=4, seed=0, d_in=32):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, d_in, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, d_in, generator=g), y


def _distinct(n, seed=0):
    """n items with n distinct labels out of C: every client batch has distinct labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 32, generator=g), torch.randperm(C, generator=g)[:n]


class Recorder:
    """An ``on_client_update`` hook that keeps everything it is given."""

    def __init__(self):
        self.calls = []

    def __call__(self, rnd, cid, before, after, labels, num_samples, local_steps):
        self.calls.append({"round": rnd, "cid": cid, "before": before, "after": after, "labels": labels,
                           "num_samples": num_samples, "steps": local_steps})


def tiny(classes=C):
    return lambda: TinyNet(num_classes=classes, activation="relu")


# --------------------------------------------------------------------------- the server: Flower's FedAvg
def test_flower_fedavg_aggregate_is_the_sample_weighted_mean():
    from flwr.common import (
        Code,
        FitRes,
        Status,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )

    rng = np.random.default_rng(0)
    shapes = [(5, 3), (3,), (2, 2, 2)]
    clients = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(3)]
    counts = [10, 30, 61]
    strategy = make_strategy([np.zeros(s, np.float32) for s in shapes], clients=3, lr=0.1)
    assert type(strategy).__name__ == "FedAvg"
    results = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(w), n, {"loss": 1.0}))
               for w, n in zip(clients, counts)]
    agg, metrics = strategy.aggregate_fit(1, results, [])
    for i, got in enumerate(parameters_to_ndarrays(agg)):
        want = np.average(np.stack([c[i] for c in clients]), axis=0, weights=counts)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert metrics == {"loss": 1.0}


@pytest.mark.parametrize("defense, server_lr", [("none", None), ("signsgd", 0.002)])
def test_one_round_is_the_weighted_mean_of_what_the_clients_returned(defense, server_lr):
    x, y = _data(n=103)  # 3 clients of 34, 34, 35 items: unequal weights
    hook = Recorder()
    res, final = flower_train(tiny(4), x, y, x, y, defense=defense, clients=3, rounds=1, local_steps=2,
                              batch_size=16, lr=0.1, server_lr=server_lr, seed=3, on_client_update=hook,
                              return_weights=True)
    assert [c["cid"] for c in hook.calls] == [0, 1, 2]
    assert sorted(c["num_samples"] for c in hook.calls) == [34, 34, 35]
    weights = [c["num_samples"] for c in hook.calls]
    before = hook.calls[0]["before"]
    for name in final:
        mean = np.average(np.stack([c["after"][name] for c in hook.calls]), axis=0, weights=weights)
        if server_lr is None:  # FedAvg: the weighted mean of the returned weights
            want = mean
        else:  # FedAvgM(server_learning_rate = server_lr / lr, momentum 0): w - server_lr * mean update
            want = before[name] - server_lr / 0.1 * (before[name] - mean)
        np.testing.assert_allclose(final[name], want, rtol=1e-5, atol=1e-6)
    assert 0.0 <= res.accuracy <= 1.0


def test_seeded_runs_give_identical_weights():
    x, y = _data()
    kw = {"clients": 3, "rounds": 3, "local_steps": 2, "batch_size": 16, "lr": 0.1, "return_weights": True}
    (a, wa), (b, wb) = (flower_train(tiny(4), x, y, x, y, seed=5, **kw) for _ in range(2))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    assert a.history == b.history and np.array_equal(a.correct, b.correct)
    _, wc = flower_train(tiny(4), x, y, x, y, seed=6, **kw)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)


def test_fed_result_learns_and_is_a_probability():
    x, y = _data(n=240)
    xt, yt = _data(n=200, seed=0)  # same centres
    res = flower_train(tiny(4), x, y, xt, yt, clients=4, rounds=8, local_steps=2, batch_size=16, lr=0.1,
                       seed=1, eval_every=2)
    assert isinstance(res, FedResult) and 0.0 <= res.accuracy <= 1.0 and res.epsilon is None
    assert res.correct.shape == (200,) and set(np.unique(res.correct)) <= {0.0, 1.0}
    assert len(res.history) == 4 and res.history[-1] == res.accuracy
    assert res.accuracy > 0.6  # chance 0.25
    assert res.seconds > 0


# --------------------------------------------------------------------------- the client: defenses
def test_signsgd_is_applied_in_the_client():
    x, y = _data()
    hook = Recorder()
    flower_train(tiny(4), x, y, x, y, defense="signsgd", clients=3, rounds=2, local_steps=3, batch_size=16,
                 lr=0.1, server_lr=0.001, seed=0, on_client_update=hook)
    assert len(hook.calls) == 6
    for call in hook.calls:
        for name, w0 in call["before"].items():
            u = (w0.astype(np.float64) - call["after"][name].astype(np.float64)) / 0.1
            np.testing.assert_allclose(np.abs(u)[np.abs(u) > 0.5], 1.0, atol=1e-5)  # +-1 ...
            assert np.all((np.abs(u) > 0.5) | (np.abs(u) < 1e-5))  # ... or 0 (sign of a zero gradient)
            assert (np.abs(u) > 0.5).mean() > 0.5
        obs = update_from_weights(call["before"], call["after"], "head", lr=0.1)
        assert np.allclose(np.abs(obs.dW[np.abs(obs.dW) > 0.5]), 1.0, atol=1e-5)


def test_dpsgd_through_opacus_reports_a_finite_epsilon():
    pytest.importorskip("opacus")
    x, y = _data(n=300)
    hook = Recorder()
    res = flower_train(tiny(4), x, y, x, y, defense="dpsgd-1.0-1.0", clients=3, rounds=4, local_steps=2,
                       batch_size=20, lr=0.1, seed=0, on_client_update=hook)
    # per client: Poisson rate 20 / 100, 4 x 2 steps; Opacus' RDP accountant = our epsilon()
    assert res.epsilon == pytest.approx(rdp_epsilon(1.0, 0.2, 8, 1e-5), rel=1e-9)
    assert 0 < res.epsilon < 100 and 0.0 <= res.accuracy <= 1.0
    assert all(len(c["labels"]) > 0 for c in hook.calls)  # Poisson batches: their labels, for the truth file
    again = flower_train(tiny(4), x, y, x, y, defense="dpsgd-1.0-1.0", clients=3, rounds=4, local_steps=2,
                         batch_size=20, lr=0.1, seed=0)
    assert np.array_equal(again.correct, res.correct)  # seeded noise and sampling
    none = flower_train(tiny(4), x, y, x, y, defense="dpsgd-1.0-0.0", clients=3, rounds=1, batch_size=20, lr=0.1)
    assert none.epsilon == float("inf")


# --------------------------------------------------------------------------- update files from the hook
def _write_all(tmp_path, calls, lr, batch_size):
    paths = []
    for c in calls:
        stem = tmp_path / f"r{c['round']}_c{c['cid']}"
        write_client_update(f"{stem}.npz", f"{stem}.truth.json", c["before"], c["after"], "head", lr, batch_size,
                            c["steps"], c["labels"], C, meta={"round": c["round"], "client": c["cid"],
                                                               "defense": "none", "model": "tinynet"})
        paths.append(stem)
    return paths


def test_fedsgd_client_updates_reveal_the_exact_label_set(tmp_path):
    """FedSGD (1 step), untrained model, distinct labels per client batch: RLG recovers every set exactly."""
    x, y = _distinct(32)
    hook = Recorder()
    flower_train(tiny(), x, y, x, y, clients=4, rounds=2, local_steps=1, batch_size=8, lr=0.1, seed=0,
                 on_client_update=hook)
    for stem in _write_all(tmp_path, hook.calls, 0.1, 8):
        _, embedded = load_update(f"{stem}.npz")
        assert embedded is None  # no labels in the update file
        assert "labels" not in np.load(f"{stem}.npz").files
        truth = load_truth(f"{stem}.truth.json")
        assert len(truth.labels) == 8 and len(truth.label_set) == 8
        record = run_attack("rlg", load_observation(f"{stem}.npz"))
        assert record["status"] == "ok"
        assert set(record["labels"]) == truth.label_set, (stem.name, record)
        assert record["num_labels"] == 8


@pytest.mark.parametrize("steps", [3])
def test_fedavg_client_updates_several_local_steps(tmp_path, request, steps):
    """K local steps of batch 8 from a shard of 24 (repeats across steps): RLG with S = N * K gets the set.

    The default rank estimate at the spectrum's gap is measured and shown with ``pytest -s``, not asserted
    beyond being a subset-or-n/a of sane size.
    """
    x, y = _distinct(48)  # 2 clients x 24 items, every label distinct
    hook = Recorder()
    flower_train(tiny(), x, y, x, y, clients=2, rounds=2, local_steps=steps, batch_size=8, lr=0.1, seed=0,
                 on_client_update=hook)
    exact_default, exact_given = 0, 0
    for stem in _write_all(tmp_path, hook.calls, 0.1, 8):
        truth = load_truth(f"{stem}.truth.json")
        obs = load_observation(f"{stem}.npz")
        assert (obs.batch_size, obs.steps) == (8, steps) and len(truth.labels) == 8 * steps
        given = run_attack("rlg", obs, num_labels=obs.batch_size * obs.steps)  # S = N * K: in the file
        default = run_attack("rlg", obs)
        exact_given += given["status"] == "ok" and set(given["labels"]) == truth.label_set
        exact_default += default["status"] == "ok" and set(default["labels"]) == truth.label_set
        if request.config.getoption("capture") == "no":
            print(f"\n{stem.name}: |set| {len(truth.label_set)}; default "
                  f"{default['status']} {default.get('num_labels')} "
                  f"{'exact' if default['status'] == 'ok' and set(default['labels']) == truth.label_set else ''}; "
                  f"S given {given.get('num_labels')} "
                  f"{'exact' if set(given['labels'] or []) == truth.label_set else given['labels']}")
    assert exact_given == len(hook.calls)


def test_write_client_update_keeps_labels_out_of_the_update(tmp_path):
    x, y = _distinct(16)
    hook = Recorder()
    flower_train(tiny(), x, y, x, y, clients=2, rounds=1, batch_size=8, lr=0.1, seed=0, on_client_update=hook)
    c = hook.calls[0]
    with pytest.raises(LabelleakError, match="truth file"):
        write_client_update(tmp_path / "u.npz", tmp_path / "t.json", c["before"], c["after"], "head", 0.1, 8, 1,
                            c["labels"], C, meta={"labels": c["labels"].tolist()})
    assert not (tmp_path / "u.npz").exists()
    write_client_update(tmp_path / "u.npz", tmp_path / "t.json", c["before"], c["after"], "head", 0.1, 8, 1,
                        c["labels"], meta={"round": 1, "client": 0})
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["labels"] == c["labels"].tolist() and doc["num_classes"] == C
    assert doc["provenance"]["update"] == "u.npz" and doc["provenance"]["client"] == 0
    obs = load_observation(tmp_path / "u.npz")
    assert "client" not in obs.meta and obs.meta["layer"] == "head"  # only the attacker-visible meta keys
