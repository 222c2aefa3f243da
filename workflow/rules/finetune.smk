# After the budget is spent: distil a campaign's aligned sampler (FKC tilted by its last
# surrogate) into the base model, in each mode of the experiment's `distil:` (full, split,
# LoRA), and judge each fine-tuned model like the final evaluation; then the experiment's
# fine-tuning table beside its online fine-tuning baselines (methods with `learner: papa|d3po`).


rule finetune:
    input:
        spec=SPEC,
        surrogate=FINAL_SURROGATE,
    output:
        directory(FINETUNED),
    log:
        f"{LOGS}/finetune.log",
    benchmark:
        f"{CAMPAIGN_BENCHMARKS}/finetune.tsv"
    resources:
        gpu=get_gpu,
    params:
        modes=get_distil_modes,
    shell:
        "prefalign finetune --spec {input.spec:q} --surrogate {input.surrogate:q} "
        "--modes {params.modes} --out {output:q} --log {log:q} --quiet >> {log:q} 2>&1"


rule amortise:
    input:
        evaluations=get_evaluations,
        distilled=get_distilled,
    output:
        section=f"{EXPERIMENT}/amortised.md",
        table=f"{EXPERIMENT}/tables/amortised.md",
        rows=f"{EXPERIMENT}/tables/amortised.json",
    log:
        "logs/aggregate/{experiment}-amortised.log",
    benchmark:
        "results/benchmarks/aggregate/{experiment}-amortised.tsv"
    params:
        modes=get_distil_modes,
        teacher=get_distil_method,
        title=get_experiment_title,
        page_dir=get_page_dir,
    shell:
        "prefalign amortise --evaluations {input.evaluations:q} --distilled {input.distilled:q} "
        "--modes {params.modes} --teacher {params.teacher} --title {params.title} "
        "--out results/experiments/{wildcards.experiment:q} --page-dir {params.page_dir:q} "
        "> {log:q} 2>&1"
