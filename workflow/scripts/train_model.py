from labelleak import pipeline

w = snakemake.wildcards
stages = list(snakemake.config["training"]["checkpoints"])
pipeline.run_job(snakemake.log[0], pipeline.train, snakemake.config, w.dataset, w.model,
                 dict(zip(stages, snakemake.output)), threads=snakemake.threads)
