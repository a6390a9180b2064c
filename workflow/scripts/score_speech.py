from labelleak import pipeline_speech

pipeline_speech.run_job(snakemake.log[0], pipeline_speech.score_speech, snakemake.config,
                        snakemake.config["speech"]["corpus"], snakemake.params.rows, snakemake.output[0])
