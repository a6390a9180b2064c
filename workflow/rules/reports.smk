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
    return rows


rule score_table1:
    """Per-update set scores of Table 1 (the analysis side: reads the ground truth)."""
    input:
        updates=[r["update"] for r in table1_rows()],
        results=[r["result"] for r in table1_rows()],
    output:
        R + "/scores/table1.csv",
    params:
        rows=table1_rows(),
    log:
        R + "/logs/score_table1.log",
    conda:
        ENV
    script:
        "../scripts/score.py"


rule table1:
    """Table 1 of Dang et al.: RLG vs Yin et al. on ResNet50 and EfficientNetB0."""
    input:
        rules.score_table1.output,
    output:
        csv=R + "/tables/table1.csv",
        md=R + "/tables/table1.md",
        tex=R + "/tables/table1.tex",
    log:
        R + "/logs/table1.log",
    conda:
        ENV
    script:
        "../scripts/table1.py"
