"""GM and GM + BoW on a real (tiny, untrained) attention ASR decoder update, and the transcript metrics.

Every update here is computed like a client's: one utterance, one step, the gradient of the mean
cross-entropy w.r.t. the decoder weights. The attacks get the observation, the model and the
decoder update, never the transcript.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from labelleak.attacks import get_attack, run_attack
from labelleak.attacks.gm import gradient_distance
from labelleak.attacks.gm_asr import (
    initial_variables,
    reconstruct,
    reconstruct_sequential,
    soft_label_gradients,
)
from labelleak.attacks.gm_asr_objective import _Batch, _target
from labelleak.metrics.sequence import (
    edit_distance,
    exact_match,
    length_error,
    pieces_to_words,
    word_error_rate,
)
from labelleak.models.asr import EOS, ListenAttendSpell, make_batch, sequence_loss
from labelleak.updates.format import Observation

V = 100
SIZES = dict(n_mels=8, encoder_hidden=16, encoder_layers=1, decoder_hidden=16, embedding_dim=8, attention_dim=16)
# Small budget for a unit test (the paper's: lr 0.05 halved every 4000 steps, patience 2000).
FAST = dict(lr=0.1, halve_every=200, min_lr=0.005, patience=200, max_steps=700, reg_weight=0.01)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def client(seed: int, length: int | None = None):
    """A tiny untrained model, a random utterance and the client's update: (model, tokens, obs, decoder, batch)."""
    torch.manual_seed(seed)
    model = ListenAttendSpell(V, **SIZES)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5)) if length is None else length  # S = n + 1 in 3..5
    tokens = [int(t) for t in rng.integers(3, V, n)]
    batch = make_batch([rng.standard_normal((20, SIZES["n_mels"])).astype(np.float32)], [tokens])
    params = model.decoder_parameters()
    grads = torch.autograd.grad(sequence_loss(model(batch), batch.targets, batch.mask), list(params.values()))
    decoder = {name: g.detach().numpy().copy() for name, g in zip(params, grads)}
    obs = Observation(dW=decoder["projection.weight"].T.copy(), db=decoder["projection.bias"].copy(),
                      batch_size=1, steps=1)
    return model, tokens, obs, decoder, batch


def test_true_contexts_and_labels_reproduce_the_client_gradient():
    model, tokens, _, decoder, batch = client(3, length=4)
    target = [torch.as_tensor(decoder[n]) for n in model.decoder_parameters()]
    contexts = model.softmax_inputs(batch)[0, :, SIZES["decoder_hidden"]:].detach()
    truth = tokens + [EOS]
    onehot = torch.nn.functional.one_hot(torch.tensor(truth), V).float()
    norm2 = float(gradient_distance([torch.zeros_like(t) for t in target], target))
    assert float(gradient_distance(soft_label_gradients(model, contexts, onehot), target)) < 1e-7 * norm2
    bow = torch.tensor(sorted(set(truth)))  # the same through the BoW restriction of eq. 8
    restricted = torch.stack([(bow == c).float() for c in truth])
    assert float(gradient_distance(soft_label_gradients(model, contexts, restricted, bow), target)) < 1e-7 * norm2
    wrong = onehot.roll(1, dims=0)  # a permuted transcript does not match
    assert float(gradient_distance(soft_label_gradients(model, contexts, wrong), target)) > 1e-2 * norm2


def test_gm_bow_recovers_short_transcripts_and_beats_gm_without_bow():
    best_hits = first_hits = plain_hits = 0
    for seed in range(5):
        model, tokens, obs, decoder, _ = client(seed)
        with_bow = get_attack("gm_bow")(obs, model=model, decoder_update=decoder, runs=2, tol=1e-5, **FAST)
        plain = get_attack("gm_asr")(obs, model=model, decoder_update=decoder, tol=1e-5, **FAST)
        S = len(tokens) + 1
        assert with_bow.num_labels == plain.num_labels == S  # RLG's rank estimate, not the truth
        assert with_bow.info["bow"] == sorted(set(tokens) | {EOS})
        assert with_bow.info["num_variables"] == S * (model.context_dim + len(set(tokens) | {EOS}))
        assert plain.info["num_variables"] == S * (model.context_dim + V)
        for pred in (with_bow, plain):
            assert pred.labels == frozenset(c for c in pred.info["transcript"] if c > 2)
            assert pred.info["steps"] <= FAST["max_steps"] and EOS not in pred.info["transcript"]
        best_hits += with_bow.info["transcript"] == tokens
        first_hits += with_bow.info["runs"][0]["transcript"] == tokens  # the 1-run column of Table 5
        plain_hits += plain.info["transcript"] == tokens
        if with_bow.info["transcript"] == tokens:  # an exact reconstruction matches the gradient closely
            assert with_bow.info["relative_distance"] < 1e-2
    assert best_hits >= 4, (best_hits, first_hits, plain_hits)
    assert first_hits >= plain_hits, (best_hits, first_hits, plain_hits)  # 1 run against 1 run


def test_best_of_runs_selects_the_lowest_distance_and_keeps_run_order():
    model, _, obs, decoder, _ = client(1)
    short = dict(FAST, max_steps=40, patience=None)
    preds = [get_attack("gm_bow")(obs, model=model, decoder_update=decoder, runs=r, seed=7, **short) for r in (1, 2, 3)]
    runs = preds[2].info["runs"]
    assert len(runs) == 3 and [r["steps"] for r in runs] == [40, 40, 40]
    for few in (preds[0].info["runs"], preds[1].info["runs"]):  # run r is seeded by (seed, r), whatever the batch
        assert [r["transcript"] for r in few] == [r["transcript"] for r in runs[:len(few)]]
        assert [r["distance"] for r in few] == pytest.approx([r["distance"] for r in runs[:len(few)]], rel=0.05)
    assert len({r["distance"] for r in runs}) == 3  # different starts
    best = min(runs, key=lambda r: r["distance"])
    assert preds[2].info["distance"] == best["distance"] and preds[2].info["transcript"] == best["transcript"]
    other = get_attack("gm_bow")(obs, model=model, decoder_update=decoder, runs=1, seed=8, **short)
    assert other.info["runs"] != runs[:1]
    # reconstruct's distance is the squared distance of the decoder update, the relative one scaled back
    direct = reconstruct(model, decoder, preds[0].num_labels, bow=preds[0].info["bow"], seed=7, **short)
    assert direct[0].distance == pytest.approx(preds[0].info["runs"][0]["distance"])


def test_num_labels_overrides_the_rank_estimate():
    model, tokens, obs, decoder, _ = client(2, length=3)
    pred = get_attack("gm_asr")(obs, model=model, decoder_update=decoder, num_labels=6,
                                **dict(FAST, max_steps=5, patience=None))
    assert pred.num_labels == 6 and pred.info["rank_given"]
    assert pred.info["num_variables"] == 6 * (model.context_dim + V)


def test_not_applicable_without_single_step_single_utterance_or_inputs():
    model, _, obs, decoder, _ = client(0)
    opts = dict(FAST, max_steps=3)
    for method in ("gm_asr", "gm_bow"):
        assert get_attack(method).needs >= {"model", "decoder_update"}
        for bad in (Observation(dW=obs.dW, batch_size=2, steps=1), Observation(dW=obs.dW, batch_size=1, steps=4)):
            rec = run_attack(method, bad, model=model, decoder_update=decoder, **opts)
            assert rec["status"] == "n/a" and "single-utterance 1-step" in rec["reason"]
        rec = run_attack(method, obs, model=model, **opts)
        assert rec["status"] == "n/a" and "decoder_update" in rec["reason"]
        rec = run_attack(method, obs, decoder_update=decoder, **opts)
        assert rec["status"] == "n/a" and "model" in rec["reason"]
        partial = {k: v for k, v in decoder.items() if not k.startswith("embedding")}
        rec = run_attack(method, obs, model=model, decoder_update=partial, **opts)
        assert rec["status"] == "n/a" and "embedding.weight" in rec["reason"]
        rec = run_attack(method, obs, model=torch.nn.Linear(3, 3), decoder_update=decoder, **opts)
        assert rec["status"] == "n/a" and "ASR model" in rec["reason"]
    assert run_attack("gm_bow", obs, model=model, decoder_update=decoder, **opts)["status"] == "ok"


def _engine(model, decoder, columns):
    _, target = _target(model, decoder, torch.device("cpu"))
    scale = float(sum((t.double() ** 2).sum() for t in target)) ** 0.5
    names = list(model.decoder_parameters())
    return _Batch(model, {n: t / scale for n, t in zip(names, target)}, columns, torch.device("cpu"), scale), \
        target, scale


def test_batched_distance_is_each_runs_gradient_distance():
    """The closed-form, run-batched distance equals the autograd one of soft_label_gradients, run by run."""
    model, tokens, _, decoder, _ = client(4, length=3)
    S = len(tokens) + 1
    for columns in (sorted(set(tokens) | {EOS, 17}), None):
        eng, target, scale = _engine(model, decoder, columns)
        K = V if columns is None else len(columns)
        starts = [initial_variables(S, K, model.context_dim, 3, r, 0.5) for r in range(3)]
        A = torch.stack([a for a, _ in starts])
        P = torch.stack([p for _, p in starts]) + 0.2 * torch.rand(3, S, K, generator=torch.Generator().manual_seed(1))
        cols = None if columns is None else torch.tensor(columns)
        ref = [float(gradient_distance(soft_label_gradients(model, A[r], P[r], cols, scale=scale),
                                       [t / scale for t in target])) for r in range(3)]
        assert eng.distance(A, P, exact=True).tolist() == pytest.approx(ref, rel=1e-5)
        assert eng.distance(A, P.requires_grad_(True)).tolist() == pytest.approx(ref, rel=1e-4)


def test_batched_runs_equal_runs_done_alone_and_the_former_sequential_runs():
    model, tokens, obs, decoder, _ = client(1)
    S, bow = len(tokens) + 1, sorted(set(tokens) | {EOS})
    opts = dict(FAST, max_steps=120, patience=None)
    batched = reconstruct(model, decoder, S, bow=bow, runs=3, seed=5, **opts)
    alone = reconstruct(model, decoder, S, bow=bow, runs=3, seed=5, batch_runs=1, **opts)
    former = reconstruct_sequential(model, decoder, S, bow=bow, runs=3, seed=5, **opts)
    for b, a, f in zip(batched, alone, former):
        assert b.transcript == a.transcript == f.transcript and b.steps == a.steps == f.steps == 120
        # float32 round-off differs with the batch size: equal to the round-off of a distance near 0
        assert b.relative_distance == pytest.approx(a.relative_distance, rel=1e-2, abs=1e-4)
        assert b.relative_distance == pytest.approx(f.relative_distance, rel=1e-2, abs=1e-4)
        assert len(b.history) == 120 and b.history[-1] == pytest.approx(a.history[-1], rel=1e-2, abs=1e-4)
    assert len({r.relative_distance for r in batched}) == 3  # different seeded starts
    # the same with the options the attack passes through
    pred = get_attack("gm_bow")(obs, model=model, decoder_update=decoder, runs=3, seed=5, **opts)
    assert [r["transcript"] for r in pred.info["runs"]] == [r.transcript for r in batched]
    with pytest.raises(TypeError, match="unknown gradients-matching options"):
        get_attack("gm_bow")(obs, model=model, decoder_update=decoder, no_such_option=1, **opts)


def test_early_stopping_on_the_gradient_distance():
    model, tokens, _, decoder, _ = client(2, length=3)
    S, bow = len(tokens) + 1, sorted(set(tokens) | {EOS})
    opts = dict(FAST, max_steps=300, patience=None)
    runs = reconstruct(model, decoder, S, bow=bow, runs=2, tol=10.0, **opts)  # every start is below 10
    assert [(r.steps, r.stopped, len(r.history)) for r in runs] == [(1, "tol", 1), (1, "tol", 1)]
    runs = reconstruct(model, decoder, S, bow=bow, runs=2, plateau=5, plateau_factor=0.0, **opts)
    assert [(r.steps, r.stopped) for r in runs] == [(6, "plateau"), (6, "plateau")]  # never 0 x best
    runs = reconstruct(model, decoder, S, bow=bow, runs=2, tol=1e-4, **dict(opts, schedule="cosine", min_lr=0.001))
    for r in runs:
        assert r.stopped in ("tol", "max_steps") and len(r.history) == r.steps <= 300
        assert (r.stopped == "tol") == (r.history[-1] < 1e-4)
    with pytest.raises(ValueError, match="schedule"):
        reconstruct(model, decoder, S, bow=bow, schedule="nope", **opts)
    with pytest.raises(ValueError, match="optimizer"):
        reconstruct(model, decoder, S, bow=bow, optimizer="nope", **opts)


def test_a_short_utterance_is_reconstructed_exactly_with_bow():
    model, tokens, obs, decoder, _ = client(11, length=2)
    pred = get_attack("gm_bow")(obs, model=model, decoder_update=decoder, runs=3, seed=0,
                                **dict(FAST, patience=None, schedule="cosine", tol=1e-6, plateau=150))
    assert pred.info["bow"] == sorted(set(tokens) | {EOS})
    assert pred.info["transcript"] == tokens and pred.info["relative_distance"] < 1e-3
    best = min(pred.info["runs"], key=lambda r: r["distance"])
    assert best["history"][-1] < best["history"][0] / 100  # convergence is recorded per step


PIECES = ["<unk>", "<s>", "</s>", "\u2581the", "\u2581cat", "\u2581sat", "\u2581on", "\u2581a", "\u2581mat",
          "\u2581ca", "t", "s"]
decode = functools.partial(pieces_to_words, pieces=PIECES)


def test_word_error_rate_exact_match_and_length_error_on_hand_examples():
    ref = [3, 4, 5]  # the cat sat
    assert decode(ref + [EOS]) == ["the", "cat", "sat"] and decode([9, 10, 11]) == ["cats"]
    assert word_error_rate(ref, ref, decode) == 0.0 and exact_match(ref, ref, decode) == 1.0
    assert exact_match([3, 9, 10, 5], ref, decode) == 1.0  # "▁ca" "t" is the word "cat"
    assert word_error_rate([3, 9, 10, 11, 5], ref, decode) == pytest.approx(1 / 3)  # cats: 1 substitution
    assert word_error_rate([3, 5], ref, decode) == pytest.approx(1 / 3)  # 1 deletion
    assert word_error_rate([7, 3, 4, 5, 6, 7, 8], ref, decode) == pytest.approx(4 / 3)  # 4 insertions: > 1
    assert exact_match([7, 3, 4, 5, 6, 7, 8], ref, decode) == 0.0
    assert word_error_rate([], ref, decode) == 1.0
    assert word_error_rate([5, 4, 3], ref, decode) == pytest.approx(2 / 3)  # order matters (a BoW is not enough)
    with pytest.raises(ValueError):
        word_error_rate(ref, [EOS], decode)
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    assert length_error(15, 16) == pytest.approx(1 / 16) and length_error(18, 16) == pytest.approx(-1 / 8)
    assert length_error(18, 16, absolute=True) == pytest.approx(1 / 8) and length_error(16, 16) == 0.0
