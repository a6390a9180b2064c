rule train_model:
    """Train a model and keep one checkpoint per stage of config.training.checkpoints."""
    output:
        expand("results/models/{{dataset}}/{{model}}/{stage}.pt", stage=STAGES),
    wildcard_constraints:
        dataset=IMAGE_DATASETS,
    log:
        "results/logs/train_model/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train_model/{dataset}/{model}.tsv"
    threads: TORCH_THREADS
    conda:
        ENV
    script:
        "../scripts/train_model.py"
