from labelleak import pipeline
from labelleak.config import job_threads

w = snakemake.wildcards
pipeline.run_job(snakemake.log[0], pipeline.dump, snakemake.config, w.dataset, w.model, w.stage,
                 snakemake.input.checkpoint, snakemake.input.batches, list(snakemake.output.updates), list(snakemake.output.truth),
                 threads=job_threads(snakemake.config))
