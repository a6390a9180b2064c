from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.label_table, snakemake.config, snakemake.rule, snakemake.input[0],
                 {k: getattr(snakemake.output, k) for k in snakemake.output.keys()})
