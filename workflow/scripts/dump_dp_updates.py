from labelleak.config import job_threads
from labelleak.jobs import dump
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], dump.dump_dp, snakemake.config, w.defense, w.dataset, w.model, w.stage,
        snakemake.input.checkpoint, snakemake.input.batches, list(snakemake.output), threads=job_threads(snakemake.config))
