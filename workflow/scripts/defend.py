from labelleak.jobs import defend
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], defend.defend, snakemake.config, snakemake.wildcards.defense,
        list(snakemake.input), list(snakemake.output))
