"""The whole DAG on the smoke config, in a temporary directory: Table 1's shape and the paper's finding.

RLG recovers the label sets of EfficientNetB0 (swish) updates; Yin et al.'s rule does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_copy import copy_workflow

from labelleak.io import TEMP_MARK

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    copy_workflow(work)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "tables", "--configfile", "config/smoke.yaml"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.smoke
def test_table1_shape_and_finding(smoke_run):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["table1"]
    tidy = pd.read_csv(smoke_run / "results" / "tables" / "table1.csv")
    assert len(tidy) == len(cfg["models"]) * len(cfg["batch_sizes"]) * len(cfg["methods"]) * 4
    assert set(tidy["metric"]) == {"precision", "recall", "f1", "exact_match"}
    assert (tidy["n_updates"] + tidy["n_na"] == 3).all()
    cell = tidy.set_index(["model", "method", "metric"])["mean"]
    assert cell["efficientnet_b0", "rlg", "f1"] >= 0.95
    assert cell["efficientnet_b0", "yin", "precision"] < 0.5
    md = (smoke_run / "results" / "tables" / "table1.md").read_text()
    assert "EfficientNetB0 F1" in md and "RLG" in md
    tex = (smoke_run / "results" / "tables" / "table1.tex").read_text()
    assert r"\toprule" in tex


@pytest.mark.smoke
def test_every_job_left_a_log(smoke_run):
    logs = list((smoke_run / "results" / "logs").rglob("*.log"))
    assert any("train_model" in str(p) for p in logs) and any("attack" in str(p) for p in logs)


RESUME_TARGETS = ["table1", "table4"]  # Table 4 under defenses moved most with --cores before the fix


@pytest.mark.smoke
def test_killed_run_resumes_with_the_same_command_and_cores_do_not_matter(smoke_run, tmp_path):
    """SIGKILL the scheduler and its jobs mid-run; the same command (--cores 1) finishes the run, and its
    tables and update files are byte-identical to the uninterrupted --cores 2 run's."""
    work = copy_workflow(tmp_path / "resume")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *RESUME_TARGETS, "--configfile", "config/smoke.yaml"]
    run = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list((work / "results" / "updates").rglob("*.npz")) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.5)
    time.sleep(3)  # into the next jobs
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert (work / ".snakemake" / "locks").is_dir() and any((work / ".snakemake" / "locks").iterdir())

    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    names = sorted(p.name for p in (work / "results" / "tables").iterdir())
    assert names == sorted(f"{t}.{ext}" for t in RESUME_TARGETS for ext in ("csv", "md", "tex"))
    for name in names:
        assert (work / "results" / "tables" / name).read_bytes() == \
            (smoke_run / "results" / "tables" / name).read_bytes(), name
    updates = sorted((work / "results" / "updates").rglob("*.npz"))
    assert updates
    for path in updates:
        assert path.read_bytes() == (smoke_run / path.relative_to(work)).read_bytes(), path
    assert not list((work / "results").rglob(f".*{TEMP_MARK}*"))  # no partial file of the killed jobs


def test_malformed_config_stops_before_any_job(tmp_path):
    copy_workflow(tmp_path)
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["training"]["lr"] = "fast"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", "tables", "--configfile", "bad.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "'training.lr'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.smoke
def test_label_tables_reproduce_the_seed_papers_findings(smoke_run):
    """iDLG is exact on single samples; Yin breaks on swish; iLRG restores counts with repeated labels."""
    tables = smoke_run / "results" / "tables"
    idlg = pd.read_csv(tables / "idlg_table.csv").set_index("method")
    assert idlg.loc["idlg", "mean"] == 1.0 and idlg.loc["idlg", "n_updates"] == 3
    ilrg = pd.read_csv(tables / "ilrg_table.csv").set_index(["method", "metric"])["mean"]
    assert ilrg["yin", "leacc"] < ilrg["rlg", "leacc"] and ilrg["ilrg", "leacc"] == 1.0
    board = pd.read_csv(tables / "leaderboard.csv").set_index("method")
    assert board.loc["yin", "mean"] < 0.5 and board.loc["rlg", "mean"] >= 0.95  # swish LeNet, F1
    assert (board["n_updates"] + board["n_na"] == 3).all()
    counts = pd.read_csv(tables / "counts_by_stage.csv")  # ours next to iLRG, untrained and trained, K = 1 and 2
    ours = counts[(counts["method"] == "rlg_counts") & (counts["metric"] == "count_exact_match")]
    assert len(ours) == 4 and ((ours["n_updates"] + ours["n_na"]) == 2).all()
    assert (smoke_run / "results" / "figures" / "counts_by_stage.png").stat().st_size > 1000
    fl = pd.read_csv(tables / "fl_rounds.csv")  # Flower clients' updates, attacked as the server holds them
    fl_cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["fl_rounds"]
    assert set(fl["method"]) == set(fl_cfg["methods"]) and set(fl["round"]) == {f"round{r + 1}" for r in range(fl_cfg["rounds"])}
    rlg = fl[(fl["method"] == "rlg_true_s") & (fl["metric"] == "f1")]
    assert len(rlg) == fl_cfg["rounds"] * len(fl_cfg["local_steps"]) and (rlg["mean"] == 1.0).all()
    assert (smoke_run / "results" / "figures" / "fl_rounds.png").stat().st_size > 1000
    geng = pd.read_csv(tables / "geng_table.csv")
    ilrg_counts = geng[(geng["method"] == "ilrg") & (geng["metric"] == "count_exact_match")]
    assert (ilrg_counts["mean"] >= 0.99).all() and len(ilrg_counts) == 2  # FedSGD and FedAvg K=2
    for name in ("idlg_table", "ilrg_table", "geng_table", "leaderboard"):
        assert "Config hash" in (tables / f"{name}.md").read_text()
    figure = smoke_run / "results" / "figures" / "attacks_vs_batch.png"
    assert figure.stat().st_size > 1000


MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.smoke
@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist (the MNIST test set) not present")
def test_idlg_table_on_mnist(tmp_path):
    """iDLG's README setting: single MNIST samples through fresh sigmoid networks; iDLG is exact."""
    copy_workflow(tmp_path)
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["datasets"]["mnist"] = {"kind": "mnist", "root": str(MNIST), "eval_size": 1000}
    cfg["models"]["lenet_mnist"] = {"arch": "lenet5", "in_channels": 1, "image_size": 28, "activation": "sigmoid"}
    cfg["idlg_table"]["settings"] = [{"dataset": "mnist", "model": "lenet_mnist"}]
    (tmp_path / "mnist.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "idlg_table", "--configfile", "mnist.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tidy = pd.read_csv(tmp_path / "results" / "tables" / "idlg_table.csv")
    idlg = tidy[tidy["method"] == "idlg"]
    assert len(idlg) == 1 and (idlg["mean"] == 1.0).all() and (idlg["n_updates"] == 3).all()
    assert set(tidy["method"]) == {"dlg", "idlg"}


@pytest.mark.smoke
def test_defense_tables_and_figure(smoke_run):
    """Table 4's layout and the paper's finding (Sign-SGD blunts RLG), the matrix, the utility table."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    tables = smoke_run / "results" / "tables"
    t4 = pd.read_csv(tables / "table4.csv")
    t4_methods = set(cfg["table4"]["methods"]) | set(cfg["table4"].get("speech_methods", []))
    assert set(t4["method"]) == t4_methods
    image = t4[t4["model"].isin(cfg["table4"]["models"])]
    assert len(image) == len(cfg["table4"]["defenses"]) * len(cfg["table4"]["methods"]) * 4
    assert len(t4) - len(image) == len(cfg["table4"]["defenses"]) * len(cfg["table4"]["speech_methods"]) * 4
    for method in cfg["table4"]["methods"]:  # S = rank(dW) and S = N alike
        cell = image[image["method"] == method].set_index(["defense_name", "metric"])["mean"]
        assert cell["none", "f1"] >= 0.95
        assert cell["signsgd", "exact_match"] <= 0.34 and cell["signsgd", "f1"] < cell["none", "f1"]
    md = (tables / "table4.md").read_text()
    assert "Sign-SGD" in md and "GradDrop 90%" in md and "Published" in md
    matrix = pd.read_csv(tables / "defense_matrix.csv")
    assert set(matrix["defense"]) == set(cfg["defense_matrix"]["defenses"])
    assert set(matrix["method"]) == set(cfg["defense_matrix"]["methods"])
    assert ((matrix["n_updates"] + matrix["n_na"]) == cfg["sampling"]["num_batches"]).all()
    dp = next((smoke_run / "results" / "defended" / "dpsgd-1.0-1.0").rglob("*.npz"))
    from labelleak.updates.format import load_observation

    assert load_observation(dp).meta["dp_epsilon"] > 0
    utility = pd.read_csv(tables / "utility.csv")
    assert len(utility) == len(cfg["utility"]["defenses"]) * len(cfg["utility"]["algorithms"])
    assert utility["accuracy"].between(0, 1).all()
    assert (smoke_run / "results" / "figures" / "privacy_utility.png").stat().st_size > 1000


@pytest.mark.smoke
def test_report_collects_every_table_and_figure(smoke_run):
    """`snakemake --report` collects each report() output with its caption (zip form, to list its files)."""
    import zipfile

    out = smoke_run / "results" / "report.zip"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--report", str(out), "tables",
                           "--configfile", "config/smoke.yaml"], cwd=smoke_run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = [Path(n).name for n in zipfile.ZipFile(out).namelist()]
    stems = {f"{p.stem}." for d in ("tables", "figures") for p in (smoke_run / "results" / d).glob("*.*")}
    assert "table1." in stems
    missing = sorted(s for s in stems if not any(n.startswith(s) for n in names))
    assert not missing, f"not in the report: {missing}"


@pytest.mark.smoke
def test_speech_tables_reproduce_the_papers_findings(smoke_run):
    """RLG reveals the whole bag of words of untrained updates; GM + BoW beats GM without it on EM."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    tables = smoke_run / "results" / "tables"
    t2 = pd.read_csv(tables / "table2.csv").set_index(["row", "metric"])
    assert t2.loc[("RLG (0)", "recall"), "mean"] == 1.0
    assert t2.loc[("RLG (0)", "recall"), "n_updates"] == cfg["speech"]["num_updates"]
    t5 = pd.read_csv(tables / "table5.csv").set_index(["row", "metric"])["mean"]
    runs = cfg["attacks"]["gm_bow"]["runs"]
    assert t5[f"GM with BoW (best of {runs})", "transcript_em"] > t5["GM w/o BoW (1 run)", "transcript_em"]
    assert t5["GM w/o BoW (1 run)", "num_variables"] > t5[f"GM with BoW (best of {runs})", "num_variables"]
    t3 = pd.read_csv(tables / "table3.csv")
    assert set(t3["S"]) == {"true S", "estimated S"}
    assert len(t3) == len(cfg["table3"]["shapes"]) * 2 * 4
    assert "Published" in (tables / "table3.md").read_text()
    t4 = pd.read_csv(tables / "table4.csv").set_index(["model", "method", "defense_name", "metric"])["mean"]
    for method in cfg["table4"]["speech_methods"]:
        assert t4["las", method, "none", "recall"] == 1.0
    assert (smoke_run / "results" / "figures" / "figure2.png").stat().st_size > 1000


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.smoke
@pytest.mark.skipif(not (SHARED / "librispeech").is_dir(), reason="../shared/data/librispeech not present")
def test_speech_tables_on_a_librispeech_slice(tmp_path):
    """The real-data speech config, sliced: the paper's utterances, groupings and 16k word pieces."""
    copy_workflow(tmp_path)
    ls, samples = SHARED / "librispeech", SHARED / "librispeech" / "paper-samples"
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["speech"]["corpus"] = "librispeech"
    cfg["speech"]["corpora"] = {"librispeech": {
        "kind": "librispeech", "transcripts": [str(ls / "test-clean.trans.txt"), str(ls / "test-other.trans.txt")],
        "vocab": str(SHARED / "vocab" / "wpm_16k_librispeech.vocab"),
        "selection": str(samples / "test-sorted_less_50.ids"), "audio": "synthetic",
        "groupings": {"2x1": str(samples / "test_less_50_group_2.txt"), "1x2": str(samples / "test_less_50_step_4.txt")}}}
    cfg["speech"]["num_updates"] = 3
    cfg["table5"]["num_updates"] = cfg["figure2"]["num_updates"] = 1
    cfg["table2"] = {"stages": ["0"], "gm_stage": "0", "gm_updates": 1}
    cfg["table3"] = {"stage": "0", "shapes": [[2, 1]]}
    cfg["attacks"]["gm_asr"]["max_steps"] = 20  # the GM row of Table 2 at 16k pieces: seconds, not minutes
    (tmp_path / "librispeech.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "table2", "table3",
                           "--configfile", "librispeech.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    t2 = pd.read_csv(tmp_path / "results" / "tables" / "table2.csv").set_index(["row", "metric"])["mean"]
    assert t2["RLG (0)", "recall"] == 1.0 and t2["RLG (0)", "precision"] == 1.0
    groups = yaml.safe_load((tmp_path / "results" / "batches" / "librispeech" / "utt_N2_K1.json").read_text())
    first = (samples / "test_less_50_group_2.txt").read_text().splitlines()[0].split(",")
    assert groups["groups"][0] == [first]  # the paper's first 2-utterance batch, one step
    from labelleak.updates.format import load_truth

    truth = load_truth(tmp_path / "results" / "truth" / "librispeech" / "las" / "0" / "utt_N2_K1" / "000.json")
    assert truth.labels.max() < 16328 and (truth.labels == 2).sum() == 2  # one </s> per utterance
