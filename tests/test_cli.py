"""``labelleak reveal``: the JSON contract, exit codes, and one-line errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from labelleak.updates.format import save_update


def reveal(*args):
    proc = subprocess.run([sys.executable, "-m", "labelleak.cli", "reveal", *map(str, args)],
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("method", ["rlg", "yin"])
def test_reveal_prints_the_json_contract(update_file, method):
    path, truth = update_file(activation="relu")
    code, out, err = reveal("--method", method, path)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= {"method", "labels", "num_labels"} and result["method"] == method
    assert result["labels"] == sorted(result["labels"])
    assert set(truth) <= set(result["labels"])  # both are exact on ReLU features with distinct rows
    if method == "rlg":
        assert result["num_labels"] == 4
        assert result["labels"] == truth


def test_reveal_num_labels_given(update_file):
    path, truth = update_file(activation="tanh")
    code, out, _ = reveal("--method", "rlg", "--num-labels", 4, path)
    answer = json.loads(out)
    assert code == 0 and {k: answer[k] for k in ("method", "labels", "num_labels")} == {
        "method": "rlg", "labels": truth, "num_labels": 4}
    assert answer["rank"]["rank"] == 4 and answer["rank"]["margin"] > 1e3  # the estimate beside the given S


def _bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"garbage")
    shaped = tmp_path / "shape.npz"
    np.savez(shaped, dW=np.zeros((2, 3, 4), np.float32))
    nan = tmp_path / "nan.npz"
    np.savez(nan, dW=np.array([[1.0, np.nan], [0.0, 1.0]], np.float32))
    return [tmp_path / "missing.npz", corrupt, shaped, nan]


@pytest.mark.parametrize("which", range(4))
def test_bad_input_exits_2_with_one_line(tmp_path, which):
    path = _bad_files(tmp_path)[which]
    code, out, err = reveal("--method", "rlg", path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and str(path.name) in err


def test_rlg_not_applicable_exits_3(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.npz"
    save_update(path, rng.normal(size=(4, 6)).astype(np.float32))  # rank 4 >= min(d, C) = 4
    code, out, err = reveal("--method", "rlg", path)
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_attacks_listing():
    proc = subprocess.run([sys.executable, "-m", "labelleak.cli", "attacks"], capture_output=True, text=True)
    assert proc.returncode == 0 and "rlg" in proc.stdout and "yin" in proc.stdout


def test_num_labels_rejected_for_methods_without_it(update_file):
    path, _ = update_file()
    code, out, err = reveal("--method", "yin", "--num-labels", 4, path)
    assert code == 2 and out == "" and "not an option of yin" in err
