def attack_input(wildcards):
    """The update an attack sees: the dumped update (defenses plug in here)."""
    return UPDATE.format(**wildcards)


rule attack:
    """One attack on one update: the cheap inference stage over the update cache."""
    input:
        npz=attack_input,
    output:
        RESULT,
    log:
        R + "/logs/attack/{defense}/{method}/" + SETTING + "/{batch}.log",
    conda:
        ENV
    script:
        "../scripts/attack.py"
