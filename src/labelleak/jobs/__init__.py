"""The job stages of the DAG, one module per stage; a rule's script calls ``jobs.runner.run_job(log, fn, ...)``."""
