rule attack:
    """One attack on every update of a setting (one result file per update): the cheap inference stage."""
    input:
        npz=attack_inputs,
        checkpoint=attack_checkpoint,
    output:
        expand(f"results/attacks/{{{{defense}}}}/{{{{method}}}}/{with_braces(SETTING)}/{{batch}}.json", batch=BATCH_IDS),
    group:
        CHEAP
    wildcard_constraints:
        dataset=IMAGE_DATASETS,
    log:
        f"results/logs/attack/{{defense}}/{{method}}/{SETTING}.log",
    conda:
        ENV
    script:
        "../scripts/attack.py"
