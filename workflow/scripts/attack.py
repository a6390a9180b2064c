from labelleak import pipeline

w = snakemake.wildcards
pipeline.run_job(snakemake.log[0], pipeline.attack, snakemake.config, w.method, snakemake.input.npz,
                 list(snakemake.output), snakemake.input.get("checkpoint"), w.dataset, w.model,
                 snakemake.input.get("truth"))
