from labelleak.jobs import tables
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], tables.table4, snakemake.config, snakemake.input[0],
        {"csv": snakemake.output.csv, "md": snakemake.output.md, "tex": snakemake.output.tex})
