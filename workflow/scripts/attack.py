from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.attack, snakemake.config, snakemake.wildcards.method,
                 snakemake.input.npz, snakemake.output[0], threads=snakemake.threads)
