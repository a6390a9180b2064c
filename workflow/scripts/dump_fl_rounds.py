from labelleak.jobs import fl_rounds
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], fl_rounds.dump_fl_rounds, snakemake.config, w.dataset, w.model, int(w.k),
        list(snakemake.output.updates), list(snakemake.output.truth))
