from labelleak import pipeline_speech

pipeline_speech.run_job(snakemake.log[0], pipeline_speech.speech_study, snakemake.config, snakemake.rule,
                        snakemake.input[0], dict(snakemake.output.items()))
