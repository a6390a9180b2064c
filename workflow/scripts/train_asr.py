from labelleak import pipeline_speech
from labelleak.config import job_threads

stages = list(snakemake.config["speech"]["training"]["checkpoints"])
pipeline_speech.run_job(snakemake.log[0], pipeline_speech.train_asr, snakemake.config, snakemake.wildcards.dataset,
                        dict(zip(stages, snakemake.output)), threads=job_threads(snakemake.config))
