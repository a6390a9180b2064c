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


def run_job(log_file: str | os.PathLike | None, fn, *args, threads: int = 1) -> None:
    """Run one stage function as a Snakemake job: log to its log file; bad input is one line, exit 1.

    ``threads`` is the job's intra-op thread count for torch and BLAS: 1, or ``config.job_threads(cfg)``
    for the jobs that train or dump, never the scheduler's ``snakemake.threads`` (which follows
    ``--cores``): a float sum's order follows the thread count, and the tables must not.
    """
    from labelleak.errors import LabelleakError
    from labelleak.resume import watch_scheduler

    from threadpoolctl import threadpool_limits

    threads = int(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op default, when it is imported later
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on a GPU
    # also keeps BLAS from oversubscribing: oversubscribed OpenBLAS makes small SVD/QR calls 100x slower
    with logging_to(log_file), threadpool_limits(limits=threads):
        watch_scheduler()  # a killed run's job stops too, not an orphan beside the resumed one
        if "torch" in sys.modules or threads > 1:
            import torch

            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            fn(*args)
        except LabelleakError as exc:
            log.error("%s", exc)
            sys.exit(1)
        except KeyboardInterrupt:  # Ctrl-C, or the scheduler is gone (watch_scheduler): one line
            log.error("interrupted")
            sys.exit(130)


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
    options = {k: v for k, v in spec.items() if k not in ("arch", "weights", "framework")}  # small models: activation, ...
    model = build_model(spec["arch"], num_classes=num_classes, **options)
    if spec.get("weights"):
        load_weights(model, spec["weights"])
        log.info("loaded weights from %s", spec["weights"])
    return model


def train(cfg: dict, dataset_name: str, model_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train and save one checkpoint per stage (``outputs``: stage -> path)."""
    if framework(cfg, model_name) != "torch":
        return FRAMEWORK_STAGES[framework(cfg, model_name)]["train"](cfg, dataset_name, model_name, outputs)
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
                                     step=step, stage=stage, dataset=dataset_name, device=describe(device), **stats,
                                     options={k: v for k, v in cfg["models"][model_name].items()
                                              if k not in ("arch", "weights", "framework")})
            log.info("saved stage %s (step %d) to %s", stage, step, path)

    training.train(model, data, checkpoint_steps=list(by_step), on_checkpoint=save,
                   batch_size=tcfg["batch_size"], lr=tcfg["lr"], optimizer=tcfg.get("optimizer", "sgd"),
                   momentum=tcfg.get("momentum", 0.9), weight_decay=tcfg.get("weight_decay", 0.0),
                   seed=seed, device=device)


# --------------------------------------------------------------------------- updates
def _prepare_dump(cfg: dict, dataset_name: str, model_name: str, checkpoint, batches_file, outputs: Paths):
    """What every dump job starts from: eval data, its batches (one per output), the model at the checkpoint."""
    from labelleak.data.sampling import load_batches
    from labelleak.device import pick_device
    from labelleak.models.train import load_checkpoint

    data = dataset(cfg, dataset_name, "eval")
    batches, bmeta = load_batches(batches_file)
    if len(outputs) != len(batches):
        raise ValueError(f"{batches_file}: {len(batches)} batches for {len(outputs)} update files")
    device = pick_device(cfg.get("device", "auto"))
    model = build(cfg, model_name, data.num_classes)
    info = load_checkpoint(checkpoint, model)
    model.to(device).eval()
    return data, batches, bmeta, model, info, device


def save_batch_truth(path: str | os.PathLike, data, batch, bmeta: dict, index: int) -> None:
    """The truth file of one dumped batch: its labels, and what could rebuild them (seed, indices)."""
    from labelleak.updates.format import save_truth

    save_truth(path, np.concatenate([data.labels[idx] for idx in batch]), data.num_classes, batch=index,
               batch_seed=bmeta.get("seed"), composition=bmeta.get("composition"),
               indices=[np.asarray(idx).tolist() for idx in batch])


def dump(cfg: dict, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
         batches_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """One update file per batch, by autograd on the full model at the given checkpoint, and its truth file."""
    if framework(cfg, model_name) != "torch":
        return FRAMEWORK_STAGES[framework(cfg, model_name)]["dump"](cfg, dataset_name, model_name, stage, checkpoint,
                                                                    batches_file, outputs, truths)
    import torch

    from labelleak.device import describe
    from labelleak.updates.compute import projection_update
    from labelleak.updates.format import save_update

    ucfg = cfg["updates"]
    data, batches, bmeta, model, info, device = _prepare_dump(cfg, dataset_name, model_name, checkpoint,
                                                              batches_file, outputs)
    if len(truths) != len(outputs):
        raise ValueError(f"{len(truths)} truth files for {len(outputs)} updates")
    model.to(memory_format=torch.channels_last)
    start = time.perf_counter()
    for i, (batch, out) in enumerate(zip(batches, outputs)):
        steps = [(data.images(idx).to(device, memory_format=torch.channels_last), torch.as_tensor(data.labels[idx], device=device)) for idx in batch]
        upd = projection_update(model, steps, lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"),
                                chunk_size=ucfg.get("chunk_size", 50))
        meta = {"dataset": dataset_name, "model": model_name, "arch": cfg["models"][model_name]["arch"],
                "stage": stage, "checkpoint_step": info.get("step"), "device": describe(device),
                "bn_mode": ucfg.get("bn_mode", "eval"), "local_lr": ucfg.get("local_lr", 0.1)}
        save_update(out, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch), meta=meta)
        save_batch_truth(truths[i], data, batch, bmeta, i)
        log.info("update %d/%d written (%.1fs elapsed)", i + 1, len(outputs), time.perf_counter() - start)
    log.info("dumped %d updates of %s/%s in %.1fs on %s", len(outputs), model_name, stage,
             time.perf_counter() - start, describe(device))


# --------------------------------------------------------------------------- attacks
def attack_options(cfg: dict, method: str, obs) -> dict:
    """Attack options from the config (the attacker's choices; never ground truth)."""
    if method != "rlg":
        return dict(cfg.get("attacks", {}).get(method) or {})
    rcfg = cfg.get("attacks", {}).get("rlg") or {}
    options = {"max_lp_seconds": rcfg["max_lp_seconds"]} if rcfg.get("max_lp_seconds") is not None else {}
    if rcfg.get("num_labels", "rank") == "batch_size" and obs.batch_size is not None:
        options["num_labels"] = obs.batch_size * (obs.steps or 1)
    return options


def attack(cfg: dict, method: str, updates, outs, checkpoint: str | os.PathLike | None = None,
           dataset_name: str | None = None, model_name: str | None = None, truths: Paths | None = None) -> None:
    """Run one attack on every update of a setting (one result file each); n/a is an explicit record.

    ``truths`` (the updates' truth files) reach only an oracle method (``ORACLE_METHODS``: an
    experimenter's variant that is told the number of labels); the rule gives them to no other.

    ``updates`` and ``outs`` are paths or equally long lists of paths: one job per setting keeps
    the per-process start-up (torch import, model build) off the per-update cost. An attack that
    needs the model gets it built from ``checkpoint`` (weights only, once); one that needs
    auxiliary data gets the attacker's own items of the dataset's train split.
    """
    from labelleak.attacks import get_attack, run_attack
    from labelleak.pipeline_speech import ORACLE_METHODS, attack_name
    from labelleak.updates.format import load_observation, load_truth

    updates = [updates] if isinstance(updates, (str, os.PathLike)) else list(updates)
    truths = list(truths or [])
    if method in ORACLE_METHODS and len(truths) != len(updates):
        raise ValueError(f"oracle method {method!r} needs one truth file per update (rule input 'truth')")
    outs = [outs] if isinstance(outs, (str, os.PathLike)) else list(outs)
    if len(updates) != len(outs):
        raise ValueError(f"{len(updates)} updates for {len(outs)} result files")
    name = attack_name(method)
    needs = get_attack(name).needs
    extras = attacker_context(cfg, needs, checkpoint, dataset_name, model_name)
    for update, out in zip(updates, outs):
        obs = load_observation(update)  # the attacker's view: no labels
        options = {**attack_options(cfg, name, obs), **extras, **update_context(needs, update)}
        if method in ORACLE_METHODS:  # an experimenter's oracle, named in the method and the tables
            options[ORACLE_METHODS[method][1]] = int(load_truth(truths[updates.index(update)]).labels.size)
        record = run_attack(name, obs, **options)
        record.update(method=method, update=str(update))
        write_json(out, record)
        log.info("%s on %s: %s, %s labels in %.2fs", method, update, record["status"],
                 "n/a" if record["labels"] is None else len(record["labels"]), record["seconds"])


# --------------------------------------------------------------------------- metrics and tables
def score(rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update scores: each row names an update file, an attack result and its table keys."""
    import pandas as pd

    from labelleak.io import write_text
    from labelleak.metrics.sets import SET_METRICS, set_scores
    from labelleak.updates.format import load_truth

    records = []
    for row in rows:
        truth = load_truth(row["truth"])
        result = read_json(row["result"])
        rec = {k: v for k, v in row.items() if k not in ("update", "truth", "result", "ignore_ids_upto")}
        floor = row.get("ignore_ids_upto", -1)  # a bag of words leaves out <unk>, <s>, </s> (ids 0-2)
        true_set = {int(c) for c in truth.label_set if c > floor}
        rec.update(status=result["status"], seconds=result["seconds"], true_set_size=len(true_set),
                   true_num_labels=int(truth.labels.size), reason=result.get("reason", ""))
        if result["status"] == "ok":
            pred = {int(c) for c in result["labels"] if c > floor}
            rec.update(set_scores(pred, true_set), pred_set_size=len(pred), num_labels=result["num_labels"])
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
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])  # status "n/a" is not NaN
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


# --------------------------------------------------------------------------- label attacks of the seed papers
def load_model(cfg: dict, model_name: str, checkpoint: str | os.PathLike, dataset_name: str | None = None):
    """The model at ``checkpoint`` (eval mode), with ``input_shape`` set (dummy-input attacks need it)."""
    import torch

    from labelleak.models.train import load_checkpoint

    torch.set_num_threads(1)  # attack jobs are single-threaded; torch's default oversubscribes a shared CPU
    info = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = build(cfg, model_name, int(info["num_classes"]))
    load_checkpoint(checkpoint, model)
    if not getattr(model, "input_shape", None) and dataset_name:
        model.input_shape = tuple(dataset(cfg, dataset_name, "eval").images([0]).shape[1:])
    return model.eval()


def auxiliary_data(cfg: dict, dataset_name: str):
    """``aux(c, n, rep)``: n items of class c from the train split (the attacker's data, seeded)."""
    import numpy as np

    data = dataset(cfg, dataset_name, "train")

    def aux(c: int, n: int, rep: int):
        pool = np.flatnonzero(data.labels == c)
        rng = np.random.default_rng(derived_seed(cfg, "aux", dataset_name, c, rep))
        return data.images(rng.choice(pool, size=n, replace=len(pool) < n)) if pool.size else \
            data.images(rng.choice(len(data), size=n))

    return aux


def attacker_context(cfg: dict, needs, checkpoint, dataset_name, model_name) -> dict:
    """The options an attack declares beyond the observation (model, auxiliary data), else nothing."""
    from labelleak.pipeline_speech import is_speech

    extras: dict = {}
    if "model" in needs and checkpoint and is_speech(cfg, dataset_name):
        from labelleak.models.asr_train import load_asr_checkpoint

        extras["model"] = load_asr_checkpoint(checkpoint).eval()
    elif "model" in needs and checkpoint:
        extras["model"] = load_model(cfg, model_name, checkpoint, dataset_name)
    if "aux_data" in needs and dataset_name:
        extras["aux_data"] = auxiliary_data(cfg, dataset_name)
    return extras


def update_context(needs, update) -> dict:
    """Per-update options an attack declares: the decoder's update of an ASR update (sibling file)."""
    if "decoder_update" not in needs:
        return {}
    from labelleak.updates.asr import decoder_path, load_decoder_update

    if not Path(decoder_path(update)).exists():  # an image update: the attack reports n/a
        return {}
    return {"decoder_update": load_decoder_update(update)}


def score_labels(rows: list[dict], out: str | os.PathLike) -> None:
    """Per-update set and count scores of the label tables (the analysis side: reads the ground truth).

    Set metrics and iLRG's LeAcc for every 'ok' result; count metrics where the attack gave counts;
    NaN (never 0) for n/a results, which the tables count and show.
    """
    import pandas as pd

    from labelleak.attacks import get_attack
    from labelleak.io import write_text
    from labelleak.metrics.counts import COUNT_METRICS, count_scores, existence_accuracy
    from labelleak.pipeline_speech import attack_name
    from labelleak.metrics.sets import SET_METRICS, set_scores
    from labelleak.updates.format import load_truth

    records = []
    for row in rows:
        truth = load_truth(row["truth"])
        C = truth.num_classes
        result = read_json(row["result"])
        rec = {k: v for k, v in row.items() if k not in ("update", "truth", "result")}
        rec.update(status=result["status"], seconds=result["seconds"], reason=result.get("reason", ""),
                   gives_counts=get_attack(attack_name(row["method"])).gives_counts, num_classes=C,
                   true_set_size=len(truth.label_set), true_num_labels=int(truth.labels.size))
        rec.update({m: np.nan for m in (*SET_METRICS, *COUNT_METRICS)})
        if result["status"] == "ok":
            rec.update(set_scores(result["labels"], truth.label_set))
            rec["leacc"] = existence_accuracy(result["labels"], truth.label_set, C)
            if result.get("counts") is not None:
                rec.update(count_scores({int(c): n for c, n in result["counts"].items()}, truth.counts, C))
        records.append(rec)
    write_text(out, pd.DataFrame(records).to_csv(index=False))


def label_table(cfg: dict, table: str, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """One label table (idlg_table, ilrg_table, geng_table, leaderboard, fl_rounds [+ its figure])."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.reports.labels import FIGURES, write_label_table

    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
    write_label_table(cfg, table, scores, config_hash(cfg), out)
    if "pdf" in out:
        FIGURES[table](cfg, scores, out)
    if "times" in out:  # measured wall times: results/benchmarks/, never in a table
        from labelleak.io import write_text
        from labelleak.reports.labels import attack_times

        write_text(out["times"], attack_times(scores).to_csv(index=False, float_format="%.6g"))
    log.info("wrote %s from %d scored updates", table, len(scores))


# --------------------------------------------------------------------------- defenses
def check_defense_config(cfg: dict) -> None:
    """Every defense name and attack of the defense study parses / is registered (one line naming the key)."""
    from labelleak.attacks import registry
    from labelleak.defenses import DefenseError, parse
    from labelleak.errors import ConfigError

    from labelleak.pipeline_speech import ORACLE_METHODS

    known = [*registry(), *ORACLE_METHODS]
    for section in ("table4", "defense_matrix", "utility", "fl_rounds"):
        sec = cfg.get(section) or {}
        for i, name in enumerate(sec.get("defenses") or []):
            try:
                parse(name)
            except DefenseError as exc:
                raise ConfigError(f"config key '{section}.defenses.{i}': {exc}") from None
        for key in ("methods", "speech_methods"):
            methods = sec.get(key)
            for i, method in enumerate(methods if isinstance(methods, list) else []):
                if method not in known:
                    raise ConfigError(f"config key '{section}.{key}.{i}': unknown attack {method!r}; known: "
                                      f"{', '.join(sorted(known))}")
    from labelleak.attacks.base import OPTION_NEEDS
    from labelleak.pipeline_speech import attack_name

    for i, method in enumerate((cfg.get("fl_rounds") or {}).get("methods") or []):
        extra = sorted(registry()[attack_name(method)].needs & OPTION_NEEDS)
        if extra:
            raise ConfigError(f"config key 'fl_rounds.methods.{i}': {method!r} needs {', '.join(extra)}; the study "
                              f"attacks client updates as the server holds them (update-only attacks)")
    # datasets, models and stages of these sections: labelleak.config.validate_config (their own key paths)
    utility = cfg.get("utility")
    if utility is not None and cfg.get("defense_matrix") is None:
        raise ConfigError("config key 'utility': needs a 'defense_matrix' section (its leakage column reads the "
                          "defense matrix's scores)")
    if utility is not None:
        leak = utility.get("leakage_method", "rlg")  # read from the defense matrix's scores
        if leak not in matrix_methods(cfg):
            raise ConfigError(f"config key 'utility.leakage_method': {leak!r} is not one of defense_matrix.methods "
                              f"({', '.join(matrix_methods(cfg))}), whose scores it reads")


def matrix_methods(cfg: dict) -> list[str]:
    """The attacks of the defense matrix: the config's list, or every registered attack for 'all'."""
    from labelleak.attacks import registry

    methods = cfg["defense_matrix"]["methods"]
    return sorted(registry()) if methods == "all" else list(methods)


def _defended_arrays(obs):
    return (obs.dW,) if obs.db is None else (obs.dW, obs.db)


def defend(cfg: dict, defense: str, inputs: Paths, outputs: Paths) -> None:
    """Apply an update-stage defense to each dumped update (same format; the truth file stays the source's)."""
    from labelleak.defenses import apply, compute_step
    from labelleak.defenses.base import DefenseError
    from labelleak.updates.format import load_observation, save_update

    if compute_step(defense) is not None:
        raise DefenseError(f"defense {defense!r} acts while the update is computed (rule dump_dp_updates)")
    start = time.perf_counter()
    for src, out in zip(inputs, outputs):
        obs = load_observation(src)  # a defense is the client's: it never sees more than the attacker
        rng = np.random.default_rng(derived_seed(cfg, "defend", defense, Path(src).as_posix()))
        sent = apply(defense, _defended_arrays(obs), rng)
        meta = {**obs.meta, "defense": defense}
        save_update(out, sent[0], db=sent[1] if len(sent) > 1 else None, W=obs.W, b=obs.b,
                    batch_size=obs.batch_size, steps=obs.steps, meta=meta)
    log.info("defense %s on %d updates in %.2fs", defense, len(outputs), time.perf_counter() - start)


def dump_dp(cfg: dict, defense: str, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
            batches_file: str | os.PathLike, outputs: Paths) -> None:
    """DP-SGD updates (per-sample clipping + noise while computing), then any update-stage parts of the name."""
    import torch

    from labelleak.defenses import apply, compute_step
    from labelleak.defenses.dpsgd import dp_projection_update, epsilon
    from labelleak.device import describe
    from labelleak.updates.format import save_update

    step = compute_step(defense)
    if step is None:
        raise ValueError(f"defense {defense!r} has no DP-SGD part (rule defend)")
    clip, sigma = step.values
    ucfg = cfg["updates"]
    delta = cfg.get("defenses", {}).get("delta", 1e-5)
    data, batches, bmeta, model, info, device = _prepare_dump(cfg, dataset_name, model_name, checkpoint,
                                                              batches_file, outputs)
    start = time.perf_counter()
    for i, (batch, out) in enumerate(zip(batches, outputs)):
        rng = np.random.default_rng(derived_seed(cfg, "dpsgd", defense, dataset_name, model_name, stage,
                                                 Path(out).as_posix()))
        steps = [(data.images(idx).to(device), torch.as_tensor(data.labels[idx], device=device)) for idx in batch]
        upd = dp_projection_update(model, steps, clip=clip, noise_multiplier=sigma, rng=rng,
                                   lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"),
                                   chunk_size=ucfg.get("chunk_size", 50))
        sent = apply(defense, (upd.dW, upd.db), rng)  # the update-stage parts after '+', if any
        eps = epsilon(sigma, 1.0, len(batch), delta)  # one batch = the client's data: sampling rate 1
        meta = {"dataset": dataset_name, "model": model_name, "stage": stage, "checkpoint_step": info.get("step"),
                "defense": defense, "dp_clip": clip, "dp_noise_multiplier": sigma, "dp_epsilon": eps,
                "dp_delta": delta, "local_lr": ucfg.get("local_lr", 0.1), "device": describe(device)}
        save_update(out, sent[0], db=sent[1], W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch), meta=meta)
    log.info("DP-SGD (%s) dumped %d updates in %.1fs; epsilon %.3g at delta %g", defense, len(outputs),
             time.perf_counter() - start, epsilon(sigma, 1.0, 1, delta), delta)


TABLE4_CAPTION = ("Precision, Recall, F1 and Exact Match (EM) of RLG on the projection-layer update of one batch "
                  "of N images, after the client's defense. GradDrop p zeroes the entries of dW (and db) below the "
                  "p-quantile of that layer's magnitudes (for dW: the official code's quantile over the last-layer "
                  "matrix). RLG: S = rank(dW) (Algorithm 1); RLG, S given (rlg_true_s): S = min(number of labels, "
                  "rank(dW)), the number of labels being N images or an utterance's tokens, as the paper's code "
                  "ran its tables (gt_k). "
                  "'n (n/a)' = updates averaged and updates where RLG did not apply.")


def table4_speech_methods(t4: dict) -> list[str]:
    """The methods of Table 4's ASR block: ``table4.speech_methods``, by default ``table4.methods``."""
    return list(t4.get("speech_methods", t4["methods"]))


def table4(cfg: dict, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Table 4 of Dang et al.: RLG under Sign-SGD and GradDrop, one column block per model."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.defenses import defense_label
    from labelleak.reports.published import table4_frame
    from labelleak.reports.tables import TableSpec, aggregate, to_markdown, write_table

    t4 = cfg["table4"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
    image = scores["model"].isin(t4["models"]) & (scores["n"] == t4["batch_size"])
    speech_methods = table4_speech_methods(t4) if t4.get("speech_stage") is not None else []
    speech = (scores["model"] == "las") & scores["method"].isin(speech_methods)
    scores = scores[scores["defense"].isin(t4["defenses"]) & ((image & scores["method"].isin(t4["methods"])) | speech)]
    models = [*t4["models"], *(["las"] if t4.get("speech_stage") is not None else [])]
    asr_note = (f" ASR (las): stage {t4['speech_stage']}, one utterance per update, the bag of words without ids "
                f"0-2 ({cfg['speech']['num_updates']} updates)." if "las" in models else "")
    agg = aggregate(scores, ["method", "defense", "model"], SET_METRICS, seed=cfg["seed"])
    labels = {d: defense_label(d) for d in t4["defenses"]}
    agg = agg.assign(defense_name=agg["defense"], defense=agg["defense"].map(labels))
    spec = TableSpec(name="table4", title="Table 4: RLG against defenses",
                     caption=f"{TABLE4_CAPTION} Dataset {t4['dataset']}, stage {t4['stage']}, N = {t4['batch_size']}, "
                             f"{cfg['sampling']['num_batches']} batches." + asr_note,
                     rows=("method", "defense"), block="model", metrics=SET_METRICS,
                     row_order={"method": tuple(dict.fromkeys([*t4["methods"], *speech_methods])),
                                "defense": tuple(labels.values())},
                     block_order=tuple(models))
    write_table(agg, spec, config_hash(cfg), out, extra_columns={"dataset": t4["dataset"], "stage": t4["stage"],
                                                                  "n": t4["batch_size"]})
    published = table4_frame()
    published = published[published["defense"].isin(t4["defenses"]) & published["model"].isin(models)]
    published = published.assign(defense=published["defense"].map(labels), n_updates=100, n_na=0)
    paper = TableSpec(name="table4_paper", title="Published (Dang et al. 2021, Table 4; ImageNet, Keras pretrained)",
                      caption="Means over 100 batches of N = 10, as printed in the paper, for comparison. The paper's "
                              "code ran RLG with S given (gt_k: the batch size; an utterance's tokens): compare with "
                              "our 'RLG, S given' rows.",
                      rows=spec.rows, block=spec.block, metrics=spec.metrics, row_order=spec.row_order,
                      block_order=spec.block_order)
    if len(published):
        with open(out["md"], "a") as fh:
            fh.write("\n" + to_markdown(published, paper, "").replace("# ", "## ", 1))


def defense_matrix(cfg: dict, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Every attack x every defense (and strength): the config's metric, mean [95% CI] over updates."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.defenses import write_matrix

    dm = cfg["defense_matrix"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
    scores = scores[(scores["model"] == dm["model"]) & (scores["n"] == dm["batch_size"])
                    & scores["defense"].isin(dm["defenses"])]
    agg = aggregate_defenses(scores, cfg)
    metric = dm.get("metric", "f1")
    write_matrix(agg, metric, matrix_methods(cfg), list(dm["defenses"]),
                 title=f"Attacks x defenses ({metric})",
                 caption=f"Mean {metric} over updates with a 95% bootstrap interval; '(k n/a)' = updates where the "
                         f"attack did not apply. {dm['model']} at stage {dm['stage']}, dataset {dm['dataset']}, "
                         f"N = {dm['batch_size']}, {cfg['sampling']['num_batches']} batches. Metrics: "
                         f"{', '.join(SET_METRICS)} (all in the csv).",
                 config_hash=config_hash(cfg), out=out)


def aggregate_defenses(scores, cfg: dict):
    from labelleak.metrics.sets import SET_METRICS
    from labelleak.reports.tables import aggregate

    return aggregate(scores, ["method", "defense"], SET_METRICS, seed=cfg["seed"])


def utility(cfg: dict, algorithm: str, defense: str, out: str | os.PathLike) -> None:
    """Test accuracy of a small model trained with Flower's FedAvg, every client's update passed through ``defense``."""
    import torch

    from labelleak.defenses import parse
    from labelleak.federated import flower_train
    from labelleak.metrics.bootstrap import mean_ci
    from labelleak.models import build_model

    torch.set_num_threads(1)  # a LeNet-sized model: one thread is fastest, and the jobs run side by side
    u = cfg["utility"]
    train, test = dataset(cfg, u["dataset"], "train"), dataset(cfg, u["dataset"], "eval")
    n_train = min(len(train), u.get("train_items", len(train)))
    x = train.images(np.arange(n_train))
    y = torch.as_tensor(np.array(train.labels[:n_train]))
    x_test, y_test = test.images(np.arange(len(test))), torch.as_tensor(test.labels)
    spec = cfg["models"][u["model"]]
    options = {k: v for k, v in spec.items() if k not in ("arch", "weights")}
    model_fn = lambda: build_model(spec["arch"], num_classes=train.num_classes, **options)  # noqa: E731
    families = [s.family.name for s in parse(defense)]
    server_lr = next((u.get("server_lr", {})[f] for f in families if f in u.get("server_lr", {})), None)
    local_steps, rounds = u["local_steps"][algorithm], u["rounds"][algorithm]
    res = flower_train(model_fn, x, y, x_test, y_test, defense=defense, clients=u["clients"],
                          rounds=rounds, local_steps=local_steps, batch_size=u["batch_size"], lr=u["lr"],
                          server_lr=server_lr, delta=cfg.get("defenses", {}).get("delta", 1e-5),
                          seed=derived_seed(cfg, "utility", algorithm, defense))
    mean, lo, hi = mean_ci(res.correct, seed=cfg["seed"])
    write_json(out, {"algorithm": algorithm, "defense": defense, "accuracy": mean, "ci_low": lo, "ci_high": hi,
                     "n_test": int(res.correct.size), "epsilon": res.epsilon, "seconds": res.seconds,
                     "history": res.history, "clients": u["clients"], "rounds": rounds,
                     "local_steps": local_steps, "server_lr": server_lr if server_lr is not None else u["lr"],
                     "model": u["model"], "dataset": u["dataset"]})
    log.info("utility %s %s: accuracy %.3f in %.1fs (epsilon %s)", algorithm, defense, mean, res.seconds, res.epsilon)


def utility_table(cfg: dict, inputs: Paths, scores_csv: str | os.PathLike, out: dict[str, str | os.PathLike]) -> None:
    """Accuracy per defense and algorithm beside the attack success it buys; the privacy-utility figure."""
    import pandas as pd

    from labelleak.config import config_hash
    from labelleak.reports.defenses import defense_label, privacy_utility_figure

    u = cfg["utility"]
    rows = pd.DataFrame([{k: v for k, v in read_json(p).items() if k != "history"} for p in inputs])
    dm = cfg["defense_matrix"]
    scores = pd.read_csv(scores_csv, keep_default_na=False, na_values=[""])
    scores = scores[(scores["model"] == dm["model"]) & (scores["n"] == dm["batch_size"])]
    leak_method, leak_metric = u.get("leakage_method", "rlg"), u.get("leakage_metric", "f1")
    agg = aggregate_defenses(scores[scores["method"] == leak_method], cfg)
    leak = agg[agg["metric"] == leak_metric].set_index("defense")["mean"]
    rows["leakage"] = rows["defense"].map(leak)
    rows["table"], rows["config_hash"] = "utility", config_hash(cfg)
    from labelleak.io import write_text

    if "times" in out:  # measured wall times: results/benchmarks/, never in a table
        write_text(out["times"], rows[["algorithm", "defense", "seconds"]].to_csv(index=False, float_format="%.6g"))
    rows = rows.drop(columns=["seconds"], errors="ignore")
    write_text(out["csv"], rows.to_csv(index=False, float_format="%.6g"))
    title = (f"Accuracy of {u['model']} on {u['dataset']} trained federatedly ({u['clients']} clients; FedSGD "
             f"{u['rounds']['fedsgd']} rounds, FedAvg {u['rounds']['fedavg']} rounds of {u['local_steps']['fedavg']} "
             f"local steps) against {leak_method.upper()} {leak_metric} on {dm['model']} (N = {dm['batch_size']})")
    lines = ["# Utility: what each defense costs", "", f"{title}. Accuracy with a 95% bootstrap interval over test "
             f"items; epsilon: DP-SGD's per-client (epsilon, {cfg.get('defenses', {}).get('delta', 1e-5)})-DP "
             f"(Opacus RDP accountant). Config hash `{config_hash(cfg)}`.", "",
             "| Defense | Algorithm | Accuracy | 95% CI | Cost vs none | " + f"{leak_method.upper()} {leak_metric} | "
             "epsilon | server lr |", "|---|---|---|---|---|---|---|---|"]
    base = rows[rows["defense"] == "none"].set_index("algorithm")["accuracy"]
    order = {d: i for i, d in enumerate(u["defenses"])}
    for _, r in rows.sort_values(["algorithm", "defense"], key=lambda s: s.map(order) if s.name == "defense" else s).iterrows():
        cost = r["accuracy"] - base.get(r["algorithm"], np.nan)
        eps = "" if r["epsilon"] is None or pd.isna(r["epsilon"]) else f"{r['epsilon']:.3g}"
        lines.append(f"| {defense_label(r['defense'])} | {r['algorithm']} | {r['accuracy']:.3f} | "
                     f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {cost:+.3f} | "
                     f"{'n/a' if pd.isna(r['leakage']) else format(r['leakage'], '.3f')} | {eps} | {r['server_lr']:g} |")
    write_text(out["md"], "\n".join(lines) + "\n")
    privacy_utility_figure(rows, f"{leak_method.upper()} {leak_metric} (attack success, lower = more private)",
                           title, {"pdf": out["pdf"], "png": out["png"]})


# --------------------------------------------------------------------------- gradient sources
def framework(cfg: dict, model_name: str) -> str:
    """The framework that computes a model's updates: torch (default) or keras (models.<name>.framework)."""
    return cfg["models"][model_name].get("framework", "torch")


def _keras_model(cfg: dict, model_name: str, data, seed: int):
    from labelleak.updates.keras_source import build_keras_model

    spec = cfg["models"][model_name]
    size = int(data.images(np.arange(1)).shape[-1])
    return build_keras_model(spec["arch"], data.num_classes, size, seed=seed, weights=spec.get("weights"))


def train_keras(cfg: dict, dataset_name: str, model_name: str, outputs: dict[str, str | os.PathLike]) -> None:
    """Train a keras.applications model (random init or a weights file) and save its stage checkpoints."""
    from labelleak.updates import keras_source as ks

    tcfg = cfg["training"]
    data = dataset(cfg, dataset_name, "train")
    seed = derived_seed(cfg, "train", dataset_name, model_name)
    model = _keras_model(cfg, model_name, data, seed)
    device = ks.keras_device()
    log.info("training %s (keras) on %s (%d items, %d classes) on %s", model_name, dataset_name, len(data),
             data.num_classes, device)
    by_step: dict[int, list[tuple[str, str | os.PathLike]]] = {}
    for stage, path in outputs.items():
        by_step.setdefault(tcfg["checkpoints"][stage], []).append((stage, path))

    def save(step: int, m) -> None:
        for stage, path in by_step.get(step, []):
            ks.save_keras_checkpoint(path, m, framework="keras", arch=cfg["models"][model_name]["arch"],
                                     num_classes=data.num_classes, step=step, stage=stage, dataset=dataset_name,
                                     device=device)
            log.info("saved stage %s (step %d) to %s", stage, step, path)

    ks.train_keras(model, data, checkpoint_steps=list(by_step), on_checkpoint=save, batch_size=tcfg["batch_size"],
                   lr=tcfg["lr"], momentum=tcfg.get("momentum", 0.9), seed=seed)


def dump_keras(cfg: dict, dataset_name: str, model_name: str, stage: str, checkpoint: str | os.PathLike,
               batches_file: str | os.PathLike, outputs: Paths, truths: Paths) -> None:
    """One update file per batch from a Keras model, by tf.GradientTape (same file format as torch)."""
    from labelleak.data.sampling import load_batches
    from labelleak.updates import keras_source as ks
    from labelleak.updates.format import save_update

    ucfg = cfg["updates"]
    data = dataset(cfg, dataset_name, "eval")
    batches, bmeta = load_batches(batches_file)
    if len(outputs) != len(batches):
        raise ValueError(f"{batches_file}: {len(batches)} batches for {len(outputs)} update files")
    if len(truths) != len(outputs):
        raise ValueError(f"{len(truths)} truth files for {len(outputs)} updates")
    model = _keras_model(cfg, model_name, data, derived_seed(cfg, "train", dataset_name, model_name))
    info = ks.load_keras_checkpoint(checkpoint, model)
    device = ks.keras_device()
    start = time.perf_counter()
    for i, (batch, out) in enumerate(zip(batches, outputs)):
        steps = [(ks.to_channels_last(data.images(idx)), data.labels[idx]) for idx in batch]
        upd = ks.keras_projection_update(model, steps, lr=ucfg.get("local_lr", 0.1), bn_mode=ucfg.get("bn_mode", "eval"))
        meta = {"dataset": dataset_name, "model": model_name, "arch": cfg["models"][model_name]["arch"],
                "framework": "keras", "stage": stage, "checkpoint_step": info.get("step"),
                "device": device, "bn_mode": ucfg.get("bn_mode", "eval"), "local_lr": ucfg.get("local_lr", 0.1)}
        save_update(out, upd.dW, db=upd.db, W=upd.W, b=upd.b, batch_size=len(batch[0]), steps=len(batch), meta=meta)
        save_batch_truth(truths[i], data, batch, bmeta, i)
        log.info("update %d/%d written (%.1fs elapsed)", i + 1, len(outputs), time.perf_counter() - start)
    log.info("dumped %d Keras updates of %s/%s in %.1fs on %s", len(outputs), model_name, stage,
             time.perf_counter() - start, device)


#: framework -> its train and dump stages (torch's are train and dump above)
FRAMEWORK_STAGES = {"keras": {"train": train_keras, "dump": dump_keras}}
