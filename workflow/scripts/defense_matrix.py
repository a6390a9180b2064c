from labelleak import pipeline

pipeline.run_job(snakemake.log[0], pipeline.defense_matrix, snakemake.config, snakemake.input[0],
                 {"csv": snakemake.output.csv, "md": snakemake.output.md, "tex": snakemake.output.tex})
