rule dump_updates:
    """One update file per batch, by autograd on the full model (the expensive export stage)."""
    input:
        checkpoint=CHECKPOINT,
        batches=BATCHES,
    output:
        updates=expand(f"results/updates/{with_braces(SETTING)}/{{batch}}.npz", batch=BATCH_IDS),
        truth=expand(f"{with_braces(TRUTH_DIR)}/{{batch}}.json", batch=BATCH_IDS),  # scoring's input only
    wildcard_constraints:
        dataset=IMAGE_DATASETS,
    log:
        f"results/logs/dump_updates/{SETTING}.log",
    benchmark:
        f"results/benchmarks/dump_updates/{SETTING}.tsv"
    threads: TORCH_THREADS
    conda:
        ENV
    script:
        "../scripts/dump_updates.py"
