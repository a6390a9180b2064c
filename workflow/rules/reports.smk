rule score_table1:
    """Per-update set scores of Table 1 (the analysis side: reads the ground truth)."""
    input:
        truth=[r["truth"] for r in table1_rows()],
        results=[r["result"] for r in table1_rows()],
    output:
        "results/scores/table1.csv",
    params:
        rows=table1_rows(),
    group:
        CHEAP
    log:
        "results/logs/score_table1.log",
    conda:
        ENV
    script:
        "../scripts/score.py"


rule table1:
    """Table 1 of Dang et al.: RLG vs Yin et al. on ResNet50 and EfficientNetB0."""
    input:
        rules.score_table1.output,
    output:
        csv=report("results/tables/table1.csv", caption="../report/table1.rst", category=REPORT_TABLES),
        md="results/tables/table1.md",
        tex="results/tables/table1.tex",
    group:
        CHEAP
    log:
        "results/logs/table1.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"
