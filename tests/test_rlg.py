"""RLG: exact label sets on real autograd updates, fast == reference LP, rank, n/a, registry."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.attacks import get_attack, run_attack
from labelleak.attacks.rlg import (
    estimate_rank,
    reveal_labels,
    reveal_labels_reference,
    right_singular_vectors,
    separable_reference,
    unit_columns,
)
from labelleak.attacks.rlg.lp import separable
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

ACTIVATIONS = {"tanh": nn.Tanh, "swish": nn.SiLU, "relu": nn.ReLU}


def _model(act: str, d: int, C: int, seed: int, dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, d), ACTIVATIONS[act](), nn.Linear(d, C)).to(dtype)


def batch_update(act: str, d: int, C: int, labels, seed: int = 0) -> np.ndarray:
    """dW (d, C) of the mean cross-entropy of one batch, by autograd (a one-step update)."""
    model = _model(act, d, C, seed)
    x = torch.randn(len(labels), 32, generator=torch.Generator().manual_seed(seed + 1))
    loss = F.cross_entropy(model(x), torch.as_tensor(labels))
    (grad,) = torch.autograd.grad(loss, model[2].weight)
    return grad.T.numpy()


def sgd_update(act: str, d: int, C: int, labels, lr: float = 0.5, seed: int = 0, dtype=torch.float64) -> np.ndarray:
    """(W0 - WK) / lr after K SGD steps of one sample each (the whole model trains)."""
    model = _model(act, d, C, seed, dtype)
    x = torch.randn(len(labels), 32, generator=torch.Generator().manual_seed(seed + 1), dtype=dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    w0 = model[2].weight.detach().clone()
    for k, y in enumerate(labels):
        opt.zero_grad()
        F.cross_entropy(model(x[k : k + 1]), torch.tensor([y])).backward()
        opt.step()
    return ((w0 - model[2].weight.detach()) / lr).T.numpy()


def distinct_labels(C: int, S: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).choice(C, size=S, replace=False).tolist()


@pytest.mark.parametrize("act", ["tanh", "swish", "relu"])
@pytest.mark.parametrize(("d", "C", "S"), [(64, 50, 5), (256, 200, 20), (128, 120, 12)])
def test_exact_label_set(act, d, C, S):
    labels = distinct_labels(C, S, seed=d + C + S)
    dW = batch_update(act, d, C, labels, seed=S)
    result = reveal_labels(dW)
    assert result.num_labels == S
    assert result.labels == frozenset(labels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multistep_sgd_update_exact(dtype):
    labels = distinct_labels(80, 4, seed=3)
    dW = sgd_update("tanh", 96, 80, labels, dtype=dtype)
    assert estimate_rank(dW) == 4
    assert reveal_labels(dW).labels == frozenset(labels)


@functools.cache
def _random_cases():
    """Updates that exercise every path: distinct, repeated labels, multi-step, S given."""
    rng = np.random.default_rng(7)
    cases = []
    for k, act in enumerate(["tanh", "swish", "relu"] * 3):
        d, C, S = int(rng.integers(40, 160)), int(rng.integers(30, 120)), int(rng.integers(4, 16))
        repeated = k % 3 == 1
        labels = rng.integers(0, max(2, S // 3), S).tolist() if repeated else distinct_labels(C, S, k)
        dW = sgd_update(act, d, C, labels, seed=k) if k % 3 == 2 else batch_update(act, d, C, labels, seed=k)
        cases.append((dW, None))
    cases.append((cases[0][0], estimate_rank(cases[0][0]) + 2))  # S above the rank: clipped to it
    cases.append((cases[1][0], estimate_rank(cases[1][0]) - 1))
    # 40 samples over 60 classes: few absent columns, so some suspects need their LP
    # (S = 40 > min(d, C)/2 is not estimated from the spectrum: given)
    cases.append((batch_update("swish", 130, 60, np.random.default_rng(3).integers(0, 60, 40).tolist()), 40))
    # defended updates (Table 4): no spanning set, so _frame_search decides; S = N as the paper's code
    from labelleak.defenses import apply

    labels = distinct_labels(150, 10, 5)
    dW = batch_update("swish", 96, 150, labels, seed=5)
    for defense, S in [("signsgd", 10), ("graddrop-0.9", 10), ("graddrop-0.5", None), ("topk-0.05", 10)]:
        cases.append((apply(defense, [dW], np.random.default_rng(0))[0], S))
    return cases


@pytest.mark.parametrize("case", range(16))
def test_fast_equals_reference(case):
    dW, S = _random_cases()[case]
    if case == 14:  # GradDrop 50% with S from the spectrum: its rank (61 of 96) is no label count, n/a in both
        for method in (reveal_labels, reveal_labels_reference):
            with pytest.raises(NotApplicable, match="gap"):
                method(dW, S)
        return
    fast = reveal_labels(dW, S)
    ref, ref_S = reveal_labels_reference(dW, S)
    assert fast.num_labels == ref_S
    assert fast.labels == frozenset(ref)
    assert fast.certified_absent + fast.certified_present + fast.lp_classes == dW.shape[1]
    if case == 9:  # a given S above the rank (repeats) counts as the rank: past it Q is noise
        assert fast.num_labels == estimate_rank(dW) and not fast.fallback
    if case == 11:
        assert not fast.fallback and fast.lp_classes > 0
    if case == 12:  # Sign-SGD: no spanning set
        assert fast.fallback and fast.certified_absent > 0


def test_zeroed_columns_are_absent_without_an_lp():
    """An untrained ASR update of 4 utterances (4 </s>, so repeated labels), float32: no spanning set
    exists and nearly every absent column is within the noise (zeroed). Those are absent under the
    shared rule and must not cost an LP each (579 LPs here before; 16k, 100 s per update, at 16k pieces)."""
    from labelleak.models.asr import build_asr_model
    from labelleak.updates.asr import asr_update

    torch.manual_seed(0)
    V = 600
    model = build_asr_model(V, encoder_hidden=16, encoder_layers=1, decoder_hidden=16, embedding_dim=8,
                            attention_dim=16)
    rng = np.random.default_rng(0)
    toks = {f"u{i}": rng.integers(3, V, size=rng.integers(3, 7)).tolist() for i in range(4)}
    feats = {u: rng.normal(size=(4 * len(t), 80)).astype(np.float32) for u, t in toks.items()}
    upd = asr_update(model, [list(toks)], toks, feats.__getitem__, local_lr=0.1)
    dW = upd.dW.astype(np.float32)
    fast = reveal_labels(dW)
    ref, ref_S = reveal_labels_reference(dW)
    assert fast.labels == frozenset(ref) == frozenset(upd.labels) and fast.num_labels == ref_S
    assert fast.lp_classes < 10 and fast.certified_absent > 0.9 * V


def test_column_generation_equals_full_lp_per_class():
    labels = [3, 3, 7, 7, 7, 11, 20, 20, 31, 40]  # repeated labels: many columns look extreme
    dW = batch_update("swish", 80, 60, labels)
    Q = right_singular_vectors(dW, estimate_rank(dW))
    U = unit_columns(Q)
    seed = np.arange(Q.shape[0])  # a poor seed, so column generation has to add rows
    for c in range(Q.shape[1]):
        assert separable(U, c, seed, batch=4)[0] == separable_reference(Q, c)


@pytest.mark.parametrize("act", ["tanh", "swish", "relu"])
def test_estimate_rank_counts_samples(act):
    for d, C, S in [(64, 50, 7), (256, 200, 30), (300, 150, 60)]:
        labels = np.random.default_rng(S).integers(0, C, S).tolist()
        assert estimate_rank(batch_update(act, d, C, labels, seed=S)) == S


def test_rank_and_singular_vectors_match_lapack():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((300, 25)) @ rng.standard_normal((25, 200))
    A += 1e-15 * rng.standard_normal(A.shape)  # noise, below the float64 rounding-noise tolerance
    s = np.linalg.svd(A, compute_uv=False)
    d, C = A.shape
    tol = 10 * np.finfo(np.float64).eps * np.linalg.norm(A) * (d ** -0.5 + C ** -0.5)
    assert estimate_rank(A) == int(np.sum(s > tol)) == 25
    Q = right_singular_vectors(A, 25)
    np.testing.assert_allclose(Q @ Q.T, np.eye(25), atol=1e-10)
    Vt = np.linalg.svd(A, full_matrices=False)[2][:25]
    np.testing.assert_allclose(Q.T @ Q, Vt.T @ Vt, atol=1e-8)  # same row space


def test_rank_of_float32_update_with_skewed_spectrum():
    """Features with a large shared mean (as after ReLU + pooling in a CNN) make sigma_1 / sigma_S
    huge; the rank must still count every sample, and RLG must stay exact."""
    torch.manual_seed(0)
    N, d, C = 10, 512, 100
    H = 20.0 + 0.05 * torch.relu(torch.randn(N, d))  # large common component, small per-sample part
    W = torch.nn.Linear(d, C)
    with torch.no_grad():
        W.weight.mul_(0.01)  # moderate logits: a peaked (one-hot) softmax would add a separable argmax class
    y = torch.randperm(C)[:N]
    F.cross_entropy(W(H), y).backward()
    dW = W.weight.grad.T.numpy().astype(np.float32)
    s = np.linalg.svd(dW.astype(np.float64), compute_uv=False)
    assert s[N - 1] / s[0] < 1e-3  # numpy's matrix_rank rule (max(d, C) * eps32 = 6e-5) sits close
    assert estimate_rank(dW) == N
    assert reveal_labels(dW).labels == frozenset(y.tolist())


def test_not_applicable_when_S_reaches_min_d_C():
    rng = np.random.default_rng(1)
    with pytest.raises(NotApplicable, match="gap"):  # more samples than features: rank = d, no noise bulk
        reveal_labels(batch_update("tanh", 16, 60, rng.integers(0, 60, 30).tolist()))
    with pytest.raises(NotApplicable, match="gap"):  # more samples than classes: rank saturated at C - 1
        reveal_labels(batch_update("tanh", 64, 10, rng.integers(0, 10, 30).tolist()))
    dW = batch_update("tanh", 64, 50, distinct_labels(50, 5, 0))
    with pytest.raises(NotApplicable):
        reveal_labels(dW, S=50)
    with pytest.raises(NotApplicable):
        reveal_labels_reference(dW, S=64)


def test_deterministic():
    labels = [1, 1, 5, 9, 9, 9, 17, 33]
    dW = batch_update("relu", 128, 150, labels)
    assert reveal_labels(dW) == reveal_labels(dW)
    np.testing.assert_array_equal(right_singular_vectors(dW, 6), right_singular_vectors(dW, 6))


def test_registered_attack():
    labels = distinct_labels(100, 9, 4)
    obs = Observation(dW=batch_update("swish", 128, 100, labels))
    attack = get_attack("rlg")
    assert attack.needs == frozenset()
    pred = attack(obs)
    assert pred.labels == frozenset(labels) and pred.num_labels == 9
    json.dumps(pred.info)
    assert attack(obs, num_labels=7).num_labels == 7  # the given S overrides the rank
    record = run_attack("rlg", Observation(dW=batch_update("tanh", 16, 60, list(range(30)))))
    assert record["status"] == "n/a" and "gap" in record["reason"]


def test_lp_time_cap_gives_an_explicit_not_applicable():
    """Past attacks.rlg.max_lp_seconds an update is n/a (a counted row), never a partial label set."""
    dW, S = _random_cases()[11]  # needs per-class LPs (see test_fast_equals_reference)
    with pytest.raises(NotApplicable, match="max_lp_seconds"):
        reveal_labels(dW, S, max_lp_seconds=0.0)
    assert reveal_labels(dW, S, max_lp_seconds=600).labels == reveal_labels(dW, S).labels
    record = run_attack("rlg", Observation(dW=dW), max_lp_seconds=0.0)
    assert record["status"] == "n/a" and record["labels"] is None
