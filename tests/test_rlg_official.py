"""rlg_official: RLG as the authors' released script runs it, on real autograd updates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linprog
from torch import nn

from labelleak import cli
from labelleak.attacks import get_attack, run_attack
from labelleak.attacks.rlg.official import perceptron_screen
from labelleak.errors import NotApplicable
from labelleak.io import read_json
from labelleak.jobs import attack
from labelleak.updates.format import Observation, save_truth, save_update

ACTIVATIONS = {"tanh": nn.Tanh, "swish": nn.SiLU, "relu": nn.ReLU}


def batch_update(act: str, d: int, C: int, labels, seed: int = 0) -> np.ndarray:
    """dW (d, C) of the mean cross-entropy of one batch, by autograd (a one-step update)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, d), ACTIVATIONS[act](), nn.Linear(d, C))
    x = torch.randn(len(labels), 32, generator=torch.Generator().manual_seed(seed + 1))
    loss = F.cross_entropy(model(x), torch.as_tensor(labels))
    (grad,) = torch.autograd.grad(loss, model[2].weight)
    return grad.T.numpy()


def distinct_labels(C: int, S: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).choice(C, size=S, replace=False).tolist()


def exact_rlg(dW: np.ndarray, S: int) -> set[int]:
    """Algorithm 1 as written, independent of both attack modules: LP(c) against every other column."""
    Q = np.linalg.svd(np.asarray(dW, np.float64), full_matrices=False)[2][:S]
    U = Q / np.linalg.norm(Q, axis=0)
    present = set()
    for c in range(U.shape[1]):
        others = np.delete(np.arange(U.shape[1]), c)
        A = np.vstack([-U[:, c], -U[:, others].T])
        b = np.r_[1.0, np.full(others.size, 1e-6)]
        res = linprog(U[:, c], A_ub=A, b_ub=b, bounds=(-1e6, 1e6), method="highs")
        if res.status == 0 and res.fun <= -0.5:
            present.add(c)
    return present


def reveal(dW, **options):
    return get_attack("rlg_official")(Observation(dW=dW), **options)


@pytest.mark.parametrize(("act", "d", "C", "S"), [("tanh", 64, 50, 5), ("relu", 128, 120, 12), ("swish", 96, 80, 8)])
def test_true_set_on_easy_untrained_batches(act, d, C, S):
    labels = distinct_labels(C, S, seed=d + C + S)
    dW = batch_update(act, d, C, labels, seed=S)
    for k in (S, None):  # the script's gt_k, and its fall-back: numpy's matrix_rank
        pred = reveal(dW, num_labels=k)
        assert pred.labels == frozenset(labels) and pred.num_labels == S
        assert pred.info["k"] == S and pred.info["k_given"] == (k is not None) and pred.info["rank"] == S
        assert pred.info["lp_confirmed"] == S and pred.info["screened"] == C


def test_deterministic():
    labels = distinct_labels(80, 8, seed=3)
    dW = batch_update("swish", 96, 80, labels, seed=3)
    a, b = reveal(dW, num_labels=8, seed=5), reveal(dW, num_labels=8, seed=5)
    assert a == b
    Q = np.linalg.svd(dW.astype(np.float64), full_matrices=False)[2][:8]
    acc1, ep1 = perceptron_screen(Q, np.arange(80), 5, 999)
    acc2, ep2 = perceptron_screen(Q, np.arange(80), 5, 999)
    assert np.array_equal(acc1, acc2) and np.array_equal(ep1, ep2)
    assert np.array_equal(perceptron_screen(Q, np.arange(40, 50), 5, 999)[0], acc1[40:50])  # per class, not per call
    assert reveal(dW, num_labels=8, seed=6).labels == a.labels == frozenset(labels)


def _sequential_perceptron(Q, c, seed, m, eta0=1.0, max_iter=1000, tol=1e-3, n_iter_no_change=5):
    """scikit-learn's Perceptron rule, one sample at a time, drawing from the same generator."""
    C = Q.shape[1]
    rng = np.random.default_rng([seed, c])
    X = Q[:, np.r_[c, rng.choice(np.delete(np.arange(C), c), size=m, replace=False)]].T
    y = np.r_[1.0, -np.ones(m)]
    w, b, best, stale = np.zeros(Q.shape[0]), 0.0, np.inf, 0
    for epoch in range(1, max_iter + 1):  # noqa: B007  (the epochs run are returned)
        loss = 0.0
        for i in rng.permutation(m + 1):
            z = y[i] * (X[i] @ w + b)
            if z <= 0:
                loss -= z
                w, b = w + eta0 * y[i] * X[i], b + eta0 * y[i]
        stale = stale + 1 if loss > best - tol * (m + 1) else 0
        best = min(best, loss)
        if stale >= n_iter_no_change:
            break
    return np.mean(np.where(X @ w + b > 0, 1.0, -1.0) == y), epoch


def test_vectorised_perceptron_equals_one_sample_at_a_time():
    # large, overlapping columns: a loss above tol * n, so the stopping rule is exercised
    Q = np.random.default_rng(0).normal(size=(3, 40)) * 3
    classes = np.array([0, 7, 21, 39])
    acc, epochs = perceptron_screen(Q, classes, seed=2, sample_size=30)
    for i, c in enumerate(classes):
        ref_acc, ref_epochs = _sequential_perceptron(Q, int(c), 2, 30)
        assert acc[i] == pytest.approx(ref_acc) and epochs[i] == ref_epochs
    assert epochs.max() > 6  # not just the minimal 1 + n_iter_no_change epochs


def test_differs_from_exact_rlg_where_the_lp_sees_few_columns():
    labels = distinct_labels(50, 5, seed=119)
    dW = batch_update("tanh", 64, 50, labels, seed=5)
    assert exact_rlg(dW, 5) == set(labels)
    few = reveal(dW, num_labels=5, lp_constraints=5)  # the script's 199 largest columns, shrunk: absent classes pass
    assert few.labels > frozenset(labels)
    strict = reveal(dW, num_labels=5, perceptron_accept=1.0)  # the ASR script's "== 1.0" screen
    default = reveal(dW, num_labels=5)
    assert strict.labels == default.labels == frozenset(labels)
    assert strict.info["screen_passed"] < default.info["screen_passed"]


def test_seeded_columns_still_face_the_lp():
    labels = distinct_labels(50, 5, seed=1)
    dW = batch_update("tanh", 64, 50, labels, seed=1)  # signed features: the Yin rule flags absent classes
    pred = reveal(dW, num_labels=5, seed_negative_columns=True)
    assert pred.info["seeded"] > 5 and pred.labels == frozenset(labels)
    obs = Observation(dW=dW, meta={"model": "resnet50", "arch": "resnet50"})
    on = get_attack("rlg_official")(obs, num_labels=5, seed_negative_columns=["resnet50"])
    off = get_attack("rlg_official")(obs, num_labels=5, seed_negative_columns=["vgg11"])
    assert on.info["seeded"] == pred.info["seeded"] and off.info["seeded"] == 0


def test_not_applicable_for_k_at_min_d_c():
    dW = batch_update("tanh", 8, 50, distinct_labels(50, 4, seed=0), seed=0)
    for k in (8, 9, 0):
        with pytest.raises(NotApplicable, match="min\\(d, C\\) = 8"):
            reveal(dW, num_labels=k)
    rec = run_attack("rlg_official", Observation(dW=dW), num_labels=8)
    assert rec["status"] == "n/a" and "k = 8" in rec["reason"]
    with pytest.raises(NotApplicable, match="matrix_rank"):
        reveal(np.zeros((8, 50), np.float32))


def test_pipeline_passes_the_true_number_of_labels(tmp_path):
    labels = [3, 3, 17, 17, 30, 41]  # repeats: k = 6 labels, as the script's gt_k, not the 4 classes
    dW = batch_update("relu", 64, 50, labels, seed=2)
    path = tmp_path / "u.npz"
    save_update(path, dW, batch_size=6, steps=1, meta={"model": "resnet50"})
    save_truth(tmp_path / "t.json", labels, 50)  # the oracle's rule input: the job's only truth
    cfg = {"attacks": {"rlg_official": {"seed_negative_columns": ["resnet50"]}}}
    attack.attack(cfg, "rlg_official", path, tmp_path / "r.json", truths=[tmp_path / "t.json"])
    rec = read_json(tmp_path / "r.json")
    assert rec["method"] == "rlg_official" and rec["status"] == "ok"
    assert rec["num_labels"] == 6 and rec["info"]["k"] == 6 and rec["info"]["k_given"]
    assert rec["info"]["seeded"] > 0 and set(rec["labels"]) == set(labels)
    attack.attack({"attacks": {}}, "rlg_official", path, tmp_path / "plain.json", truths=[tmp_path / "t.json"])
    assert read_json(tmp_path / "plain.json")["info"]["seeded"] == 0


def test_cli(tmp_path, capsys):
    labels = distinct_labels(50, 5, seed=7)
    path = tmp_path / "u.npz"
    save_update(path, batch_update("swish", 64, 50, labels, seed=7))
    for extra in ([], ["--num-labels", "5"]):
        assert cli.main(["reveal", "--method", "rlg_official", *extra, str(path)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out == {"method": "rlg_official", "labels": sorted(labels), "num_labels": 5}
    assert cli.main(["reveal", "--method", "rlg_official", "--num-labels", "50", str(path)]) == cli.EXIT_NOT_APPLICABLE


def test_the_cone_shortcut_never_changes_the_lp_check(monkeypatch):
    """lp_confirms skips the LP only where weak duality already fails the script's depth check: the same
    answer as the LP for every class of a trained and an untrained head."""
    from rlg_cases import gradient, head

    from labelleak.attacks.rlg import official

    rng = np.random.default_rng(4)
    for trained in (True, False):
        y = rng.choice(300, 20, replace=False)
        dW = gradient(*head(rng, y, 64, 300, "swish", trained), y)
        Q = np.linalg.svd(dW, full_matrices=False)[2][:20]
        by_norm = np.argsort(-np.linalg.norm(Q, axis=0), kind="stable")
        rows = [by_norm[by_norm != c][:199] for c in range(300)]
        fast = [official.lp_confirms(Q, c, rows[c]) for c in range(300)]
        with monkeypatch.context() as m:  # no cone coefficients: the bound never fires, every class gets its LP
            m.setattr(official, "nnls", lambda A, q: (np.zeros(A.shape[1]), 0.0))
            slow = [official.lp_confirms(Q, c, rows[c]) for c in range(300)]
        assert fast == slow and sum(fast) >= 10
