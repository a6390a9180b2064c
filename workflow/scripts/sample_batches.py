from labelleak import pipeline

w = snakemake.wildcards
pipeline.run_job(snakemake.log[0], pipeline.sample, snakemake.config, w.dataset, w.composition, int(w.n), int(w.k),
                 snakemake.output[0])
