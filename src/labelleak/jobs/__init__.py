"""Job stages of the DAG, one module per stage family (the rules' scripts call them through
``pipeline.run_job``). New stages go here; ``pipeline.py`` / ``pipeline_speech.py`` hold the older ones."""
