from labelleak import pipeline_speech

w = snakemake.wildcards
pipeline_speech.run_job(snakemake.log[0], pipeline_speech.dump_asr, snakemake.config, w.dataset, w.stage,
                        snakemake.input.checkpoint, snakemake.input.groups, list(snakemake.output),
                        threads=snakemake.threads)
