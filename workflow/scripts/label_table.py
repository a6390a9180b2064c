from labelleak.jobs import tables
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], tables.label_table, snakemake.config, snakemake.rule, snakemake.input[0],
        {k: getattr(snakemake.output, k) for k in snakemake.output.keys()})
