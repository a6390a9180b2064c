rule attack:
    """One attack on every update of a setting (one result file per update): the cheap inference stage."""
    input:
        npz=attack_inputs,
        checkpoint=attack_checkpoint,
        truth=lambda w: oracle_truth(w, BATCH_IDS),  # an oracle method's only; no other attack sees a truth file
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
