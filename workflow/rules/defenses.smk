# Defenses: between the update dump and the attacks, so one dump feeds every defense.
# `defend` transforms dumped updates (Sign-SGD, GradDrop, noise, clipping, QSGD, top-k, compositions);
# DP-SGD acts while the update is computed, so `dump_dp_updates` computes its updates itself. Both write
# the update format under results/defended/{defense}/..., which the `attack` rule reads for defense != none.

rule defend:
    """Apply an update-stage defense to every dumped update of a setting (pure: the dump is unchanged)."""
    input:
        expand(f"results/updates/{with_braces(SETTING)}/{{batch}}.npz", batch=BATCH_IDS),
    output:
        expand(f"{with_braces(DEFENDED_DIR)}/{{batch}}.npz", batch=BATCH_IDS),
    wildcard_constraints:
        dataset=IMAGE_DATASETS,
        defense=DEFENSE_TRANSFORM,
    group:
        CHEAP
    log:
        f"results/logs/defend/{{defense}}/{SETTING}.log",
    conda:
        ENV
    script:
        "../scripts/defend.py"


rule dump_dp_updates:
    """DP-SGD updates: per-sample clipping and noise while the client computes its update."""
    input:
        checkpoint=CHECKPOINT,
        batches=BATCHES,
    output:
        expand(f"{with_braces(DEFENDED_DIR)}/{{batch}}.npz", batch=BATCH_IDS),
    wildcard_constraints:
        dataset=IMAGE_DATASETS,
        defense=DEFENSE_DPSGD,
    log:
        f"results/logs/dump_dp_updates/{{defense}}/{SETTING}.log",
    benchmark:
        f"results/benchmarks/dump_dp_updates/{{defense}}/{SETTING}.tsv"
    threads: TORCH_THREADS
    conda:
        ENV
    script:
        "../scripts/dump_dp_updates.py"


rule score_defense_study:
    """Per-update set scores of one defense study (the analysis side: reads the ground truth)."""
    input:
        truth=lambda w: [r["truth"] for r in defense_rows(w.study)],
        results=lambda w: [r["result"] for r in defense_rows(w.study)],
    output:
        "results/scores/defenses/{study}.csv",
    params:
        rows=lambda w: defense_rows(w.study),
    wildcard_constraints:
        study=r"table4|defense_matrix",
    group:
        CHEAP
    log:
        "results/logs/score_defense_study/{study}.log",
    conda:
        ENV
    script:
        "../scripts/score.py"


rule table4:
    """Table 4 of Dang et al.: RLG against Sign-SGD and GradDrop (EfficientNetB0, N = 10)."""
    input:
        "results/scores/defenses/table4.csv",
    output:
        csv=report("results/tables/table4.csv", caption="../report/table4.rst", category=REPORT_TABLES),
        md="results/tables/table4.md",
        tex="results/tables/table4.tex",
    group:
        CHEAP
    log:
        "results/logs/table4.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule defense_matrix:
    """Every attack x every defense and strength, cells as in the leaderboard (mean and 95% CI)."""
    input:
        "results/scores/defenses/defense_matrix.csv",
    output:
        csv=report("results/tables/defense_matrix.csv", caption="../report/defense_matrix.rst", category=REPORT_TABLES),
        md="results/tables/defense_matrix.md",
        tex="results/tables/defense_matrix.tex",
    group:
        CHEAP
    log:
        "results/logs/defense_matrix.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule train_federated:
    """A small model trained federatedly with every client update passed through one defense."""
    output:
        UTILITY_RUN,
    wildcard_constraints:
        algorithm=r"fedsgd|fedavg",
        defense=DEFENSE_ANY,
    log:
        "results/logs/train_federated/{algorithm}/{defense}.log",
    benchmark:
        "results/benchmarks/train_federated/{algorithm}/{defense}.tsv"
    conda:
        ENV
    script:
        "../scripts/train_federated.py"


rule utility:
    """What each defense costs in accuracy, beside the attack success it buys; the privacy-utility figure."""
    input:
        runs=expand(UTILITY_RUN, algorithm=config.get("utility", {}).get("algorithms", []),
                    defense=config.get("utility", {}).get("defenses", [])),
        scores="results/scores/defenses/defense_matrix.csv",
    output:
        csv=report("results/tables/utility.csv", caption="../report/utility.rst", category=REPORT_TABLES),
        md="results/tables/utility.md",
        pdf=report("results/figures/privacy_utility.pdf", caption="../report/privacy_utility.rst",
                   category=REPORT_FIGURES),
        png="results/figures/privacy_utility.png",
        times="results/benchmarks/utility/train_times.csv",  # wall times: measured, kept out of the table
    group:
        CHEAP
    log:
        "results/logs/utility.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


# the targets of the defense study that this config defines (all three in the shipped configs)
DEFENSE_TABLES = [t for t in ("table4", "defense_matrix", "utility") if t in config and "defense_matrix" in config]
