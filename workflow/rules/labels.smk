# The label attacks of the seed papers on identical updates: per-update scores, their tables,
# the leaderboard and its figure. Settings come from the config sections named in LABEL_TABLES.
LABEL_TABLES = [t for t, s in STUDIES.items() if s.layout is not None and t in config]  # the label studies (a layout)


rule score_labels:
    """Per-update set and count scores of one label table (the analysis side: reads the ground truth)."""
    input:
        truth=lambda w: [r["truth"] for r in label_rows(w.table)],
        results=lambda w: [r["result"] for r in label_rows(w.table)],
    output:
        "results/scores/{table}.csv",
    params:
        rows=lambda w: label_rows(w.table),
    wildcard_constraints:
        table="|".join(LABEL_TABLES) or "none",
    group:
        CHEAP
    log:
        "results/logs/score_labels/{table}.log",
    conda:
        ENV
    script:
        "../scripts/score_labels.py"


rule idlg_table:
    """DLG's joint optimisation vs iDLG's rule: label accuracy on single samples."""
    input:
        "results/scores/idlg_table.csv",
    output:
        csv=report("results/tables/idlg_table.csv", caption="../report/idlg_table.rst", category=REPORT_TABLES),
        md="results/tables/idlg_table.md",
        tex="results/tables/idlg_table.tex",
    group:
        CHEAP
    log:
        "results/logs/idlg_table.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule ilrg_table:
    """iLRG's LeAcc / LnAcc / IRec next to RLG, Yin and iDLG on the same updates."""
    input:
        "results/scores/ilrg_table.csv",
    output:
        csv=report("results/tables/ilrg_table.csv", caption="../report/ilrg_table.rst", category=REPORT_TABLES),
        md="results/tables/ilrg_table.md",
        tex="results/tables/ilrg_table.tex",
    group:
        CHEAP
    log:
        "results/logs/ilrg_table.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule geng_table:
    """Count restoration with repeated labels, FedSGD and FedAvg (K steps): Geng et al. next to iLRG."""
    input:
        "results/scores/geng_table.csv",
    output:
        csv=report("results/tables/geng_table.csv", caption="../report/geng_table.rst", category=REPORT_TABLES),
        md="results/tables/geng_table.md",
        tex="results/tables/geng_table.tex",
    group:
        CHEAP
    log:
        "results/logs/geng_table.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule leaderboard:
    """Every attack on every architecture / activation, batch size and stage, plus its figure."""
    input:
        "results/scores/leaderboard.csv",
    output:
        csv=report("results/tables/leaderboard.csv", caption="../report/leaderboard.rst", category=REPORT_TABLES),
        md="results/tables/leaderboard.md",
        tex="results/tables/leaderboard.tex",
        pdf=report("results/figures/attacks_vs_batch.pdf", caption="../report/attacks_vs_batch.rst",
                   category=REPORT_FIGURES),
        png="results/figures/attacks_vs_batch.png",
        times="results/benchmarks/leaderboard/attack_times.csv",  # wall times: measured, kept out of the table
    group:
        CHEAP
    log:
        "results/logs/leaderboard.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule counts_by_stage:
    """Instance counts from untrained to trained checkpoints, FedSGD vs FedAvg: every count method, with a figure."""
    input:
        "results/scores/counts_by_stage.csv",
    output:
        csv=report("results/tables/counts_by_stage.csv", caption="../report/counts_by_stage.rst", category=REPORT_TABLES),
        md="results/tables/counts_by_stage.md",
        tex="results/tables/counts_by_stage.tex",
        pdf=report("results/figures/counts_by_stage.pdf", caption="../report/counts_by_stage.rst",
                   category=REPORT_FIGURES),
        png="results/figures/counts_by_stage.png",
    group:
        CHEAP
    log:
        "results/logs/counts_by_stage.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"
