from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.score, snakemake.params.rows, snakemake.output[0])
