"""Keras as a gradient source: same gradients as torch on the same dense layer; RLG reads its updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.keras
tf = pytest.importorskip("tensorflow")

from labelleak.attacks import run_attack  # noqa: E402
from labelleak.updates.compute import projection_update  # noqa: E402
from labelleak.updates.format import load_observation, save_update  # noqa: E402
from labelleak.updates.keras_source import build_keras_model, keras_projection_update  # noqa: E402


class Head(nn.Module):
    """Features in, logits out: only the projection layer (the model contract with identity features)."""

    def __init__(self, d, c):
        super().__init__()
        self.head = nn.Linear(d, c)

    def forward(self, x):
        return self.head(x)


def twin_layers(d=24, c=10, seed=0):
    """A Keras Dense model and a torch Linear with the same weights (torch weight = Keras kernel.T)."""
    tf.keras.utils.set_random_seed(seed)
    keras_model = tf.keras.Sequential([tf.keras.Input((d,)), tf.keras.layers.Dense(c)])
    dense = keras_model.layers[-1]
    rng = np.random.default_rng(seed)
    dense.bias.assign(rng.normal(size=c).astype(np.float32))
    torch_model = Head(d, c)
    with torch.no_grad():
        torch_model.head.weight.copy_(torch.from_numpy(dense.kernel.numpy().T))
        torch_model.head.bias.copy_(torch.from_numpy(dense.bias.numpy()))
    return keras_model, torch_model


@pytest.mark.parametrize("num_steps", [1, 3])
def test_keras_and_torch_gradients_of_the_same_dense_layer_agree(num_steps):
    keras_model, torch_model = twin_layers()
    rng = np.random.default_rng(1)
    steps = [(rng.normal(size=(5, 24)).astype(np.float32), rng.integers(0, 10, size=5)) for _ in range(num_steps)]
    k = keras_projection_update(keras_model, steps, lr=0.1)
    t = projection_update(torch_model, [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in steps], lr=0.1)
    assert k.dW.shape == t.dW.shape == (24, 10)
    scale = np.abs(t.dW).max()
    assert scale > 1e-3
    np.testing.assert_allclose(k.dW, t.dW, atol=1e-5 * scale, rtol=1e-4)
    np.testing.assert_allclose(k.db, t.db, atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(k.W, t.W)
    # the Keras model is left as it was
    np.testing.assert_array_equal(keras_model.layers[-1].kernel.numpy(), k.W)


def test_rlg_recovers_the_labels_of_a_keras_dumped_update(tmp_path):
    model = build_keras_model("efficientnet_b0", num_classes=20, image_size=32, seed=3)
    labels = np.array([1, 4, 4, 9, 15, 2])
    x = np.random.default_rng(0).normal(size=(len(labels), 32, 32, 3)).astype(np.float32)
    upd = keras_projection_update(model, [(x, labels)])
    assert upd.dW.shape == (1280, 20)
    path = tmp_path / "keras.npz"
    save_update(path, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(labels), steps=1, labels=labels,
                meta={"framework": "keras"})
    record = run_attack("rlg", load_observation(path))
    assert record["status"] == "ok"
    assert record["labels"] == sorted(set(labels.tolist()))


def test_keras_models_through_the_pipeline_stages(tmp_path):
    """framework: keras -> train_model and dump_updates write Keras checkpoints and the usual update files."""
    import json

    from labelleak.jobs import dump, sample, train
    from labelleak.updates.format import load_truth

    cfg = {"seed": 0, "datasets": {"s": {"kind": "synthetic_images", "num_classes": 10, "image_size": 32,
                                         "train_size": 64, "eval_size": 40}},
           "models": {"eff_keras": {"arch": "efficientnet_b0", "framework": "keras", "weights": None}},
           "training": {"batch_size": 8, "lr": 0.01, "checkpoints": {"untrained": 0, "pretrained": 1}},
           "updates": {"bn_mode": "eval", "local_lr": 0.1}, "sampling": {"num_batches": 2, "composition": "random"}}
    ckpts = {"untrained": tmp_path / "untrained.pt", "pretrained": tmp_path / "pretrained.pt"}
    train.train(cfg, "s", "eff_keras", ckpts)
    assert all(p.is_file() for p in ckpts.values())
    batches = tmp_path / "batches.json"
    sample.sample(cfg, "s", "random", 5, 1, batches)
    outs = [tmp_path / "000.npz", tmp_path / "001.npz"]
    truths = [tmp_path / "000.json", tmp_path / "001.json"]
    dump.dump(cfg, "s", "eff_keras", "pretrained", ckpts["pretrained"], batches, outs, truths)
    for out, truth in zip(outs, truths):
        obs = load_observation(out)
        assert obs.dW.shape == (1280, 10) and obs.meta["framework"] == "keras" and obs.meta["checkpoint_step"] == 1
        record = run_attack("rlg", obs)
        assert record["labels"] == sorted(load_truth(truth).label_set)
    assert json.loads(json.dumps(obs.meta))["device"].startswith(("cpu", "gpu"))
