from labelleak import pipeline_speech

w = snakemake.wildcards
pipeline_speech.run_job(snakemake.log[0], pipeline_speech.speech_groups, snakemake.config, w.dataset, int(w.n),
                        int(w.k), snakemake.output[0])
