"""Defenses: each transform's definition, purity (input never changed), parsing, DP-SGD, and the
paper's finding that Sign-SGD stops RLG on a real update."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyNet, make_update

from labelleak.attacks.rlg import reveal_labels
from labelleak.defenses import DefenseError, apply, compute_step, families, parse
from labelleak.defenses.dpsgd import dp_projection_update, epsilon, per_sample_grads
from labelleak.errors import NotApplicable
from labelleak.metrics.sets import set_scores
from labelleak.updates.compute import projection_update

SMOKE = Path(__file__).resolve().parents[1] / "config" / "smoke.yaml"
ALL = ["none", "signsgd", "graddrop-0.5", "graddrop-0.9", "noise-0.01", "clip-1.0", "qsgd-4", "topk-0.1",
       "clip-0.5+noise-0.001", "graddrop-0.5+signsgd"]


def _tensors(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((40, 30)).astype(np.float32), rng.standard_normal(30).astype(np.float32))


@pytest.mark.parametrize("name", ALL)
def test_every_defense_is_pure_and_keeps_shapes(name):
    x = _tensors()
    before = tuple(t.copy() for t in x)
    out = apply(name, x, np.random.default_rng(1))
    for t, b, o in zip(x, before, out):
        assert np.array_equal(t, b)  # input untouched
        assert o.shape == t.shape and o.dtype == t.dtype
        assert not np.shares_memory(o, t)
    again = apply(name, x, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(out, again))  # seeded: reproducible


def test_none_is_identity_and_signsgd_is_the_sign():
    x = _tensors()
    assert all(np.array_equal(a, b) for a, b in zip(apply("none", x, np.random.default_rng(0)), x))
    s = apply("signsgd", x, np.random.default_rng(0))
    assert all(np.array_equal(a, np.sign(b)) for a, b in zip(s, x))


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_graddrop_zeroes_below_the_layer_quantile(p):
    dW, db = _tensors()
    out_W, out_b = apply(f"graddrop-{p}", (dW, db), np.random.default_rng(0))
    thr = np.quantile(np.abs(dW), p)  # per layer: dW's own quantile
    assert np.array_equal(out_W, np.where(np.abs(dW) < thr, 0, dW))
    assert abs((out_W == 0).mean() - p) < 0.01
    assert abs((out_b == 0).mean() - p) < 0.05


def test_topk_keeps_the_largest_magnitudes():
    dW, _ = _tensors()
    (out,) = apply("topk-0.1", (dW,), np.random.default_rng(0))
    k = int(np.ceil(0.1 * dW.size))
    assert (out != 0).sum() == k
    assert np.abs(dW[out != 0]).min() >= np.abs(dW[out == 0]).max()


def test_clip_scales_the_whole_update_to_the_norm():
    x = _tensors()
    norm = np.sqrt(sum((t.astype(np.float64) ** 2).sum() for t in x))
    out = apply("clip-1.0", x, np.random.default_rng(0))
    assert np.isclose(np.sqrt(sum((t.astype(np.float64) ** 2).sum() for t in out)), 1.0, rtol=1e-5)
    assert np.allclose(out[0], x[0] / norm, rtol=1e-5)
    big = apply(f"clip-{norm * 2:.3f}", x, np.random.default_rng(0))  # below the bound: unchanged
    assert all(np.allclose(a, b) for a, b in zip(big, x))


def test_noise_has_the_given_sigma_and_zero_mean():
    z = (np.zeros((300, 300), np.float32),)
    (out,) = apply("noise-0.5", z, np.random.default_rng(0))
    assert abs(out.std() - 0.5) < 0.01 and abs(out.mean()) < 0.01


def test_qsgd_is_unbiased_and_on_the_level_grid():
    dW, _ = _tensors()
    outs = np.stack([apply("qsgd-4", (dW,), np.random.default_rng(s))[0] for s in range(400)])
    norm = np.linalg.norm(dW.astype(np.float64))
    levels = np.abs(outs) / norm * 4
    assert np.allclose(levels, np.round(levels), atol=1e-4)  # |q| is a multiple of norm / s
    assert np.abs(outs.mean(0) - dW).max() < 0.25 * norm / 4  # E[q] = v


@pytest.mark.parametrize("bad", ["", "bogus", "graddrop", "graddrop-1.5", "qsgd-2.5", "noise-0.1-0.2",
                                 "signsgd+dpsgd-1-1", "clip-0", "GradDrop-0.5"])
def test_bad_names_are_one_line_errors(bad):
    with pytest.raises(DefenseError) as exc:
        parse(bad)
    assert "\n" not in str(exc.value)


def test_registry_and_composition_order():
    assert {"signsgd", "graddrop", "noise", "clip", "qsgd", "topk", "dpsgd"} <= set(families())
    steps = parse("clip-1.0+noise-0.01")
    assert [s.family.name for s in steps] == ["clip", "noise"] and steps[0].values == (1.0,)
    x = _tensors()
    composed = apply("clip-1.0+signsgd", x, np.random.default_rng(0))
    assert all(np.array_equal(a, np.sign(b)) for a, b in zip(composed, x))
    assert compute_step("dpsgd-1.0-0.5+signsgd").values == (1.0, 0.5) and compute_step("signsgd") is None


def test_signsgd_drops_rlg_exact_match_on_a_real_update():
    """The paper's Table 4 finding on a real swish-network update with N = 10: exact before, not after."""
    rng = np.random.default_rng(0)
    em_plain, em_sign, f1_sign = [], [], []
    for seed in range(4):
        labels = tuple(int(c) for c in rng.integers(0, 50, 10))
        _, _, upd = make_update("swish", d=64, num_classes=50, labels=labels, seed=seed)
        true = set(labels)
        em_plain.append(set_scores(reveal_labels(upd.dW).labels, true)["exact_match"])
        (signed,) = apply("signsgd", (upd.dW,), np.random.default_rng(seed))
        try:  # S from the spectrum: a Sign-SGD update has no gap at the label count (n/a, no match)
            scores = set_scores(reveal_labels(signed).labels, true)
        except NotApplicable:
            scores = {"exact_match": 0.0, "f1": 0.0}
        em_sign.append(scores["exact_match"])
        f1_sign.append(scores["f1"])
    assert np.mean(em_plain) == 1.0
    assert np.mean(em_sign) <= 0.25 and np.mean(f1_sign) < 0.9


def test_per_sample_gradients_sum_to_the_batch_gradient():
    torch.manual_seed(0)
    model = TinyNet(num_classes=20, activation="swish")
    x, y = torch.randn(6, 32), torch.randint(0, 20, (6,))
    g = per_sample_grads(model, x, y)
    upd = projection_update(model, [(x, y)])
    assert np.allclose(g["head.weight"].mean(0).numpy().T, upd.dW, atol=1e-6)


def test_dpsgd_without_noise_and_clipping_is_the_plain_update_and_clipping_bounds_it():
    model, batches, plain = make_update("swish", labels=(1, 7, 7, 20, 3, 3), steps=2, seed=3)
    dp = dp_projection_update(model, batches, clip=1e9, noise_multiplier=0.0, rng=np.random.default_rng(0))
    assert np.allclose(dp.dW, plain.dW, atol=1e-5) and np.allclose(dp.db, plain.db, atol=1e-5)
    x, y = batches[0]
    tight = dp_projection_update(model, [(x, y)], clip=1e-3, noise_multiplier=0.0, rng=np.random.default_rng(0))
    norm = np.sqrt((tight.dW.astype(np.float64) ** 2).sum() + (tight.db.astype(np.float64) ** 2).sum())
    assert norm <= 1e-3 + 1e-7  # the mean of clipped per-sample gradients, head part only
    noisy = dp_projection_update(model, [(x, y)], clip=1.0, noise_multiplier=1.0, rng=np.random.default_rng(0))
    assert np.std(noisy.dW - tight.dW) == pytest.approx(1.0 / len(y), rel=0.15)


def test_epsilon_decreases_with_noise_and_grows_with_steps():
    assert epsilon(0.0, 1.0, 1, 1e-5) == float("inf")
    e1, e2 = epsilon(1.0, 1.0, 1, 1e-5), epsilon(2.0, 1.0, 1, 1e-5)
    assert np.isfinite(e1) and e2 < e1 < epsilon(1.0, 1.0, 10, 1e-5)


def test_pareto_front_and_labels():
    from labelleak.reports.defenses import defense_label, pareto_front

    pts = np.array([[1.0, 0.9], [0.2, 0.8], [0.5, 0.7], [0.0, 0.1], [0.2, 0.5]])
    assert pareto_front(pts).tolist() == [3, 1, 0]  # sorted by leakage; (0.5, 0.7) and (0.2, 0.5) dominated
    assert defense_label("graddrop-0.9") == "GradDrop 90%"
    assert defense_label("clip-1.0+noise-0.01") == "Clip 1.0 + Noise sigma=0.01"


def test_defend_stage_writes_a_defended_copy_and_leaves_the_dump(update_file, tmp_path):
    from labelleak.jobs import defend
    from labelleak.updates.format import load_update

    src, labels = update_file(labels=(3, 11, 11, 40))
    raw = src.read_bytes()
    out = tmp_path / "defended" / "000.npz"
    defend.defend({"seed": 0}, "graddrop-0.9", [src], [out])
    assert src.read_bytes() == raw
    obs, truth = load_update(out)
    before, _ = load_update(src)
    assert obs.meta["defense"] == "graddrop-0.9" and truth is None  # the truth file stays the source's
    assert np.array_equal(obs.dW, apply("graddrop-0.9", (before.dW,), np.random.default_rng(0))[0])
    assert (obs.db == 0).mean() >= 0.5 and np.array_equal(obs.W, before.W)


def test_defense_config_errors_name_the_key():
    from labelleak.config import load_config, validate_config
    from labelleak.errors import ConfigError

    cfg = load_config(SMOKE)
    cfg["table4"]["defenses"] = ["none", "graddrop-2"]
    with pytest.raises(ConfigError, match=r"'table4.defenses.1'"):
        validate_config(cfg)
    cfg = load_config(SMOKE)
    cfg["defense_matrix"]["methods"] = ["rlg", "nope"]
    with pytest.raises(ConfigError, match=r"'defense_matrix.methods.1'"):
        validate_config(cfg)
    cfg = load_config(SMOKE)
    cfg["table4"]["speech_methods"] = ["rlg_true_s", "rlg_s"]
    with pytest.raises(ConfigError, match=r"'table4.speech_methods.1'"):
        validate_config(cfg)


def test_privacy_utility_figure_keeps_na_apart_and_labels_apart(tmp_path):
    """n/a leakage goes to the n/a strip (never at a made-up x); coinciding points share one label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from labelleak.reports import defenses as rd

    frame = pd.DataFrame({"algorithm": ["fedsgd"] * 4 + ["fedavg"] * 4,
                          "defense": ["none", "signsgd", "graddrop-0.5", "dpsgd-1.0-1.0"] * 2,
                          "leakage": [1.0, 0.2, 1.0, np.nan] * 2, "accuracy": [0.8, 0.7, 0.8, 0.2] * 2})
    shown = []
    real_close = plt.close
    plt.close = lambda fig=None: shown.append(fig)  # keep the figure to inspect it
    try:
        rd.privacy_utility_figure(frame, "RLG F1", "title", {k: tmp_path / f"f.{k}" for k in ("pdf", "png")})
    finally:
        plt.close = real_close
    fig = shown[0]
    strips = [ax for ax in fig.axes if [t.get_text() for t in ax.get_xticklabels()] == ["n/a"]]
    assert len(strips) == 2  # one n/a strip per algorithm
    for strip in strips:
        (pts,) = [c.get_offsets() for c in strip.collections]
        assert np.allclose(np.asarray(pts), [[0.0, 0.2]])  # only the DP-SGD point, at the strip's x
    labels = [t.get_text() for ax in fig.axes for t in ax.texts if ax not in strips]
    assert "1,3" in labels and "1" not in labels  # none and graddrop-0.5 coincide: one label
    real_close(fig)
