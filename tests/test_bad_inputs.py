"""Issue 12: every bad input one clear line (exit 2 bad input, 3 not applicable, no traceback); labels
never read outside scoring; config keys that name a stage, model, dataset or method checked before any
job runs; output files readable under the user's umask; tables (and figures) free of wall times."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_copy import copy_workflow

from labelleak import cli
from labelleak.attacks import registry
from labelleak.attacks.base import OPTION_NEEDS, run_attack
from labelleak.config import check_overrides, validate_config
from labelleak.errors import ConfigError, NotApplicable, UpdateFileError
from labelleak.io import write_json, write_text
from labelleak.jobs import tables
from labelleak.updates.format import FORMAT_VERSION, load_ground_truth, load_observation, load_update, save_update

ROOT = Path(__file__).resolve().parents[1]
#: every attack that needs nothing but the update file (the others exit 3 without --checkpoint etc.)
UPDATE_ONLY = sorted(name for name, attack in registry().items() if not attack.needs & OPTION_NEEDS)


def _arrays(d=20, C=10, seed=0):
    rng = np.random.default_rng(seed)
    return dict(dW=rng.normal(size=(d, C)), db=rng.normal(size=C), W=rng.normal(size=(d, C)), b=rng.normal(size=C))


def _reveal(capsys, *argv):
    """(exit code, stdout, stderr) of ``labelleak reveal ARGV`` run in-process."""
    rc = cli.main(["reveal", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("labelleak: ") and "Traceback" not in err


# --------------------------------------------------------------------------- 1. a .npy under an .npz name
@pytest.fixture
def npy_as_npz(tmp_path):
    path = tmp_path / "update.npz"
    with open(path, "wb") as fh:
        np.save(fh, _arrays()["dW"])
    return path


@pytest.mark.parametrize("method", UPDATE_ONLY)
def test_npy_saved_as_npz_exits_2_with_one_line(capsys, npy_as_npz, method):
    rc, out, err = _reveal(capsys, "--method", method, npy_as_npz)
    assert rc == 2 and out == "" and _one_line(err) and ".npy" in err, err


def test_npy_saved_as_npz_no_traceback_in_a_real_process(npy_as_npz):
    proc = subprocess.run([sys.executable, "-m", "labelleak.cli", "reveal", "--method", "yin", str(npy_as_npz)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and ".npy" in proc.stderr


def test_npy_saved_as_npz_is_an_update_file_error(npy_as_npz):
    for load in (load_observation, load_update, load_ground_truth):
        with pytest.raises(UpdateFileError, match="single .npy array") as err:
            load(npy_as_npz)
        assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- 2. format_version
def test_newer_format_version_is_refused_naming_the_supported_one(capsys, tmp_path):
    path = tmp_path / "v99.npz"
    np.savez(path, **_arrays(), format_version=np.int64(99))
    rc, out, err = _reveal(capsys, "--method", "yin", path)
    assert rc == 2 and out == "" and _one_line(err)
    assert "format_version 99" in err and f"format_version {FORMAT_VERSION}" in err


def test_missing_format_version_is_read_as_an_older_writer(capsys, tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, **_arrays())  # no format_version at all
    rc, out, err = _reveal(capsys, "--method", "yin", path)
    assert rc == 0 and err == "" and json.loads(out)["method"] == "yin"


@pytest.mark.parametrize("bad", [np.array([1, 2]), np.float64(1.0), np.int64(0)], ids=["array", "float", "zero"])
def test_malformed_format_version_is_one_line(tmp_path, bad):
    path = tmp_path / "bad.npz"
    np.savez(path, **_arrays(), format_version=bad)
    with pytest.raises(UpdateFileError, match="format_version") as err:
        load_observation(path)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- 3. labels: scoring only
def test_labels_outside_the_classes_do_not_stop_any_attack(capsys, tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    arrays = _arrays()
    np.savez(good, **arrays, batch_size=np.int64(4), labels=np.array([1, 2, 3, 4]))
    np.savez(bad, **arrays, batch_size=np.int64(4), labels=np.array([1, 2, 3, 40]))
    for method in UPDATE_ONLY:
        answers = [_reveal(capsys, "--method", method, path) for path in (good, bad)]
        assert answers[0][:2] == answers[1][:2], method  # the labels change nothing an attack sees
        assert "labels" not in answers[1][2], (method, answers[1])
        assert answers[1][0] in (0, 3), (method, answers[1])
    with pytest.raises(UpdateFileError, match=r"'labels' must lie in \[0, 10\)") as err:
        load_ground_truth(bad)  # the analysis side may refuse them, with one line
    assert "\n" not in str(err.value)


def test_the_observation_never_reads_the_labels(tmp_path):
    """A labels member that cannot even be read (an object array) does not concern the attacker's load."""
    path = tmp_path / "u.npz"
    np.savez(path, **_arrays())
    with zipfile.ZipFile(path, "a") as zf, zf.open("labels.npy", "w") as fh:
        np.lib.format.write_array(fh, np.array([1, "x"], dtype=object), allow_pickle=True)
    obs = load_observation(path)
    assert obs.num_classes == 10
    with pytest.raises(UpdateFileError):
        load_ground_truth(path)


# --------------------------------------------------------------------------- 4. overflowing counts
def test_ilrg_on_an_update_scaled_by_1e30_is_not_applicable(capsys, tmp_path):
    a = _arrays()
    path = tmp_path / "big.npz"
    save_update(path, a["dW"] * 1e30, db=a["db"] * 1e30, W=a["W"], b=a["b"], batch_size=4, labels=[1, 2, 3, 4])
    rc, out, err = _reveal(capsys, "--method", "ilrg", path)
    assert rc == 3 and out == "" and _one_line(err) and "ilrg" in err and "int64" in err, err
    record = run_attack("ilrg", load_observation(path))  # the pipeline's n/a row, with the reason
    assert record["status"] == "n/a" and "int64" in record["reason"] and record["num_labels"] is None


@pytest.mark.parametrize("method", ["llg", "idlg"])
def test_column_sums_that_overflow_are_not_applicable(capsys, tmp_path, method):
    dW = np.full((20, 10), -1e308)
    dW[:, 1] = 1e308  # every column sums past the float range
    path = tmp_path / "overflow.npz"
    save_update(path, dW, batch_size=4)
    rc, out, err = _reveal(capsys, "--method", method, path)
    assert rc == 3 and out == "" and _one_line(err) and "overflow" in err, err


def test_geng_counts_are_guarded():
    from labelleak.attacks.geng import discretise

    with pytest.raises(NotApplicable, match="not finite"):
        discretise(np.array([1.0, np.inf, 0.0]), 4)
    counts = discretise(np.array([1e30, 1.0, -1e30]), 4)  # no int64 wrap-around, no 1e30-long list
    assert sum(counts.values()) == 4 and set(counts) <= {0, 1} and all(v > 0 for v in counts.values())


def test_negative_num_labels_is_one_line(capsys, tmp_path):
    path = tmp_path / "u.npz"
    save_update(path, _arrays()["dW"])
    method = "rlg" if "rlg" in registry() else UPDATE_ONLY[0]
    rc, out, err = _reveal(capsys, "--method", method, "--num-labels", "-1", path)
    assert rc == 2 and out == "" and _one_line(err) and "--num-labels" in err


# --------------------------------------------------------------------------- reveal: every bad file
def _write_bad(tmp_path: Path, which: str) -> Path:
    path = tmp_path / f"{which}.npz"
    a = _arrays()
    if which == "directory":
        path.mkdir()
    elif which == "empty":
        path.write_bytes(b"")
    elif which == "ndim1":
        np.savez(path, dW=a["dW"][0])
    elif which == "ndim3":
        np.savez(path, dW=a["dW"][None])
    elif which == "int":
        np.savez(path, dW=a["dW"].astype(np.int64))
    elif which == "object":
        with open(path, "wb") as fh:
            np.savez(fh, dW=np.array([[1.0, "x"]], dtype=object))
    elif which == "nan":
        a["dW"][3, 4] = np.nan
        np.savez(path, dW=a["dW"])
    elif which == "not_an_array":  # a zip member that is no .npy: numpy hands back raw bytes
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("dW.npy", b"not a numpy array")
    elif which == "meta_list":
        np.savez(path, dW=a["dW"], meta=np.asarray("[1, 2]"))
    return path  # "missing": never written


@pytest.mark.parametrize("which", ["missing", "directory", "empty", "ndim1", "ndim3", "int", "object", "nan",
                                   "not_an_array", "meta_list"])
def test_reveal_bad_file_exits_2_with_one_line(capsys, tmp_path, which):
    path = _write_bad(tmp_path, which)
    for method in UPDATE_ONLY:
        rc, out, err = _reveal(capsys, "--method", method, path)
        assert rc == 2 and out == "" and _one_line(err) and str(path) in err, (method, err)


# --------------------------------------------------------------------------- 5. config keys
@pytest.fixture
def cfg():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize(
    "edit, key, words",
    [
        (lambda c: c["table4"].update(stage="finetuned"), "table4.stage", "finetuned"),
        (lambda c: c["defense_matrix"].update(stage="finetuned"), "defense_matrix.stage", "finetuned"),
        (lambda c: c["utility"].update(model="nope"), "utility.model", "nope"),
        (lambda c: c["utility"].update(dataset="nope"), "utility.dataset", "nope"),
        (lambda c: c["defense_matrix"].update(model="nope"), "defense_matrix.model", "nope"),
        (lambda c: c["defense_matrix"].update(dataset="nope"), "defense_matrix.dataset", "nope"),
        (lambda c: c["table4"].update(models=["efficientnet_b0", "nope"]), "table4.models.1", "nope"),
        (lambda c: c["table4"].update(dataset="nope"), "table4.dataset", "nope"),
        (lambda c: c["ilrg_table"].update(composition="unique"), "ilrg_table.batch_sizes.1", "256"),
        (lambda c: c["sampling"].update(composition="unique"), "ilrg_table.batch_sizes.1", "(sampling.composition)"),
        (lambda c: c.update(sampling={"num_batches": 10, "composition": "unique"},
                            table1={**c["table1"], "batch_sizes": [10, 2000]}), "table1.batch_sizes.1", "1000"),
        (lambda c: c["geng_table"].update(batch_sizes=[8, 128]), "geng_table.batch_sizes.1", "repeats"),
        (lambda c: c["geng_table"].update(batch_sizes=[1], steps=[1]), "geng_table.batch_sizes.0", "at least 2"),
        (lambda c: c["training"]["checkpoints"].update({101: 101}), "training.checkpoints.101", "101"),
        (lambda c: c["training"]["checkpoints"].update({"fine tuned": 7}), "training.checkpoints.fine tuned", "7"),
        (lambda c: c["speech"]["training"]["checkpoints"].update({101: 101}), "speech.training.checkpoints.101",
         "quote"),
        (lambda c: c["training"]["checkpoints"].update(pretrained=-101), "training.checkpoints.pretrained", "-101"),
        (lambda c: c["training"]["checkpoints"].update(pretrained="101"), "training.checkpoints.pretrained", "'101'"),
        (lambda c: c["models"].update({"my model": {"arch": "fcn3"}}), "models.my model", "my model"),
    ],
)
def test_config_key_is_named_with_its_own_path(cfg, edit, key, words):
    bad = copy.deepcopy(cfg)
    edit(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    msg = str(err.value)
    assert f"config key '{key}':" in msg and words in msg and "\n" not in msg, msg


def test_utility_leakage_method_must_be_scored_by_the_defense_matrix(cfg):
    bad = copy.deepcopy(cfg)
    bad["utility"]["leakage_method"] = "geng"  # an attack, but not one of defense_matrix.methods
    bad["table4"]["methods"] = ["rlg_true_s"]  # independent of which attacks are registered right now
    bad["defense_matrix"]["methods"] = ["yin", "idlg"]
    with pytest.raises(ConfigError, match=r"config key 'utility.leakage_method': 'geng'") as err:
        validate_config(bad)
    assert "\n" not in str(err.value)


def test_empty_mapping_merged_over_the_default_is_an_error():
    with pytest.raises(ConfigError, match=r"config key 'models': an empty mapping") as err:
        check_overrides({"models": {}})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"config key 'training.checkpoints'"):
        check_overrides({"training": {"checkpoints": {}}})
    check_overrides({})  # an empty override file: nothing to merge, nothing wrong
    check_overrides({"attacks": {"yin": {}}, "models": {"mine": {"arch": "fcn3"}}})  # {} where no entries needed



@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
@pytest.mark.parametrize("override, key", [("table4: {stage: finetuned}\n", "table4.stage"),
                                           ("models: {}\n", "models")])
def test_dry_run_stops_on_one_line_naming_the_key(tmp_path, override, key):
    work = copy_workflow(tmp_path / "wf")
    (work / "bad.yaml").write_text(override)
    proc = subprocess.run(["snakemake", "-n", "tables", "--configfile", "bad.yaml"], cwd=work, capture_output=True,
                          text=True, timeout=300)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("labelleak:")]
    assert proc.returncode != 0 and len(ours) == 1 and f"config key '{key}'" in ours[0], proc.stderr[-2000:]
    assert "MissingInputException" not in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- 6. file modes
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomically_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "t.txt", "x\n")
        write_json(tmp_path / "t.json", {"a": 1})
        save_update(tmp_path / "u.npz", _arrays()["dW"])
    finally:
        os.umask(old)
    for name in ("t.txt", "t.json", "u.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# --------------------------------------------------------------------------- 7. tables hold results only
def _leaderboard_cfg():
    return {"seed": 0, "sampling": {"composition": "random", "num_batches": 3},
            "models": {"lenet_swish": {"arch": "lenet5", "activation": "swish"}},
            "leaderboard": {"settings": [{"dataset": "synth100", "model": "lenet_swish"}], "stages": ["untrained"],
                            "batch_sizes": [8], "methods": ["yin", "ilrg"], "num_batches": 3,
                            "figure_stage": "untrained"}}


def _leaderboard_scores(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)  # only the measured times differ between "runs"
    rows = []
    for method, counts in (("yin", False), ("ilrg", True)):
        for b in range(3):
            rows.append({"dataset": "synth100", "model": "lenet_swish", "arch": "lenet5", "activation": "swish",
                         "stage": "untrained", "n": 8, "k": 1, "method": method, "batch": f"{b:03d}", "status": "ok",
                         "seconds": float(rng.uniform(0.01, 5)), "gives_counts": counts, "f1": 0.5 + 0.1 * b,
                         "count_exact_match": float(b % 2) if counts else np.nan})
    return pd.DataFrame(rows)


def test_leaderboard_table_and_figure_are_byte_identical_across_runs(tmp_path, monkeypatch):
    cfg = _leaderboard_cfg()
    runs = []
    for run, epoch in enumerate(("0", "1000000000")):  # a later run: another clock, other times
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        scores = tmp_path / f"scores{run}.csv"
        _leaderboard_scores(run).to_csv(scores, index=False)
        out = {k: tmp_path / f"run{run}" / f"leaderboard.{k}" for k in ("csv", "md", "tex", "pdf", "png")}
        out["times"] = tmp_path / f"run{run}" / "benchmarks" / "attack_times.csv"
        tables.render(cfg, "leaderboard", scores, out)
        runs.append(out)
    for key in ("csv", "md", "tex", "pdf", "png"):
        assert runs[0][key].read_bytes() == runs[1][key].read_bytes(), key
    for key in ("csv", "md", "tex"):
        text = runs[0][key].read_text()
        assert "median" not in text and "seconds" not in text and "s/update" not in text, key
    times = pd.read_csv(runs[0]["times"]).set_index("method")
    assert set(times.index) == {"yin", "ilrg"} and (times["n_updates"] == 3).all() and (times["median_s"] > 0).all()
    assert not runs[0]["times"].read_bytes() == runs[1]["times"].read_bytes()


def test_same_figure_rendered_twice_is_byte_identical(tmp_path, monkeypatch):
    from labelleak.reports.defenses import privacy_utility_figure

    frame = pd.DataFrame({"algorithm": ["fedsgd", "fedsgd"], "defense": ["none", "signsgd"],
                          "leakage": [0.9, np.nan], "accuracy": [0.8, 0.6]})
    paths = []
    for run, epoch in enumerate(("0", "1000000000")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        out = {k: tmp_path / f"f{run}.{k}" for k in ("pdf", "png")}
        privacy_utility_figure(frame, "RLG f1", "title", out)
        paths.append(out)
    assert paths[0]["pdf"].read_bytes() == paths[1]["pdf"].read_bytes()
    assert paths[0]["png"].read_bytes() == paths[1]["png"].read_bytes()
    assert b"CreationDate" not in paths[0]["pdf"].read_bytes()


def test_utility_table_has_no_wall_times(tmp_path):
    cfg = {"seed": 0, "defenses": {"delta": 1e-5},
           "defense_matrix": {"model": "efficientnet_b0", "batch_size": 10},
           "utility": {"dataset": "synth10", "model": "lenet_relu", "algorithms": ["fedsgd"],
                       "defenses": ["none", "signsgd"], "clients": 2, "rounds": {"fedsgd": 2, "fedavg": 1},
                       "local_steps": {"fedsgd": 1, "fedavg": 2}}}
    scores = tmp_path / "matrix.csv"
    pd.DataFrame([{"model": "efficientnet_b0", "n": 10, "method": "rlg", "defense": d, "status": "ok",
                   "precision": 1.0, "recall": 1.0, "f1": f, "exact_match": 1.0}
                  for d, f in (("none", 1.0), ("signsgd", 0.7))]).to_csv(scores, index=False)
    outs = []
    for run in range(2):
        runs = []
        for d in ("none", "signsgd"):
            path = tmp_path / f"run{run}" / f"{d}.json"
            write_json(path, {"algorithm": "fedsgd", "defense": d, "accuracy": 0.8, "ci_low": 0.7, "ci_high": 0.9,
                              "n_test": 100, "epsilon": None, "seconds": 1.5 + run, "history": [],
                              "server_lr": 0.05})
            runs.append(path)
        out = {k: tmp_path / f"run{run}" / f"utility.{k}" for k in ("csv", "md", "pdf", "png")}
        out["times"] = tmp_path / f"run{run}" / "benchmarks" / "train_times.csv"
        tables.render(cfg, "utility", scores, out, runs)
        outs.append(out)
    for key in ("csv", "md", "pdf", "png"):
        assert outs[0][key].read_bytes() == outs[1][key].read_bytes(), key
    assert "seconds" not in outs[0]["csv"].read_text() and "seconds" not in outs[0]["md"].read_text()
    assert pd.read_csv(outs[1]["times"])["seconds"].tolist() == [2.5, 2.5]


def test_timing_files_are_declared_outputs_of_their_rules():
    rules = {p.name: p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk")}
    assert 'times="results/benchmarks/leaderboard/attack_times.csv"' in rules["labels.smk"]
    assert 'times="results/benchmarks/utility/train_times.csv"' in rules["defenses.smk"]
