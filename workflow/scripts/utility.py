from labelleak.jobs import tables
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], tables.utility_table, snakemake.config, list(snakemake.input.runs),
        snakemake.input.scores, dict(snakemake.output.items()))
