from labelleak.config import job_threads
from labelleak.jobs import dump
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], dump.dump, snakemake.config, w.dataset, w.model, w.stage,
        snakemake.input.checkpoint, snakemake.input.batches, list(snakemake.output.updates), list(snakemake.output.truth),
        threads=job_threads(snakemake.config))
