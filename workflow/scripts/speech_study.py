from labelleak.jobs import tables
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], tables.speech_study, snakemake.config, snakemake.rule,
        snakemake.input[0], dict(snakemake.output.items()))
