# labelleak: every table and figure of the papers from one DAG.
#   snakemake --cores 8 tables                     # default config (CPU, generated data)
#   snakemake --cores 8 table1                     # one paper table
#   snakemake --cores 8 tables --configfile config/paper.yaml
# Data flows one way: data -> models -> updates -> (defenses) -> attacks -> metrics -> reports.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/updates.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/reports.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/defenses.smk"
include: "workflow/rules/speech.smk"
include: "workflow/rules/fl_rounds.smk"


rule tables:
    """Every table of the default study."""
    default_target: True
    input:
        rules.table1.output,
        [getattr(rules, t).output for t in LABEL_TABLES],  # label attacks, fl_rounds (Flower clients)
        [getattr(rules, t).output for t in DEFENSE_TABLES],  # defenses: table4, defense_matrix, utility
        [getattr(rules, t).output for t in SPEECH_STUDIES],  # speech: tables 2, 3, 5, figure 2
