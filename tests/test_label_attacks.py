"""The label attacks of the seed papers on real updates of small models (issue 3)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from labelleak.attacks import get_attack, registry, run_attack
from labelleak.attacks.geng import discretise
from labelleak.attacks.llg import assign
from labelleak.metrics.counts import count_scores
from labelleak.models import build_model
from labelleak.updates.compute import projection_update
from labelleak.updates.format import Observation

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def observe(model, labels, steps=1, seed=0):
    """The attacker's view of a real update of ``model`` on random inputs with these labels."""
    torch.manual_seed(seed)
    y = torch.as_tensor(labels)
    x = torch.randn(len(y), *model.input_shape)
    per = len(y) // steps
    upd = projection_update(model, [(x[i * per:(i + 1) * per], y[i * per:(i + 1) * per]) for i in range(steps)])
    return Observation(dW=upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=per, steps=steps)


def lenet(activation, seed=0, num_classes=100):
    torch.manual_seed(seed)
    return build_model("lenet5", num_classes, activation=activation).eval()


def repeated(num_classes, n, seed):
    """n labels over about n/2 classes, repeats on purpose (like the 'repeats' composition)."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(num_classes, size=n // 2, replace=False)
    return np.concatenate([classes, rng.choice(classes, size=n - n // 2)]).tolist()


def exact_counts(record, labels):
    return {int(c): n for c, n in record["counts"].items()} == dict(Counter(labels))


def test_every_attack_declares_its_paper_and_needs():
    names = set(registry())
    assert {"idlg", "dlg", "yin", "rlg", "llg", "llg_plus", "llg_star", "geng", "ilrg"} <= names
    for name in names:
        attack = get_attack(name)
        assert attack.paper and attack.description
    assert "model" in get_attack("geng").needs and "aux_data" in get_attack("llg_plus").needs
    assert {n for n in names if get_attack(n).gives_counts} >= {"llg", "llg_plus", "llg_star", "geng", "ilrg"}


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_idlg_single_sample_exact_with_nonnegative_features(activation):
    model = lenet(activation)
    for label in (0, 17, 99):
        rec = run_attack("idlg", observe(model, [label], seed=label))
        assert rec["status"] == "ok" and rec["labels"] == [label]


def test_idlg_batch_extension_is_sound_with_relu():
    labels = repeated(100, 16, 1)
    rec = run_attack("idlg", observe(lenet("relu"), labels))
    assert set(rec["labels"]) == set(labels)  # non-negative features: column sums of absent classes are > 0


@pytest.mark.parametrize("activation", ["relu", "swish", "leaky_relu"])
def test_ilrg_restores_repeated_counts_for_any_activation(activation):
    labels = repeated(100, 24, 2)
    rec = run_attack("ilrg", observe(lenet(activation), labels))
    assert exact_counts(rec, labels)


def test_ilrg_scales_to_batch_4096():
    torch.manual_seed(0)
    model = build_model("fcn3", 100, in_features=48, activation="swish").eval()
    labels = np.random.default_rng(0).integers(0, 100, size=4096).tolist()
    rec = run_attack("ilrg", observe(model, labels))
    scores = count_scores({int(c): n for c, n in rec["counts"].items()}, Counter(labels), 100)
    assert scores["leacc"] >= 0.99 and scores["irec"] >= 0.95 and rec["seconds"] < 5


def test_yin_breaks_on_swish_but_not_relu():
    labels = repeated(100, 16, 3)
    relu = run_attack("yin", observe(lenet("relu"), labels))
    swish = run_attack("yin", observe(lenet("swish"), labels))
    assert set(relu["labels"]) == set(labels)
    assert len(set(swish["labels"]) - set(labels)) > 10  # signed features: absent classes look present


def test_llg_assignment_updates_the_selected_class():
    # stage 1: classes 0 and 1 are negative (-10 -> -7, -1 -> 2); stage 2 must keep picking class 0
    # (-7 -> -4 -> -1), the class just selected, not a stale index: counts {0: 3, 1: 1}.
    counts = assign(np.array([-10.0, -1.0, 5.0]), impact=-3.0, n=4)
    assert counts == Counter({0: 3, 1: 1})


@pytest.mark.parametrize("steps", [1, 4])
def test_model_based_counts_on_sigmoid_lenet(steps):
    model = lenet("sigmoid")
    labels = repeated(100, 24, 4)
    obs = observe(model, labels, steps=steps)
    for method in ("llg", "llg_star", "geng", "ilrg"):
        rec = run_attack(method, obs, **({"model": model} if "model" in get_attack(method).needs else {}))
        assert rec["status"] == "ok" and exact_counts(rec, labels), method


def test_llg_plus_with_auxiliary_data():
    model = lenet("sigmoid")
    labels = repeated(100, 16, 5)
    aux = lambda c, n, rep: torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(c + 1000 * rep))
    rec = run_attack("llg_plus", observe(model, labels), model=model, aux_data=aux, repetitions=1)
    assert exact_counts(rec, labels)


def test_attacks_without_their_needs_are_na_not_errors():
    obs = observe(lenet("relu"), [1, 2, 3, 4])
    for method in ("llg_star", "geng", "dlg", "llg_plus"):
        rec = run_attack(method, obs)
        assert rec["status"] == "n/a" and "model" in rec["reason"], method
    bare = Observation(dW=obs.dW)
    assert run_attack("ilrg", bare)["status"] == "n/a"
    assert run_attack("dlg", obs, model=lenet("relu"))["status"] == "n/a"  # single samples only


def test_dlg_recovers_single_labels():
    torch.manual_seed(0)
    model = build_model("fcn3", 10, in_features=48, activation="sigmoid").eval()
    hits = [run_attack("dlg", observe(model, [c], seed=c), model=model, steps=60)["labels"] == [c] for c in (0, 3, 9)]
    assert all(hits)


def test_geng_discretise_fills_to_n():
    counts = discretise(np.array([2.1, 0.9, -0.3, 0.4, 1.05]), 5)
    assert sum(counts.values()) == 5 and counts[0] == 2 and counts[1] == 1 and counts[4] == 1 and 2 not in counts
