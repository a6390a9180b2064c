from labelleak.config import job_threads
from labelleak.jobs import train
from labelleak.jobs.runner import run_job

stages = list(snakemake.config["speech"]["training"]["checkpoints"])
run_job(snakemake.log[0], train.train_asr, snakemake.config, snakemake.wildcards.dataset,
        dict(zip(stages, snakemake.output)), threads=job_threads(snakemake.config))
