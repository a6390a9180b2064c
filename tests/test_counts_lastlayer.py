"""rlg_counts (ours): exact label counts from the last layer, on updates computed by autograd (issue 16)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rlg_cases import head
from torch import nn

from labelleak.attacks import get_attack, run_attack
from labelleak.attacks.counts_lastlayer import (
    ilrg_estimate,
    max_samples,
    rlg_counts,
    simulate,
    sum_to_n,
)
from labelleak.updates.format import Observation

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def repeated(rng, C, n, distinct):
    """n labels over ``distinct`` classes, every class at least once (repeats on purpose), shuffled."""
    classes = rng.choice(C, distinct, replace=False)
    y = np.concatenate([classes, rng.choice(classes, n - distinct)])
    rng.shuffle(y)
    return y


def autograd_update(H, W, b, labels):
    """One step of mean CE through a float64 nn.Linear head with weights W (d, C), b, by autograd."""
    d, C = W.shape
    layer = nn.Linear(d, C).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W.T))
        layer.bias.copy_(torch.tensor(b))
    F.cross_entropy(layer(torch.tensor(H)), torch.as_tensor(labels)).backward()
    return Observation(dW=layer.weight.grad.T.numpy().copy(), db=layer.bias.grad.numpy().copy(), W=W, b=b,
                       batch_size=len(labels), steps=1)


def trained_head_update(seed, C, N, distinct, d=256, act="relu"):
    """A trained head (tests/rlg_cases.head: W aligned with the class prototypes, median logit margin 12)
    on features of its classes, labels with repeats; the update by autograd."""
    rng = np.random.default_rng(seed)
    y = repeated(rng, C, N, distinct)
    H, W, b = head(rng, y, d, C, act, trained=True)
    return autograd_update(H, W, b, y), y


def client_update(seed, C=100, d=64, N=8, K=4, distinct=10, lr=1.0, meta_lr=True):
    """K local SGD steps of a whole float64 model (fresh inputs each step, the body trains along), as a
    client makes them; the server's (W0 - WK) / lr and (b0 - bK) / lr."""
    rng = np.random.default_rng(seed)
    y = repeated(rng, C, N * K, distinct)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, d), nn.ReLU(), nn.Linear(d, C)).double()
    W0, b0 = model[2].weight.detach().clone(), model[2].bias.detach().clone()
    g = torch.Generator().manual_seed(seed + 1)
    for k in range(K):
        model.zero_grad()
        F.cross_entropy(model(torch.randn(N, 32, generator=g, dtype=torch.float64)),
                        torch.as_tensor(y[k * N:(k + 1) * N])).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    obs = Observation(dW=((W0 - model[2].weight.detach()) / lr).T.numpy().copy(),
                      db=((b0 - model[2].bias.detach()) / lr).numpy().copy(), W=W0.T.numpy().copy(),
                      b=b0.numpy().copy(), batch_size=N, steps=K, meta={"local_lr": lr} if meta_lr else {})
    return obs, y


def counts_of(record):
    return {int(c): n for c, n in record["counts"].items()}


# ------------------------------------------------------------------ the model equation
def test_autograd_gradient_is_the_model_equation():
    rng = np.random.default_rng(0)
    y = repeated(rng, 30, 12, 5)
    H = np.maximum(rng.standard_normal((12, 40)), 0)
    W, b = rng.normal(0, 0.3, (40, 30)), rng.normal(0, 0.1, 30)
    obs = autograd_update(H, W, b, y)
    z = H @ W + b
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    G = P - np.eye(30)[y]
    np.testing.assert_allclose(obs.dW, H.T @ G / 12, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(obs.db, G.mean(0), rtol=1e-12, atol=1e-15)
    mW, mb = simulate(W, b, H, y, np.zeros(12, dtype=int), 12, 1, None)
    np.testing.assert_allclose(mW, obs.dW, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mb, obs.db, rtol=1e-12, atol=1e-15)


def test_simulate_is_the_k_step_convention_of_autograd_sgd():
    """(W0 - WK) / lr of K SGD steps of the head on K batches (features fixed here) = simulate."""
    rng = np.random.default_rng(1)
    N, K, lr = 6, 3, 0.5
    y = repeated(rng, 20, N * K, 7)
    H = np.maximum(rng.standard_normal((N * K, 16)), 0)
    W0, b0 = rng.normal(0, 0.5, (16, 20)), rng.normal(0, 0.1, 20)
    layer = nn.Linear(16, 20).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W0.T))
        layer.bias.copy_(torch.tensor(b0))
    for k in range(K):
        layer.zero_grad()
        F.cross_entropy(layer(torch.tensor(H[k * N:(k + 1) * N])), torch.as_tensor(y[k * N:(k + 1) * N])).backward()
        with torch.no_grad():
            for p in layer.parameters():
                p -= lr * p.grad
    dW = ((torch.tensor(W0.T) - layer.weight.detach()) / lr).T.numpy()
    db = ((torch.tensor(b0) - layer.bias.detach()) / lr).numpy()
    mW, mb = simulate(W0, b0, H, y, np.repeat(np.arange(K), N), N, K, lr)
    np.testing.assert_allclose(mW, dW, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(mb, db, rtol=1e-10, atol=1e-13)


def test_registered_as_ours_with_its_needs():
    attack = get_attack("rlg_counts")
    assert attack.gives_counts and "ours" in attack.paper and attack.description
    assert attack.needs == frozenset({"db", "W", "b", "batch_size", "steps"})


# ------------------------------------------------------------------ the targets
@pytest.mark.parametrize("C, N, distinct", [(100, 48, 20), (200, 64, 26)])
def test_exact_counts_on_trained_heads_with_repeats_where_ilrg_is_wrong(C, N, distinct):
    """Trained heads (peaked softmax): the exact multiset, proven by the residual; iLRG's counts are off.
    C = 100 takes K N <= 49 (max_samples); N = 64 with 26 distinct labels needs C >= 130 (here 200)."""
    obs, y = trained_head_update(3, C, N, distinct)
    truth = dict(Counter(y.tolist()))
    rec = run_attack("rlg_counts", obs)
    assert rec["status"] == "ok" and counts_of(rec) == truth
    assert rec["info"]["proven"] and rec["info"]["residual"] < 1e-9 and rec["info"]["residual_db"] < 1e-9
    assert rec["info"]["samples_found"] == N and rec["seconds"] < 30
    ilrg = run_attack("ilrg", obs)
    assert ilrg["status"] == "ok" and counts_of(ilrg) != truth


def test_k_step_exact_where_ilrg_is_wrong():
    """K = 4 local steps (the body trains along, a fresh batch each step, lr from the update's meta):
    iLRG's one-system approximation of the drifting weights miscounts; ours is exact and proven."""
    obs, y = client_update(0)
    truth = dict(Counter(y.tolist()))
    rec = run_attack("rlg_counts", obs)
    assert rec["status"] == "ok" and counts_of(rec) == truth
    assert rec["info"]["proven"] and rec["info"]["residual"] < 1e-9 and rec["info"]["lr"] == 1.0
    ilrg = run_attack("ilrg", obs)
    assert ilrg["status"] == "ok" and counts_of(ilrg) != truth


def test_k_step_learning_rate_is_estimated_when_not_recorded():
    obs, y = client_update(1, meta_lr=False)
    pred = rlg_counts(obs)
    assert pred.counts == dict(Counter(y.tolist())) and pred.info["proven"]
    assert pred.info["lr_estimated"] and abs(pred.info["lr"] - 1.0) < 1e-8


# ------------------------------------------------------------------ honesty: n/a and unproven
def test_not_applicable_with_reasons():
    obs, _ = trained_head_update(0, 100, 16, 8)
    no_n = Observation(dW=obs.dW, db=obs.db, W=obs.W, b=obs.b, steps=1)
    rec = run_attack("rlg_counts", no_n)
    assert rec["status"] == "n/a" and "batch_size" in rec["reason"]
    big, _ = trained_head_update(0, 100, 64, 26)
    rec = run_attack("rlg_counts", big)
    assert rec["status"] == "n/a" and f"at most {max_samples(100, 256)} samples" in rec["reason"]
    zero = Observation(dW=np.zeros_like(obs.dW), db=np.zeros_like(obs.db), W=obs.W, b=obs.b, batch_size=16, steps=1)
    assert run_attack("rlg_counts", zero)["status"] == "n/a"  # RLG gives no set (no signal)


def test_an_update_it_cannot_explain_is_reported_unproven():
    """Noise the model has no term for (1e-4 of |dW|): no sample fits, the counts are iLRG's on what
    is left, and the record says so with the residual, never silently."""
    obs, _ = trained_head_update(1, 100, 16, 8)
    noise = np.random.default_rng(0).standard_normal(obs.dW.shape) * 1e-4 * np.abs(obs.dW).max()
    noisy = Observation(dW=obs.dW + noise, db=obs.db, W=obs.W, b=obs.b, batch_size=16, steps=1)
    rec = run_attack("rlg_counts", noisy)
    assert rec["status"] == "ok" and rec["info"]["proven"] is False
    assert rec["info"]["residual"] > 1e-6 and "unproven_reason" in rec["info"]
    assert sum(rec["counts"].values()) == 16  # the samples not found are filled in (and said so)


def test_deterministic():
    obs, _ = trained_head_update(2, 100, 24, 10)
    a, b = rlg_counts(obs), rlg_counts(obs)
    assert a.counts == b.counts and a.info == b.info
    np.testing.assert_array_equal(a.evidence.features, b.evidence.features)


# ------------------------------------------------------------------ issue 16 item 4: iLRG's sum correction
def _sum_cases():
    """Real updates whose rounded iLRG counts miss N K: a K = 4 client update (29 of 32, short by 3)
    and a trained head (34 of 32, 2 too many)."""
    short, _ = client_update(0)
    excess, _ = trained_head_update(1, 100, 32, 13)
    return {"short": short, "excess": excess}


def _rounded(obs):
    n = obs.batch_size * obs.steps
    est = ilrg_estimate(obs, n)
    rounded = np.rint(np.maximum(est, 0))
    dropped = rounded > n  # iLRG's "no count at all": not a class to add to
    rounded[dropped] = 0
    return n, est, rounded, dropped


def test_ilrg_has_no_sum_correction_so_not_the_reference_bug():
    """Our ilrg reports the rounded pseudoinverse counts as they are (the reference's reported metrics use
    them too): no +-1 step, so the reference's negative slice ``inds[:num_mod]`` has no counterpart."""
    for kind, obs in _sum_cases().items():
        n, _, rounded, _ = _rounded(obs)
        rec = run_attack("ilrg", obs)
        assert counts_of(rec) == {int(c): int(rounded[c]) for c in np.flatnonzero(rounded > 0)}
        assert (sum(rec["counts"].values()) < n) == (kind == "short") and sum(rec["counts"].values()) != n


@pytest.mark.parametrize("kind", ["short", "excess"])
def test_sum_to_n_moves_exactly_the_shortfall_or_excess(kind):
    """On real iLRG estimates whose rounded counts miss N K: exactly |m| classes change, by one each."""
    n, est, rounded, dropped = _rounded(_sum_cases()[kind])
    m = int(rounded.sum()) - n
    assert (m < 0) == (kind == "short") and m != 0
    fixed = sum_to_n(est, n)
    delta = fixed - rounded
    assert fixed.sum() == n and np.all(fixed >= 0)
    assert np.count_nonzero(delta) == abs(m) and set(np.unique(delta[delta != 0])) == {-int(np.sign(m))}
    err = rounded - est
    if m < 0:  # the classes rounded down the most get the +1
        kept = np.flatnonzero(~dropped)
        assert set(np.flatnonzero(delta)) == set(kept[np.argsort(err[kept], kind="stable")[:-m]])
    else:  # the counted classes rounded up the most give one back
        counted = np.flatnonzero(rounded > 0)
        assert set(np.flatnonzero(delta)) == set(counted[np.argsort(-err[counted], kind="stable")[:m]])


def test_sum_to_n_when_the_excess_is_more_than_the_classes():
    est = np.array([5.4, 3.3, 0.2, 0.0])  # rounds to [5, 3, 0, 0]: 8, n = 3, excess 5 > 2 classes
    fixed = sum_to_n(est, 3)
    assert fixed.sum() == 3 and np.all(fixed >= 0) and fixed[2:].tolist() == [0, 0]


def test_sum_to_n_small_case_and_the_reference_slice():
    est = np.array([2.45, 1.3, 0.4, 0.2, 0.1, 0.05])  # rounds to [2, 1, 0, 0, 0, 0]: 3, short of n = 5 by 2
    assert sum_to_n(est, 5).tolist() == [3, 1, 1, 0, 0, 0]  # the two rounded down the most: classes 0 and 2
    err = np.rint(est) - est
    reference = np.rint(est)
    reference[np.argsort(err)[:-2]] += 1  # the reference's inds[:num_mod] with num_mod = -2
    assert np.count_nonzero(reference - np.rint(est)) == len(est) - 2  # C - |m| classes moved, the bug
    # rounds to [2, 2, 1, 0]: 5 > n = 4; class 1, rounded up the most, gives one back
    assert sum_to_n(np.array([1.6, 1.55, 0.7, 0.2]), 4).tolist() == [2, 1, 1, 0]
