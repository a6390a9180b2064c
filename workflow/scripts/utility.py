from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.utility_table, snakemake.config, list(snakemake.input.runs),
                 snakemake.input.scores, dict(snakemake.output.items()))
