from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.utility, snakemake.config, snakemake.wildcards.algorithm,
                 snakemake.wildcards.defense, snakemake.output[0])
