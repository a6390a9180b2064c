from labelleak.jobs import sample
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], sample.sample, snakemake.config, w.dataset, w.composition, int(w.n), int(w.k),
        snakemake.output[0])
