"""ASR updates and training on real computations with a small listen-attend-spell model.

Features are synthetic: each word piece is a fixed random 80-dim spectral pattern held for 3-5
frames, plus noise, so the tokens are recoverable from the audio and the model can learn them.
"""

from __future__ import annotations

import copy
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelleak.attacks import get_attack
from labelleak.attacks.rlg import estimate_rank
from labelleak.errors import LabelleakError, UpdateFileError
from labelleak.models.asr import EOS, build_asr_model, make_batch, sequence_loss
from labelleak.models.asr_train import asr_sizes, load_asr_checkpoint, train_asr
from labelleak.updates.asr import asr_update, decoder_path, load_decoder_update, save_asr_update
from labelleak.updates.format import load_observation, load_update

torch.set_num_threads(1)

SMALL = dict(encoder_hidden=16, encoder_layers=1, decoder_hidden=16, embedding_dim=8, attention_dim=16)
RLG_SIZES = dict(encoder_hidden=64, encoder_layers=1, decoder_hidden=64, embedding_dim=32, attention_dim=64)  # d = 192


class SyntheticSpeech:
    """Utterances of random pieces (ids >= 3) whose features are per-piece patterns plus noise."""

    def __init__(self, vocab: int, n: int, lengths=(2, 9), seed: int = 0, distinct: bool = False, noise=0.3):
        rng = np.random.default_rng(seed)
        self.patterns = rng.standard_normal((vocab, 80)).astype(np.float32)
        self.noise = noise
        self.utterances: dict[str, list[int]] = {}
        for i in range(n):
            k = int(rng.integers(*lengths))
            self.utterances[f"u{i:04d}"] = (3 + rng.choice(vocab - 3, size=k, replace=not distinct)).tolist()

    def features(self, utt: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(utt.encode()))
        toks = self.utterances[utt]
        x = np.repeat(self.patterns[toks], rng.integers(3, 6, size=len(toks)), axis=0)
        return (x + self.noise * rng.standard_normal(x.shape)).astype(np.float32)


def _model(vocab, seed=0, **sizes):
    torch.manual_seed(seed)
    return build_asr_model(vocab, **(sizes or SMALL))


# ------------------------------------------------------------------ (1) the gradient fact RLG relies on
def test_projection_gradient_is_HtG_over_S():
    data = SyntheticSpeech(40, 3, seed=1)
    model = _model(40)
    ids = list(data.utterances)
    upd = asr_update(model, [ids], data.utterances, data.features)

    batch = make_batch([data.features(u) for u in ids], [data.utterances[u] for u in ids])
    with torch.no_grad():
        H = model.softmax_inputs(batch)[batch.mask].double()
        z = model.projection(H.float()).double()
        G = torch.softmax(z, dim=1) - F.one_hot(batch.targets[batch.mask], 40).double()
    S = batch.num_targets
    assert S == sum(len(data.utterances[u]) + 1 for u in ids) == len(upd.labels)
    np.testing.assert_allclose(upd.dW, (H.T @ G / S).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(upd.db, (G.sum(0) / S).numpy(), rtol=1e-4, atol=1e-6)
    assert upd.dW.shape == (16 + 32, 40) and upd.steps == 1 and upd.batch_size == 3
    # labels: every target in order, each utterance's </s> included
    assert upd.labels.tolist() == [t for u in ids for t in data.utterances[u] + [EOS]]
    np.testing.assert_array_equal(upd.W, model.projection.weight.detach().numpy().T)
    np.testing.assert_allclose(upd.decoder["projection.weight"], upd.dW.T)


# ------------------------------------------------------------------ (2) rank and RLG on saved updates
def test_untrained_single_utterance_rank_and_rlg_exact(tmp_path):
    data = SyntheticSpeech(300, 4, lengths=(3, 16), seed=2, distinct=True)
    model = _model(300, **RLG_SIZES)
    rlg = get_attack("rlg")
    for i, (utt, toks) in enumerate(data.utterances.items()):
        upd = asr_update(model, [[utt]], data.utterances, data.features)
        S = len(toks) + 1
        assert upd.dW.shape == (192, 300) and S < 192
        assert estimate_rank(upd.dW) == S
        path = tmp_path / f"u{i}.npz"
        save_asr_update(path, upd, {"utt": utt})
        pred = rlg(load_observation(path))
        assert set(pred.labels) == set(toks) | {EOS}
        assert pred.num_labels == S


# ------------------------------------------------------------------ (3) K-step updates
def _sgd_by_hand(model, group, data, lr):
    local = copy.deepcopy(model)
    opt = torch.optim.SGD(local.parameters(), lr=lr)
    for ids in group:
        batch = make_batch([data.features(u) for u in ids], [data.utterances[u] for u in ids])
        opt.zero_grad()
        sequence_loss(local(batch), batch.targets, batch.mask).backward()
        opt.step()
    return local


def test_multi_step_update_matches_sgd_and_leaves_model_alone():
    data = SyntheticSpeech(40, 6, seed=3)
    model = _model(40)
    state = copy.deepcopy(model.state_dict())
    ids = list(data.utterances)
    group = [ids[0:2], ids[2:4], ids[4:6]]
    lr = 0.5
    upd = asr_update(model, group, data.utterances, data.features, local_lr=lr)

    for name, value in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(value, state[name]), name
    assert all(p.grad is None for p in model.parameters())

    local = _sgd_by_hand(model, group, data, lr)
    w0, wk = model.decoder_parameters(), local.decoder_parameters()
    assert set(upd.decoder) == set(w0) and {"embedding.weight", "projection.weight"} <= set(upd.decoder)
    for name in w0:
        expected = ((w0[name] - wk[name]) / lr).detach().numpy()
        np.testing.assert_allclose(upd.decoder[name], expected, rtol=1e-4, atol=2e-5, err_msg=name)
    np.testing.assert_allclose(upd.dW, upd.decoder["projection.weight"].T)
    assert upd.steps == 3 and upd.batch_size == 2
    assert upd.labels.tolist() == [t for ids_ in group for u in ids_ for t in data.utterances[u] + [EOS]]
    # K steps differ from one gradient on all the utterances (the weights move between steps)
    one = asr_update(model, [ids], data.utterances, data.features)
    assert not np.allclose(one.dW * 3, upd.dW, atol=1e-4)

    with pytest.raises(ValueError):
        asr_update(model, [ids[:2], ids[2:5]], data.utterances, data.features)


# ------------------------------------------------------------------ (4) files
def test_save_load_round_trip_and_one_line_errors(tmp_path):
    data = SyntheticSpeech(40, 4, seed=4)
    model = _model(40)
    ids = list(data.utterances)
    upd = asr_update(model, [ids[:2], ids[2:]], data.utterances, data.features, local_lr=0.1)
    path = tmp_path / "b" / "update_007.npz"
    save_asr_update(path, upd, {"stage": "0"})
    assert decoder_path(path) == tmp_path / "b" / "update_007.decoder.npz" and decoder_path(path).is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["update_007.decoder.npz", "update_007.npz"]

    obs, truth = load_update(path)
    np.testing.assert_array_equal(obs.dW, upd.dW)
    np.testing.assert_array_equal(obs.W, upd.W)
    assert truth is None  # the labels go to a truth file (jobs.dump.dump_asr), never into the update
    assert (obs.batch_size, obs.steps, obs.meta["stage"], obs.meta["local_lr"]) == (2, 2, "0", 0.1)
    dec = load_decoder_update(path)
    assert set(dec) == set(upd.decoder)
    for name in dec:
        np.testing.assert_array_equal(dec[name], upd.decoder[name])

    def one_line_error(p):
        with pytest.raises(UpdateFileError) as err:
            load_decoder_update(p)
        assert "\n" not in str(err.value) and "decoder" in str(err.value)
        return str(err.value)

    assert "no decoder update file" in one_line_error(tmp_path / "missing.npz")
    with open(decoder_path(path), "wb") as fh:
        np.savez(fh, format_version=np.asarray(1), **{"projection.bias": np.array([0.0, np.nan], np.float32)})
    assert "NaN" in one_line_error(path)
    decoder_path(path).write_bytes(b"not a zip file")
    assert "not a readable" in one_line_error(path)
    bad = copy.copy(upd)
    object.__setattr__(bad, "decoder", {**upd.decoder, "embedding.weight": upd.decoder["embedding.weight"] * np.nan})
    with pytest.raises(UpdateFileError):
        save_asr_update(tmp_path / "nan.npz", bad)
    assert not (tmp_path / "nan.npz").exists() and not decoder_path(tmp_path / "nan.npz").exists()


# ------------------------------------------------------------------ (5) training
def test_training_saves_stages_and_learns(tmp_path):
    data = SyntheticSpeech(30, 300, lengths=(2, 6), seed=5, noise=0.2)
    model = _model(30)
    initial = copy.deepcopy(model.state_dict())
    stages = {"0": 0, "early": 10, "late": 150}
    outputs = {s: tmp_path / f"ck_{s}.pt" for s in stages}
    lines: list[str] = []
    stats = train_asr(model, data.utterances, data.features, checkpoints=stages, outputs=outputs, batch_size=16,
                      lr=2e-2, seed=7, log=lines.append, log_every=25, held_out_size=40)

    for stage, step in stages.items():
        info = torch.load(outputs[stage], map_location="cpu", weights_only=True)
        assert (info["step"], info["stage"], info["vocab_size"]) == (step, stage, 30)
        assert info["sizes"] == asr_sizes(model)
        assert stats["checkpoints"][stage]["step"] == step
    ck0 = torch.load(outputs["0"], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(ck0[k], v) for k, v in initial.items())

    rebuilt = load_asr_checkpoint(outputs["late"])
    ids = list(data.utterances)[:4]
    batch = make_batch([data.features(u) for u in ids], [data.utterances[u] for u in ids])
    with torch.no_grad():
        assert torch.equal(rebuilt(batch), model.eval()(batch))

    curve = [loss for _, loss in stats["loss_curve"]]
    assert curve[-1] < 0.6 * curve[0]
    acc = {s: stats["checkpoints"][s]["accuracy"] for s in stages}
    # chance is 1/30 (the untrained model: 0.02); always predicting </s> at the right place gets 0.22
    assert acc["late"] > 0.35 and acc["0"] < 0.1
    assert stats["train_utterances"] == 260 and stats["held_out_utterances"] == 40
    assert any(line.startswith("step 25/150 loss ") and "s left" in line for line in lines)

    with pytest.raises(LabelleakError) as err:
        load_asr_checkpoint(tmp_path / "nope.pt")
    assert "\n" not in str(err.value)


def test_training_is_seeded(tmp_path):
    data = SyntheticSpeech(30, 40, seed=6)
    states = []
    for run in range(2):
        model = _model(30)
        train_asr(model, data.utterances, data.features, checkpoints={"a": 3}, outputs={"a": tmp_path / f"{run}.pt"},
                  batch_size=4, lr=1e-2, seed=11, log=lambda _: None)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
