from labelleak.jobs import sample
from labelleak.jobs.runner import run_job

w = snakemake.wildcards
run_job(snakemake.log[0], sample.speech_groups, snakemake.config, w.dataset, int(w.n),
        int(w.k), snakemake.output[0])
