"""Study fl_rounds: a real Flower FedAvg run writes every client's update of every round (update + truth file)."""

from __future__ import annotations

import json

import pytest

from labelleak.attacks import run_attack
from labelleak.jobs.fl_rounds import client_ids, dump_fl_rounds
from labelleak.studies.labels import round_stages, section, study_rows
from labelleak.updates.format import load_observation, load_truth, load_update

pytest.importorskip("flwr")

CFG = {"seed": 0,
       "datasets": {"s": {"kind": "synthetic_images", "num_classes": 50, "image_size": 32, "train_size": 120,
                          "eval_size": 60}},
       "models": {"m": {"arch": "lenet5", "activation": "swish"}},
       "sampling": {"num_batches": 1, "composition": "random"},
       "fl_rounds": {"dataset": "s", "model": "m", "clients": 2, "rounds": 2, "local_steps": [1, 2], "batch_size": 4,
                     "lr": 0.05, "train_items": 120, "methods": ["rlg", "rlg_true_s"]}}


@pytest.mark.parametrize("k", [1, 2])
def test_every_client_update_of_every_round_is_written_and_revealed(tmp_path, k):
    paths = [(tmp_path / st / f"{c}.npz", tmp_path / st / f"{c}.json")
             for st in round_stages(2) for c in client_ids(2)]
    dump_fl_rounds(CFG, "s", "m", k, [u for u, _ in paths], [t for _, t in paths])
    for i, (update, truth_file) in enumerate(paths):
        obs, in_file = load_update(update)
        truth = load_truth(truth_file)
        assert in_file is None and truth.labels.size == 4 * k  # labels only in the truth file
        assert (obs.batch_size, obs.steps) == (4, k) and obs.meta["stage"] == f"round{i // 2 + 1}"
        assert "labels" not in json.dumps(load_observation(update).meta)
        rec = run_attack("rlg", load_observation(update), num_labels=int(truth.labels.size))
        assert rec["status"] == "ok" and set(rec["labels"]) == truth.label_set, (i, rec)


def test_the_second_run_gives_the_same_bytes(tmp_path):
    outs = []
    for run in ("a", "b"):
        paths = [(tmp_path / run / st / f"{c}.npz", tmp_path / run / st / f"{c}.json")
                 for st in round_stages(2) for c in client_ids(2)]
        dump_fl_rounds(CFG, "s", "m", 1, [u for u, _ in paths], [t for _, t in paths])
        outs.append([u.read_bytes() for u, _ in paths])
    assert outs[0] == outs[1]


def test_rows_are_rounds_by_clients():
    rows = study_rows(CFG, "fl_rounds", "u/{dataset}/{model}/{stage}/{composition}_N{n}_K{k}/{batch}.npz",
                      "r/{defense}/{method}/{dataset}/{model}/{stage}/{composition}_N{n}_K{k}/{batch}.json")
    assert len(rows) == 2 * 2 * 2 * 2  # rounds x K x methods x clients
    assert rows[0]["update"] == "u/s/m/round1/fl_N4_K1/000.npz"
    assert section(CFG, "fl_rounds")["stages"] == ["round1", "round2"]


def test_a_method_that_needs_the_model_is_refused_with_its_key():
    import copy

    from labelleak.config import check_defense_names_and_methods
    from labelleak.errors import ConfigError

    cfg = copy.deepcopy(CFG)
    cfg["fl_rounds"]["methods"] = ["rlg", "geng"]
    with pytest.raises(ConfigError, match=r"'fl_rounds.methods.1': 'geng' needs model") as err:
        check_defense_names_and_methods(cfg)
    assert "\n" not in str(err.value)
    cfg["fl_rounds"]["methods"] = ["nope"]
    with pytest.raises(ConfigError, match=r"'fl_rounds.methods.0': unknown attack 'nope'"):
        check_defense_names_and_methods(cfg)
