rule sample_batches:
    """Seeded batch index lists over a dataset's eval split (label composition under control)."""
    output:
        BATCHES,
    group:
        PREP
    wildcard_constraints:
        dataset=IMAGE_DATASETS,
    log:
        "results/logs/sample_batches/{dataset}/{composition}_N{n}_K{k}.log",
    conda:
        ENV
    script:
        "../scripts/sample_batches.py"
