from labelleak.jobs import tables
from labelleak.jobs.runner import run_job

inputs = snakemake.input
run_job(snakemake.log[0], tables.render, snakemake.config, snakemake.rule, inputs.get("scores") or inputs[0],
        dict(snakemake.output.items()), list(inputs.get("runs") or []))
