# Speech (Dang et al. sections 2.5.2 and 4): Tables 2, 3, 5 and Figure 2 from an attention ASR model.
# corpus -> utterance groups -> ASR training (checkpoints) -> N x K updates (projection layer in the
# update format, the decoder's update in a sibling .decoder.npz) -> attacks -> scores -> tables.
# The generic attack job runs RLG over every update of a setting; gradients matching (GM, GM + BoW) is
# one job per update (minutes each at paper scale, and a GPU rule on the cluster).

rule speech_groups:
    """Seeded utterance groups of one update shape (N utterances x K steps), or the paper's groupings."""
    output:
        SPEECH_GROUPS,
    wildcard_constraints:
        dataset=SPEECH_CORPORA,
    group:
        PREP
    log:
        "results/logs/speech_groups/{dataset}/utt_N{n}_K{k}.log",
    conda:
        ENV
    script:
        "../scripts/speech_groups.py"


rule train_asr:
    """Train the ASR model on the corpus's training utterances; one checkpoint per speech stage."""
    output:
        expand("results/models/{{dataset}}/las/{stage}.pt", stage=SPEECH_STAGES),
    wildcard_constraints:
        dataset=SPEECH_CORPORA,
    log:
        "results/logs/train_asr/{dataset}.log",
    benchmark:
        "results/benchmarks/train_asr/{dataset}.tsv"
    threads: TORCH_THREADS
    conda:
        ENV
    script:
        "../scripts/train_asr.py"


rule dump_asr_updates:
    """One update per utterance group: projection layer (update format) and decoder (sibling file)."""
    input:
        checkpoint="results/models/{dataset}/las/{stage}.pt",
        groups=SPEECH_GROUPS,
    output:
        updates=expand(f"results/updates/{{{{dataset}}}}/las/{{{{stage}}}}/utt_N{{{{n}}}}_K{{{{k}}}}/{{batch}}{{ext}}",
                       batch=SPEECH_IDS, ext=[".npz", ".decoder.npz"]),
        truth=expand("results/truth/{{dataset}}/las/{{stage}}/utt_N{{n}}_K{{k}}/{batch}.json", batch=SPEECH_IDS),
    wildcard_constraints:
        dataset=SPEECH_CORPORA,
    log:
        "results/logs/dump_asr_updates/{dataset}/{stage}/utt_N{n}_K{k}.log",
    benchmark:
        "results/benchmarks/dump_asr_updates/{dataset}/{stage}/utt_N{n}_K{k}.tsv"
    threads: TORCH_THREADS
    conda:
        ENV
    script:
        "../scripts/dump_asr_updates.py"


use rule attack as attack_speech with:
    input:
        npz=speech_attack_inputs,
        checkpoint=attack_checkpoint,
        truth=lambda w: oracle_truth(w, SPEECH_IDS),
    output:
        expand(f"results/attacks/{{{{defense}}}}/{{{{method}}}}/{with_braces(SETTING)}/{{batch}}.json", batch=SPEECH_IDS),
    wildcard_constraints:
        dataset=SPEECH_CORPORA,
        method=SPEECH_SET_METHODS,
    log:
        f"results/logs/attack_speech/{{defense}}/{{method}}/{SETTING}.log",


rule match_transcripts:
    """Gradients matching on one utterance's decoder update (GM over the vocabulary, or GM + RLG's BoW)."""
    input:
        npz=UPDATE,
        decoder=f"results/updates/{SETTING}/{{batch}}.decoder.npz",
        checkpoint=CHECKPOINT,
    output:
        f"results/attacks/{{defense}}/{{method}}/{SETTING}/{{batch}}.json",
    wildcard_constraints:
        dataset=SPEECH_CORPORA,
        method=SPEECH_GM_METHODS,
        defense="none",
    log:
        f"results/logs/match_transcripts/{{defense}}/{{method}}/{SETTING}/{{batch}}.log",
    benchmark:
        f"results/benchmarks/match_transcripts/{{defense}}/{{method}}/{SETTING}/{{batch}}.tsv"
    threads: 1
    conda:
        ENV
    script:
        "../scripts/attack.py"


use rule defend as defend_speech with:
    input:
        expand(f"results/updates/{with_braces(SETTING)}/{{batch}}.npz", batch=SPEECH_IDS),
    output:
        expand(f"{with_braces(DEFENDED_DIR)}/{{batch}}.npz", batch=SPEECH_IDS),
    wildcard_constraints:
        defense=DEFENSE_TRANSFORM,
        dataset=SPEECH_CORPORA,
    log:
        f"results/logs/defend_speech/{{defense}}/{SETTING}.log",


rule score_speech:
    """Per-update scores of one speech study (the analysis side: reads the ground truth)."""
    input:
        truth=lambda w: [r["truth"] for r in speech_study_rows(w.study)],
        results=lambda w: [r["result"] for r in speech_study_rows(w.study)],
    output:
        "results/scores/speech/{study}.csv",
    params:
        rows=lambda w: speech_study_rows(w.study),
    wildcard_constraints:
        study="|".join(SPEECH_STUDIES) or "none",
    group:
        CHEAP
    log:
        "results/logs/score_speech/{study}.log",
    conda:
        ENV
    script:
        "../scripts/score_speech.py"


rule table2:
    """Table 2 of Dang et al.: bag of words by GM and by RLG at checkpoints 0, 4k, 10k."""
    input:
        "results/scores/speech/table2.csv",
    output:
        csv=report("results/tables/table2.csv", caption="../report/table2.rst", category=REPORT_TABLES),
        md="results/tables/table2.md",
        tex="results/tables/table2.tex",
    group:
        CHEAP
    log:
        "results/logs/table2.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule table3:
    """Table 3 of Dang et al.: RLG on N-sample, K-step updates, with the true and the estimated S."""
    input:
        "results/scores/speech/table3.csv",
    output:
        csv=report("results/tables/table3.csv", caption="../report/table3.rst", category=REPORT_TABLES),
        md="results/tables/table3.md",
        tex="results/tables/table3.tex",
    group:
        CHEAP
    log:
        "results/logs/table3.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule table5:
    """Table 5 of Dang et al.: transcripts by GM without BoW, GM + BoW (1 run, best of R)."""
    input:
        "results/scores/speech/table5.csv",
    output:
        csv=report("results/tables/table5.csv", caption="../report/table5.rst", category=REPORT_TABLES),
        md="results/tables/table5.md",
        tex="results/tables/table5.tex",
    group:
        CHEAP
    log:
        "results/logs/table5.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"


rule figure2:
    """Figure 2 of Dang et al.: BoW and transcript leakage against the training checkpoint."""
    input:
        "results/scores/speech/figure2.csv",
    output:
        pdf=report("results/figures/figure2.pdf", caption="../report/figure2.rst", category=REPORT_FIGURES),
        png="results/figures/figure2.png",
        csv="results/tables/figure2.csv",
    group:
        CHEAP
    log:
        "results/logs/figure2.log",
    conda:
        ENV
    script:
        "../scripts/render_study.py"
