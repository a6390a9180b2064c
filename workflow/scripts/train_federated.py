from labelleak.jobs import utility
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], utility.utility, snakemake.config, snakemake.wildcards.algorithm,
        snakemake.wildcards.defense, snakemake.output[0])
