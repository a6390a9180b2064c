"""One function per DAG stage: what a Snakemake rule does, as a plain, testable call.

Rules only wire file paths to these functions (``workflow/scripts/*.py``); all logic is here or
below. Every function reads files and writes files (atomically), so a failed job leaves nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from labelleak.io import read_json, write_json

log = logging.getLogger("labelleak")

Paths = Sequence[str | os.PathLike]


@contextlib.contextmanager
def logging_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send this job's log lines to its Snakemake log file (and keep errors one line long)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


def run_job(log_file: str | os.PathLike | None, fn, *args, threads: int | None = None) -> None:
    """Run one stage function as a Snakemake job: log to its log file; bad input is one line, exit 1."""
    from labelleak.errors import LabelleakError

    from threadpoolctl import threadpool_limits

    threads = int(threads or 1)
    # BLAS threads = the job's threads: oversubscribed OpenBLAS makes small SVD/QR calls 100x slower.
    with logging_to(log_file), threadpool_limits(limits=threads):
        if "torch" in sys.modules or threads > 1:
            import torch

            torch.set_num_threads(threads)
        try:
            fn(*args)
        except LabelleakError as exc:
            log.error("%s", exc)
            sys.exit(1)


def dataset(cfg: dict, name: str, split: str):
    """The dataset ``name`` of the config, seeded by the master seed."""
    from labelleak.data import build_dataset

    return build_dataset(cfg["datasets"][name], split, seed=cfg["seed"])


def derived_seed(cfg: dict, *parts) -> int:
    """A seed for one job, derived from the master seed and the job's identity (stable across runs)."""
    words = [cfg["seed"], *[int.from_bytes(str(p).encode(), "little") % (2**32) for p in parts]]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


# --------------------------------------------------------------------------- data
def sample(cfg: dict, dataset_name: str, composition: str, n: int, k: int, out: str | os.PathLike) -> None:
    """Seeded batch index lists (num_batches x K x N) over the dataset's eval split."""
    from labelleak.data.sampling import sample_batches, save_batches

    data = dataset(cfg, dataset_name, "eval")
    seed = derived_seed(cfg, "batches", dataset_name, composition)
    batches = sample_batches(data.labels, batch_size=n, steps=k, num_batches=cfg["sampling"]["num_batches"],
                             composition=composition, seed=seed)
    save_batches(out, batches, {"dataset": dataset_name, "composition": composition, "batch_size": n,
                                "steps": k, "seed": seed})
    log.info("sampled %d batches of %d x %d from %s (%s)", len(batches), k, n, dataset_name, composition)


# --------------------------------------------------------------------------- models
def build(cfg: dict, model_name: str, num_classes: int):
    from labelleak.models import build_model, load_weights

    spec = cfg["models"][model_name]
    model = build_model(spec["arch"], num_classes=num_classes)
    if spec.get("weights"):
        load_weights(model, spec["weights"])
        log.info("loaded weights from %s", spec["weights"])
    return model


def train(cfg: dict, dataset_name: str, model_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train and save one checkpoint per stage (``outputs``: stage -> path)."""
    import torch

    from labelleak.device import describe, pick_device
    from labelleak.models import train as training

    tcfg = cfg["training"]
    data = dataset(cfg, dataset_name, "train")
    seed = derived_seed(cfg, "train", dataset_name, model_name)
    torch.manual_seed(seed)
    model = build(cfg, model_name, data.num_classes)
    device = pick_device(cfg.get("device", "auto"))
    log.info("training %s on %s (%d items, %d classes) on %s", model_name, dataset_name, len(data),
             data.num_classes, describe(device))
    by_step: dict[int, list[tuple[str, str | os.PathLike]]] = {}
    for stage, path in outputs.items():
        by_step.setdefault(tcfg["checkpoints"][stage], []).append((stage, path))

    held_out = dataset(cfg, dataset_name, "eval")

    def save(step: int, m) -> None:
        stats = training.softmax_stats(m, held_out, device=device)
        log.info("step %d held-out: accuracy %.3f, mean max softmax %.3f, mean true-class softmax %.3f",
                 step, stats["accuracy"], stats["max_softmax"], stats["true_softmax"])
        for stage, path in by_step.get(step, []):
            training.save_checkpoint(path, m, arch=cfg["models"][model_name]["arch"], num_classes=data.num_classes,
                                     step=step, stage=stage, dataset=dataset_name, device=describe(device), **stats)
            log.info("saved stage %s (step %d) to %s", stage, step, path)

    training.train(model, data, checkpoint_steps=list(by_step), on_checkpoint=save,
                   batch_size=tcfg["batch_size"], lr=tcfg["lr"], optimizer=tcfg.get("optimizer", "sgd"),
                   momentum=tcfg.get("momentum", 0.9), weight_decay=tcfg.get("weight_decay", 0.0),
                   seed=seed, device=device)


# --------------------------------------------------------------------------- updates
def dump(cfg: dict, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
         batches_file: str | os.PathLike, outputs: Paths) -> None:
    """One update file per batch, by autograd on the full model at the given checkpoint."""
    import torch

    from labelleak.data.sampling import load_batches
    from labelleak.device import describe, pick_device
    from labelleak.models.train import load_checkpoint
    from labelleak.updates.compute import projection_update
    from labelleak.updates.format import save_update

    ucfg = cfg["updates"]
    data = dataset(cfg, dataset_name, "eval")
    batches, bmeta = load_batches(batches_file)
    if len(outputs) != len(batches):
        raise ValueError(f"{batches_file}: {len(batches)} batches for {len(outputs)} update files")
    device = pick_device(cfg.get("device", "auto"))
    model = build(cfg, model_name, data.num_classes)
    info = load_checkpoint(checkpoint, model)
    model.to(device, memory_format=torch.channels_last).eval()
    start = time.perf_counter()
    for i, (batch, out) in enumerate(zip(batches, outputs)):
        steps = [(data.images(idx).to(device, memory_format=torch.channels_last), torch.as_tensor(data.labels[idx], device=device)) for idx in batch]
        upd = projection_update(model, steps, lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"),
                                chunk_size=ucfg.get("chunk_size", 50))
        labels = np.concatenate([data.labels[idx] for idx in batch])
        meta = {"dataset": dataset_name, "model": model_name, "arch": cfg["models"][model_name]["arch"],
                "stage": stage, "checkpoint_step": info.get("step"), "batch": i, "device": describe(device),
                "bn_mode": ucfg.get("bn_mode", "eval"), "local_lr": ucfg.get("local_lr", 0.1),
                "composition": bmeta.get("composition"), "batch_seed": bmeta.get("seed")}
        save_update(out, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch),
                    labels=labels, meta=meta)
    log.info("dumped %d updates of %s/%s in %.1fs on %s", len(outputs), model_name, stage,
             time.perf_counter() - start, describe(device))


# --------------------------------------------------------------------------- attacks
def attack_options(cfg: dict, method: str, obs) -> dict:
    """Attack options from the config (the attacker's choices; never ground truth)."""
    if method == "rlg" and cfg.get("attacks", {}).get("rlg", {}).get("num_labels", "rank") == "batch_size":
        if obs.batch_size is None:
            return {}
        return {"num_labels": obs.batch_size * (obs.steps or 1)}
    return {}


def attack(cfg: dict, method: str, update: str | os.PathLike, out: str | os.PathLike) -> None:
    """Run one attack on one update; an inapplicable attack writes an explicit n/a record."""
    from labelleak.attacks import run_attack
    from labelleak.updates.format import load_observation

    obs = load_observation(update)  # the attacker's view: no labels
    record = run_attack(method, obs, **attack_options(cfg, method, obs))
    record["update"] = str(update)
    write_json(out, record)
    log.info("%s on %s: %s, %s labels in %.2fs", method, update, record["status"],
             "n/a" if record["labels"] is None else len(record["labels"]), record["seconds"])


# --------------------------------------------------------------------------- metrics and tables
def score(rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update scores: each row names an update file, an attack result and its table keys."""
    import pandas as pd

    from labelleak.io import write_text
    from labelleak.metrics.sets import SET_METRICS, set_scores
    from labelleak.updates.format import load_ground_truth

    records = []
    for row in rows:
        truth = load_ground_truth(row["update"])
        result = read_json(row["result"])
        rec = {k: v for k, v in row.items() if k not in ("update", "result")}
        rec.update(status=result["status"], seconds=result["seconds"], true_set_size=len(truth.label_set),
                   true_num_labels=int(truth.labels.size), reason=result.get("reason", ""))
        if result["status"] == "ok":
            rec.update(set_scores(result["labels"], truth.label_set), pred_set_size=len(result["labels"]),
                       num_labels=result["num_labels"])
        else:
            rec.update({m: np.nan for m in SET_METRICS}, pred_set_size=np.nan, num_labels=np.nan)
        records.append(rec)
    write_text(out, pd.DataFrame(records).to_csv(index=False))


TABLE1_CAPTION = ("Precision, Recall, F1 and Exact Match (EM) of the label set predicted from the projection-layer "
                  "update of one batch of N images. Each cell is the mean over updates of the per-update score; "
                  "'n (n/a)' is the number of updates averaged and the number where the method did not apply.")


def table1(cfg: dict, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.published import table1_frame
    from labelleak.reports.tables import TableSpec, aggregate, to_markdown, write_table

    t1 = cfg["table1"]
    scores = pd.read_csv(scores_csv)
    agg = aggregate(scores, ["method", "n", "model"], SET_METRICS, seed=cfg["seed"])
    spec = TableSpec(
        name="table1",
        title="Table 1: set of labels prediction on ResNet50 and EfficientNetB0",
        caption=f"{TABLE1_CAPTION} Dataset {t1['dataset']}, stage {t1['stage']}, "
                f"{cfg['sampling']['num_batches']} batches per N ({cfg['sampling']['composition']} composition).",
        rows=("method", "n"), block="model", metrics=SET_METRICS,
        row_order={"method": ("yin", "rlg")}, block_order=tuple(t1["models"]))
    write_table(agg, spec, config_hash(cfg), out,
                extra_columns={"dataset": t1["dataset"], "stage": t1["stage"]})
    paper = TableSpec(name="table1_paper", title="Published (Dang et al. 2021, Table 1; ImageNet, Keras pretrained)",
                      caption="Means over 100 batches per N, as printed in the paper, for comparison.",
                      rows=spec.rows, block=spec.block, metrics=spec.metrics, row_order=spec.row_order,
                      block_order=spec.block_order)
    published = table1_frame().assign(n_updates=100, n_na=0)
    published = published[published["model"].isin(t1["models"]) & published["method"].isin(t1["methods"])]
    with open(out["md"], "a") as fh:
        fh.write("\n" + to_markdown(published, paper, "").replace("# ", "## ", 1))
