# Study fl_rounds: label attacks on the client updates of Flower FedAvg rounds (labelleak.jobs.fl_rounds).
# dump_fl_rounds -> attack_fl (one job per method and K, over all rounds) -> score_labels -> fl_rounds.
FL = config.get("fl_rounds", {})
FL_ROUNDS = round_stages(FL.get("rounds", 0))
FL_CLIENTS = fl_jobs.client_ids(FL.get("clients", 0))


rule dump_fl_rounds:
    """Flower FedAvg with K local steps: every client's returned weights of every round as an update file."""
    output:
        updates=expand("results/updates/{{dataset}}/{{model}}/{stage}/fl_N{{n}}_K{{k}}/{client}.npz",
                       stage=FL_ROUNDS, client=FL_CLIENTS),
        truth=expand("results/truth/{{dataset}}/{{model}}/{stage}/fl_N{{n}}_K{{k}}/{client}.json",
                     stage=FL_ROUNDS, client=FL_CLIENTS),  # scoring's input only
    log:
        "results/logs/dump_fl_rounds/{dataset}/{model}/fl_N{n}_K{k}.log",
    benchmark:
        "results/benchmarks/dump_fl_rounds/{dataset}/{model}/fl_N{n}_K{k}.tsv"
    conda:
        ENV
    script:
        "../scripts/dump_fl_rounds.py"


rule attack_fl:
    """One attack on every client update of every round of one Flower run (one job per method and K: a job's
    start-up, not the attack, was most of the time of one job per round)."""
    input:
        npz=fl_updates,
        truth=fl_oracle_truth,
    output:
        [f"results/attacks/{{defense}}/{{method}}/{{dataset}}/{{model}}/{stage}/fl_N{{n}}_K{{k}}/{client}.json"
         for stage in FL_ROUNDS for client in FL_CLIENTS],
    group:
        CHEAP
    wildcard_constraints:
        defense="none",
    log:
        "results/logs/attack_fl/{defense}/{method}/{dataset}/{model}/fl_N{n}_K{k}.log",
    conda:
        ENV
    script:
        "../scripts/attack.py"


rule fl_rounds:
    """Every update-only attack on every client update, by round and by local steps, with its figure."""
    input:
        "results/scores/fl_rounds.csv",
    output:
        csv=report("results/tables/fl_rounds.csv", caption="../report/fl_rounds.rst", category=REPORT_TABLES),
        md="results/tables/fl_rounds.md",
        tex="results/tables/fl_rounds.tex",
        pdf=report("results/figures/fl_rounds.pdf", caption="../report/fl_rounds.rst", category=REPORT_FIGURES),
        png="results/figures/fl_rounds.png",
    group:
        CHEAP
    log:
        "results/logs/fl_rounds.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"
