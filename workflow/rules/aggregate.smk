# Seeds aggregated into each experiment's figures and tables, then one results page.


rule aggregate:
    input:
        observations=get_final_observations,
        evaluations=get_evaluations,
        benchmarks=get_experiment_benchmarks,  # the campaigns' jobs' benchmark files (E4: cost)
    output:
        curves=report(
            f"{EXPERIMENT}/figures/reward_vs_queries.png",
            category="{experiment}",
            subcategory="Reward vs queries",
            caption="../report/reward_vs_queries.rst",
        ),
        final=report(
            f"{EXPERIMENT}/figures/final_metrics.png",
            category="{experiment}",
            subcategory="Final metrics",
            caption="../report/final_metrics.rst",
        ),
        cost=report(
            f"{EXPERIMENT}/figures/cost.png",
            category="{experiment}",
            subcategory="Cost",
            caption="../report/cost.rst",
        ),
        table=f"{EXPERIMENT}/tables/final.md",
        rounds=f"{EXPERIMENT}/tables/round_metrics.csv",
        metrics=f"{EXPERIMENT}/tables/final_metrics.json",
        section=f"{EXPERIMENT}/section.md",
    log:
        "logs/aggregate/{experiment}.log",
    benchmark:
        "results/benchmarks/aggregate/{experiment}.tsv"
    wildcard_constraints:
        experiment=experiments_pattern(population=False),  # population_report writes theirs
    params:
        threshold=get_success_threshold,
        title=get_experiment_title,
        reference=get_experiment_reference,
        page_dir=get_page_dir,
    shell:
        "prefalign aggregate --observations {input.observations:q} "
        "--evaluations {input.evaluations:q} --threshold {params.threshold} "
        "--benchmarks {input.benchmarks:q} "
        "--out results/experiments/{wildcards.experiment:q} --title {params.title} "
        "--reference {params.reference} "
        "--page-dir {params.page_dir:q} "
        "> {log:q} 2>&1"


rule results_page:
    input:
        sections=get_experiment_sections,
        notes=get_results_notes,
        base_models=get_base_model_dirs,
        shipped=get_shipped_models,
    output:
        get_results_page(),
    log:
        "logs/results_page.log",
    benchmark:
        "results/benchmarks/results_page.tsv"
    params:
        name=get_run_name,
        torch_threads=get_torch_threads,
        base_models=get_base_models,
        shipped=SHIPPED_MODELS,
    shell:
        "prefalign results-page --sections {input.sections:q} --notes {input.notes:q} "
        "--config-name {params.name} --torch-threads {params.torch_threads} "
        "{params.base_models} --shipped {params.shipped:q} --out {output:q} "
        "> {log:q} 2>&1"
