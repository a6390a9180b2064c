from labelleak.jobs import score
from labelleak.jobs.runner import run_job

run_job(snakemake.log[0], score.score_speech, snakemake.config,
        snakemake.config["speech"]["corpus"], snakemake.params.rows, snakemake.output[0])
