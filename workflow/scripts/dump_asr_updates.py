from labelleak.config import job_threads
from labelleak.jobs import dump
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], dump.dump_asr, snakemake.config, w.dataset, w.stage,
        snakemake.input.checkpoint, snakemake.input.groups, list(snakemake.output.updates), list(snakemake.output.truth),
        threads=job_threads(snakemake.config))
