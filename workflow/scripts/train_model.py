from labelleak.config import job_threads
from labelleak.jobs import train
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
stages = list(snakemake.config["training"]["checkpoints"])
run_job(snakemake.log[0], train.train, snakemake.config, w.dataset, w.model,
        dict(zip(stages, snakemake.output)), threads=job_threads(snakemake.config))
