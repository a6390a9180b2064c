rule attack:
    """One attack on one update: the cheap inference stage over the update cache."""
    input:
        npz=attack_input,
        checkpoint=attack_checkpoint,
    output:
        RESULT,
    group:
        CHEAP
    log:
        f"results/logs/attack/{{defense}}/{{method}}/{SETTING}/{{batch}}.log",
    conda:
        ENV
    script:
        "../scripts/attack.py"
