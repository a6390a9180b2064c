from labelleak import pipeline_speech
from labelleak.config import job_threads

w = snakemake.wildcards
pipeline_speech.run_job(snakemake.log[0], pipeline_speech.dump_asr, snakemake.config, w.dataset, w.stage,
                        snakemake.input.checkpoint, snakemake.input.groups, list(snakemake.output.updates), list(snakemake.output.truth),
                        threads=job_threads(snakemake.config))
