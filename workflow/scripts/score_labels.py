from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.score_labels, snakemake.params.rows, snakemake.output[0])
