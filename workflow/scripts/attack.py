from labelleak.jobs import attack
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], attack.attack, snakemake.config, w.method, snakemake.input.npz,
        list(snakemake.output), snakemake.input.get("checkpoint"), w.dataset, w.model,
        snakemake.input.get("truth"))
