"""dimitrov (Dimitrov et al., TMLR 2022) and rlu (Chen and Vikalo, ICML 2024) on real updates of small models.

Every update is made by autograd (:func:`labelleak.updates.compute.projection_update`: K local SGD steps
of the whole model, a fresh batch of B samples each); no count is written down by hand.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter

import numpy as np
import pytest
import torch

from labelleak.attacks import get_attack, registry, run_attack
from labelleak.attacks.dimitrov import largest_remainder
from labelleak.models import build_model
from labelleak.updates.compute import projection_update
from labelleak.updates.format import Observation

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py

C, N = 100, 24


def lenet(activation: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("lenet5", C, activation=activation).eval()


def repeated(n: int, seed: int) -> list[int]:
    """n labels over n/2 classes, repeats on purpose."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(C, size=n // 2, replace=False)
    return np.concatenate([classes, rng.choice(classes, size=n - n // 2)]).tolist()


def observe(model, labels, steps=1, lr=0.1, seed=0, meta_lr=True) -> Observation:
    """The attacker's view of K = ``steps`` local steps on random inputs with these labels."""
    torch.manual_seed(seed)
    y = torch.as_tensor(labels)
    x = torch.randn(len(y), *model.input_shape)
    per = len(y) // steps
    upd = projection_update(model, [(x[i * per:(i + 1) * per], y[i * per:(i + 1) * per]) for i in range(steps)],
                            lr=lr)
    return Observation(dW=upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=per, steps=steps,
                       meta={"local_lr": lr} if meta_lr else {})


def aux_for(model):
    """The attacker's own inputs of class c (seeded by class and repetition; never the client's)."""
    return lambda c, n, rep: torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(7 + c + 1000 * rep))


def options(method, model):
    return {"model": model, **({"aux_data": aux_for(model)} if method == "rlu" else {})}


def l1(record, labels) -> int:
    """L1 distance between the predicted and the true count vectors (0: the multiset is exact)."""
    pred, true = {int(c): k for c, k in record["counts"].items()}, Counter(labels)
    return sum(abs(pred.get(c, 0) - true.get(c, 0)) for c in set(pred) | set(true))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_dimitrov_is_geng_at_one_step(activation):
    model = lenet(activation)
    for seed in range(2):
        obs = dataclasses.replace(observe(model, repeated(N, seed), seed=seed), meta={})  # K = 1 needs no lr
        for opts in ({}, {"dummy": "uniform", "seed": 3}):
            ref = run_attack("geng", obs, model=model, **opts)
            for interpolate in ("stats", "weights"):
                got = run_attack("dimitrov", obs, model=model, interpolate=interpolate, **opts)
                assert got["status"] == ref["status"] == "ok"
                assert got["counts"] == ref["counts"] and got["labels"] == ref["labels"], (activation, seed, opts)
                assert got["info"]["mean_feature_sum"] == ref["info"]["mean_feature_sum"]


@pytest.mark.parametrize("steps", [1, 4])
def test_counts_where_the_assumptions_hold(steps):
    """Untrained LeNet, K*B = 24 labels over 12 classes, lr 0.1 (little drift). Measured: every method is
    exact on sigmoid; on ReLU rlu is exact, geng and dimitrov reach count L1 6 (of at most 2N = 48) at K = 4."""
    errors = {}
    for activation in ("sigmoid", "relu"):
        model = lenet(activation)
        for seed in range(3):
            labels = repeated(N, seed)
            obs = observe(model, labels, steps=steps, seed=seed)
            for method in ("geng", "dimitrov", "rlu"):
                rec = run_attack(method, obs, **options(method, model))
                assert rec["status"] == "ok" and sum(rec["counts"].values()) == N, (method, rec)
                errors.setdefault((activation, method), []).append(l1(rec, labels))
    for method in ("geng", "dimitrov", "rlu"):
        assert errors[("sigmoid", method)] == [0, 0, 0], (method, errors)
    assert errors[("relu", "rlu")] == [0, 0, 0], errors
    for method in ("geng", "dimitrov"):
        assert sum(errors[("relu", method)]) <= 12, (method, errors)  # measured at most 6 (K = 4), 0 (K = 1)


@pytest.mark.parametrize("steps", [1, 4])
def test_rlu_makes_no_assumption_on_the_activation(steps):
    """tanh features are signed: Geng-type counts break (measured L1 4 at K = 1), RLU's bias system does not."""
    model = lenet("tanh")
    for seed in range(2):
        labels = repeated(N, seed)
        rec = run_attack("rlu", observe(model, labels, steps=steps, seed=seed), **options("rlu", model))
        assert rec["status"] == "ok" and l1(rec, labels) == 0 and rec["info"]["signal"] == "db"


def test_rlu_without_db_uses_the_column_sums_of_dW():
    model = lenet("relu")
    labels = repeated(N, 1)
    obs = dataclasses.replace(observe(model, labels, steps=4, seed=1), db=None)
    rec = run_attack("rlu", obs, **options("rlu", model))
    assert rec["status"] == "ok" and rec["info"]["signal"] == "dW" and l1(rec, labels) == 0


def test_several_steps_without_a_learning_rate_are_not_applicable():
    model = lenet("sigmoid")
    labels = repeated(N, 2)
    obs = observe(model, labels, steps=4, seed=2, meta_lr=False)
    for method in ("dimitrov", "rlu"):
        rec = run_attack(method, obs, **options(method, model))
        assert rec["status"] == "n/a" and "learning rate" in rec["reason"] and "\n" not in rec["reason"], method
        given = run_attack(method, obs, lr=0.1, **options(method, model))
        assert given["status"] == "ok" and given["info"]["lr"] == 0.1 and l1(given, labels) == 0, method
        assert run_attack(method, obs, lr=-1.0, **options(method, model))["status"] == "n/a"
        assert run_attack(method, obs, lr=0.1)["status"] == "n/a"  # no model (nor aux_data)
    assert run_attack("rlu", obs, model=model, lr=0.1)["status"] == "n/a"  # no aux_data


def test_deterministic_and_the_observation_is_not_touched():
    model = lenet("relu")
    obs = observe(model, repeated(N, 3), steps=4, seed=3)
    before = {k: getattr(obs, k).copy() for k in ("dW", "db", "W", "b")}
    meta = dict(obs.meta)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    for method in ("dimitrov", "rlu"):
        runs = [run_attack(method, obs, **options(method, model)) for _ in range(2)]
        for rec in runs:
            rec.pop("seconds")
        assert runs[0] == runs[1], method
    assert all(np.array_equal(getattr(obs, k), v) for k, v in before.items()) and obs.meta == meta
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_registry_lists_both_with_their_needs():
    names = registry()
    assert {"dimitrov", "rlu"} <= set(names)
    dim, rlu = get_attack("dimitrov"), get_attack("rlu")
    assert dim.needs == {"batch_size", "steps", "model"} and rlu.needs == {"batch_size", "steps", "model", "aux_data"}
    assert dim.gives_counts and rlu.gives_counts
    assert "Dimitrov" in dim.paper and "Federated Averaging" in dim.paper
    assert "Chen" in rlu.paper and "Vikalo" in rlu.paper and dim.description and rlu.description
    assert {"lr", "aux_per_class", "seed"} <= set(inspect.signature(rlu.run).parameters)
    assert {"lr", "dummy", "seed"} <= set(inspect.signature(dim.run).parameters)


def test_largest_remainder_sums_to_n():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        est = rng.normal(n / 8, n / 4, size=int(rng.integers(2, 12)))
        counts = largest_remainder(est, n)
        assert sum(counts.values()) == n and min(counts.values()) > 0
        floor = np.floor(np.clip(est, 0, n))
        if floor.sum() <= n <= floor.sum() + len(est):  # one pass of +1s: each count is its floor or one more
            assert all(counts.get(c, 0) - floor[c] in (0, 1) for c in range(len(est)))
    assert largest_remainder(np.array([2.6, 0.3, -1.0, 1.2]), 4) == Counter({0: 3, 3: 1})
    assert largest_remainder(np.array([3.2, 2.9, 1.1]), 5) == Counter({0: 3, 1: 2})
