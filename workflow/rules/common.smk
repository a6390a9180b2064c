# Config validation (before any job runs), result paths and helpers shared by the rules.
#
# Conventions for all rules (`snakemake --lint` must stay clean; see README "Cluster"):
# - thin: `script:` a 3-line workflow/scripts/*.py calling labelleak.jobs.runner.run_job(snakemake.log[0], fn, ...)
# - `log:` under "results/logs/<rule>/...", and `conda: ENV` (environment.yml, same pins as pyproject.toml)
# - paths as plain "results/..." literals or f-strings (f"results/updates/{SETTING}/{{batch}}.npz"),
#   never composed with + (lint: path composition with +); functions (def) only in this file, rule
#   files hold rules and constants (lint: mixed rules and functions)
# - long rules (training, dumping, gradient matching): `benchmark:` under "results/benchmarks/<rule>/...",
#   progress lines in their log ("step i/n ... ~Ns left"), the device used in log and result metadata
# - cheap rules (one attack, scores, tables, figures): `group: CHEAP` so that on a cluster all the
#   connected cheap jobs run as one job (groups are inactive in local runs); seconds-long rules
#   upstream of the GPU rules: `group: PREP`
# - GPU rules: an entry under `set-resources` (gpu: 1, mem_mb, runtime) and `set-threads` in
#   workflow/profiles/slurm/config.v8+.yaml; rules never ask for a device, they pick one
#   (labelleak.device.pick_device: CUDA when present, else CPU)
# - every table and figure output wrapped in report(..., caption="../report/<name>.rst",
#   category=REPORT_TABLES or REPORT_FIGURES), the caption file under workflow/report/
import os
import re
import sys

from labelleak.config import check_overrides, check_paths, job_threads, validate_config
from labelleak.studies.labels import round_stages
from labelleak.errors import ConfigError
from labelleak import resume
from labelleak.studies import STUDIES
from labelleak.jobs import fl_rounds as fl_jobs
from labelleak.data.wordpiece import SPECIAL_MAX_ID

try:
    # what --configfile / --config merged over config/config.yaml (an empty mapping there does nothing)
    check_overrides(getattr(getattr(workflow, "config_settings", None), "overwrite_config", None) or {})
    validate_config(config)
    check_paths(config)
except ConfigError as exc:
    sys.exit(f"labelleak: {exc}")

# --cores above this machine's CPUs would only oversubscribe them (2-thread torch jobs slow down several-fold
# beside each other); the numbers do not depend on --cores (config.threads), so a local run is capped at the CPUs.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_ASKED = workflow.global_resources["_cores"]
if (workflow.is_main_process and workflow.global_resources["_nodes"].value is None and _ASKED.value is not None
        and _ASKED.value > _CPUS):
    print(f"labelleak: --cores {_ASKED.value} capped at this machine's {_CPUS} CPUs (the numbers do not depend "
          f"on --cores; jobs compute with config threads: {job_threads(config)})", file=sys.stderr)
    workflow.global_resources["_cores"] = type(_ASKED)("_cores", _CPUS)

# Plain resume (labelleak.resume): a killed scheduler's stale locks go, and its jobs stop with it.
if workflow.is_main_process:
    resume.reclaim_stale_locks(".snakemake")  # Snakemake keeps it in the working directory
os.environ[resume.ENV] = resume.identity()


R = "results"
BATCHES = "results/batches/{dataset}/{composition}_N{n}_K{k}.json"
CHECKPOINT = "results/models/{dataset}/{model}/{stage}.pt"
SETTING = "{dataset}/{model}/{stage}/{composition}_N{n}_K{k}"
UPDATE = f"results/updates/{SETTING}/{{batch}}.npz"
TRUTH_DIR = f"results/truth/{SETTING}"  # ground truth: an input of scoring rules (and oracle methods) only
RESULT = f"results/attacks/{{defense}}/{{method}}/{SETTING}/{{batch}}.json"
DEFENDED = f"results/defended/{{defense}}/{SETTING}/{{batch}}.npz"  # an update after a defense (not none)
ENV = "../../environment.yml"
CHEAP = "cheap"  # job group of second-long rules downstream of the updates (one cluster job)
PREP = "prep"  # job group of second-long rules upstream of the GPU rules
REPORT_TABLES = "Tables"
REPORT_FIGURES = "Figures"

STAGES = list(config["training"]["checkpoints"])
BATCH_IDS = [f"{i:03d}" for i in range(config["sampling"]["num_batches"])]


# Threads a torch rule asks the scheduler for; the job computes with job_threads(config) whatever it is
# given (a local --cores 1 scales the request down, a cluster profile's set-threads raises it), so the
# numbers depend on the config alone.
TORCH_THREADS = job_threads(config)


wildcard_constraints:
    dataset=r"[A-Za-z0-9\-]+(?:_[A-Za-z0-9\-]+)*",
    model=r"[A-Za-z0-9_\-]+",
    stage=r"[A-Za-z0-9_\-]+",
    composition=r"(?!fl$)[a-z]+",  # fl: the Flower clients' own batches (fl_rounds.smk)
    n=r"\d+",
    k=r"\d+",
    batch=r"\d+",
    defense=r"none|[a-z][a-z0-9]*(?:-[0-9.e]+)*(?:\+[a-z][a-z0-9]*(?:-[0-9.e]+)*)*",
    method=r"[a-z0-9_]+",


def with_braces(pattern):
    """Escape a path pattern's wildcards for expand(), keeping them as wildcards."""
    return pattern.replace("{", "{{").replace("}", "}}")


def truth_of(update):
    """The truth file of an update of the DAG; a defended update shares its source's (same batch)."""
    m = re.fullmatch(r"results/(?:updates|defended/[^/]+)/(.+)\.npz", update)
    if m is None:
        raise ValueError(f"{update}: not an update path of this workflow")
    return f"results/truth/{m.group(1)}.json"


def with_truth(rows):
    """Rows (update, result, keys) with the truth file of each update added (for the scoring side)."""
    return [dict(row, truth=truth_of(row["update"])) for row in rows]


# ---- functions of attacks.smk
def oracle_truth(wildcards, batch_ids):
    """Truth files for an oracle method (told the number of labels by the experimenter); none otherwise."""
    from labelleak.attacks.oracles import ORACLE_METHODS

    if wildcards.method not in ORACLE_METHODS:
        return []
    return [f"{TRUTH_DIR}/{b}.json".format(**wildcards) for b in batch_ids]


def fl_updates(wildcards):
    """Every client update of every round of one Flower run (fl_rounds.smk), round-major."""
    return [f"results/updates/{wildcards.dataset}/{wildcards.model}/{stage}/fl_N{wildcards.n}_K{wildcards.k}/{c}.npz"
            for stage in FL_ROUNDS for c in FL_CLIENTS]


def fl_oracle_truth(wildcards):
    """fl_updates' truth files, for an oracle method only (as oracle_truth)."""
    from labelleak.attacks.oracles import ORACLE_METHODS

    if wildcards.method not in ORACLE_METHODS:
        return []
    return [p.replace("results/updates/", "results/truth/").replace(".npz", ".json") for p in fl_updates(wildcards)]


def attack_inputs(wildcards):
    """The updates an attack job sees: the dumped ones, or the defended ones when the defense is not none."""
    pattern = UPDATE if wildcards.defense == "none" else DEFENDED
    return [pattern.format(batch=b, **wildcards) for b in BATCH_IDS]


def attack_checkpoint(wildcards):
    """The model checkpoint, for attacks that declare they need the model (never the labels)."""
    from labelleak.attacks import get_attack
    from labelleak.attacks.oracles import attack_name

    return CHECKPOINT.format(**wildcards) if "model" in get_attack(attack_name(wildcards.method)).needs else []


# ---- functions of reports.smk
def table1_rows():
    """(update, result, keys) for every cell of Table 1."""
    t1 = config["table1"]
    rows = []
    for model in t1["models"]:
        for n in t1["batch_sizes"]:
            for method in t1["methods"]:
                for batch in BATCH_IDS:
                    keys = dict(dataset=t1["dataset"], model=model, stage=t1["stage"], n=n, k=1,
                                composition=config["sampling"]["composition"], batch=batch)
                    rows.append(dict(update=UPDATE.format(**keys),
                                     result=RESULT.format(defense="none", method=method, **keys),
                                     model=model, n=n, method=method, batch=batch))
    return with_truth(rows)


# ---- defenses.smk: paths and the rows of the defense study (its names are checked by validate_config)
from labelleak.config import matrix_methods
from labelleak.studies.table4 import table4_speech_methods


DEFENDED_DIR = f"results/defended/{{defense}}/{SETTING}"
# defense names (labelleak.defenses.NAME_PATTERN): any, update-stage transforms only, DP-SGD first
DEFENSE_ANY = r"none|[a-z][a-z0-9]*(?:-[0-9.e]+)*(?:\+[a-z][a-z0-9]*(?:-[0-9.e]+)*)*"
DEFENSE_TRANSFORM = r"(?!none$)(?!dpsgd)[a-z][a-z0-9]*(?:-[0-9.e]+)*(?:\+[a-z][a-z0-9]*(?:-[0-9.e]+)*)*"
DEFENSE_DPSGD = r"dpsgd-[0-9.e]+-[0-9.e]+(?:\+[a-z][a-z0-9]*(?:-[0-9.e]+)*)*"
UTILITY_RUN = "results/utility/{algorithm}/{defense}.json"


def defense_rows(study):
    """(update, result, keys) for every cell of one defense study: "table4" or "defense_matrix"."""
    if study not in config:
        return []
    sec = config[study]
    models = sec["models"] if study == "table4" else [sec["model"]]
    methods = matrix_methods(config) if study == "defense_matrix" else sec["methods"]
    rows = []
    for model in models:
        for defense in sec["defenses"]:
            for method in methods:
                for batch in BATCH_IDS:
                    keys = dict(dataset=sec["dataset"], model=model, stage=sec["stage"], n=sec["batch_size"], k=1,
                                composition=config["sampling"]["composition"], batch=batch)
                    update = UPDATE.format(**keys) if defense == "none" else DEFENDED.format(defense=defense, **keys)
                    rows.append(dict(update=update, result=RESULT.format(defense=defense, method=method, **keys),
                                     dataset=sec["dataset"], model=model, stage=sec["stage"], n=sec["batch_size"],
                                     defense=defense, method=method, batch=batch))
    if study == "table4" and sec.get("speech_stage") is not None and config.get("speech"):
        rows += speech_defense_rows(sec)
    return with_truth(rows)


def speech_defense_rows(sec):
    """Table 4's ASR block: RLG on single-utterance updates of the ASR model (bag of words: ids > 2)."""
    corpus = config["speech"]["corpus"]
    rows = []
    for defense in sec["defenses"]:
        for method in table4_speech_methods(sec):
            for batch in [f"{i:03d}" for i in range(config["speech"]["num_updates"])]:
                keys = dict(dataset=corpus, model="las", stage=sec["speech_stage"], n=1, k=1, composition="utt",
                            batch=batch)
                update = UPDATE.format(**keys) if defense == "none" else DEFENDED.format(defense=defense, **keys)
                rows.append(dict(update=update, result=RESULT.format(defense=defense, method=method, **keys),
                                 dataset=corpus, model="las", stage=sec["speech_stage"], n=1, defense=defense,
                                 method=method, batch=batch, ignore_ids_upto=SPECIAL_MAX_ID))
    return rows


# ---- functions of labels.smk
def label_rows(table):
    """(update, result, keys) of every attacked update of one label table."""
    from labelleak.studies.labels import study_rows

    return with_truth(study_rows(config, table, UPDATE, RESULT))


# ---- speech.smk: the ASR corpus, its stages and update counts, the rows of the speech studies
def _names(names):
    """A wildcard regex matching exactly these names (one that matches nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


IMAGE_DATASETS = _names(config["datasets"])
SPEECH = config.get("speech", {})
SPEECH_CORPORA = _names(SPEECH.get("corpora", {}))
SPEECH_STAGES = list(SPEECH.get("training", {}).get("checkpoints", {}))
SPEECH_IDS = [f"{i:03d}" for i in range(SPEECH.get("num_updates", 0))]
SPEECH_GROUPS = "results/batches/{dataset}/utt_N{n}_K{k}.json"
SPEECH_GM_METHODS = "gm_asr|gm_bow"
SPEECH_SET_METHODS = r"(?!(?:gm_asr|gm_bow)(?:/|$))[a-z0-9_]+"  # every method but gradients matching
SPEECH_STUDIES = [s for s in ("table2", "table3", "table5", "figure2") if s in config and SPEECH]


def speech_attack_inputs(wildcards):
    """The speech updates of one setting an attack job sees (dumped, or defended for defense != none)."""
    pattern = UPDATE if wildcards.defense == "none" else DEFENDED
    return [pattern.format(batch=b, **wildcards) for b in SPEECH_IDS]


def speech_study_rows(study):
    """(update, result, keys) of every attacked update of one speech study."""
    from labelleak.reports.speech import speech_rows

    return with_truth(speech_rows(config, study, UPDATE, RESULT))
