from labelleak import pipeline
from labelleak.config import job_threads

w = snakemake.wildcards
stages = list(snakemake.config["training"]["checkpoints"])
pipeline.run_job(snakemake.log[0], pipeline.train, snakemake.config, w.dataset, w.model,
                 dict(zip(stages, snakemake.output)), threads=job_threads(snakemake.config))
