from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.defend, snakemake.config, snakemake.wildcards.defense,
                 list(snakemake.input), list(snakemake.output))
