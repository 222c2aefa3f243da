# A population of simulated users (`populations:`, prefalign.loop.population): each user is a
# domain of its own, so its campaigns are the rules' usual ones. Here: the population prior,
# fitted on the final observations of every training user's campaign, which each held-out
# user's campaign of a method with learner `population` starts from (`propose` and `evaluate`
# take it as an input); and a population experiment's report, held-out users paired by user.


rule population_prior:
    input:
        get_training_observations,
    output:
        directory(PRIOR_DIR),
    log:
        PRIOR_LOG,
    benchmark:
        PRIOR_BENCHMARK
    params:
        seed=get_population_seed,
    shell:
        "prefalign population-prior --observations {input:q} --out {output:q} "
        "--seed {params.seed} > {log:q} 2>&1"


rule population_report:
    input:
        evaluations=get_evaluations,
        observations=get_final_observations,
        prior=get_experiment_prior,
    output:
        section=f"{EXPERIMENT}/section.md",
        table=f"{EXPERIMENT}/tables/population.md",
        paired=f"{EXPERIMENT}/tables/paired.csv",
        figure=report(
            f"{EXPERIMENT}/figures/population.png",
            category="{experiment}",
            subcategory="Population",
        ),
    log:
        "logs/aggregate/{experiment}-population.log",
    benchmark:
        "results/benchmarks/aggregate/{experiment}-population.tsv"
    wildcard_constraints:
        experiment=experiments_pattern(population=True),
    params:
        threshold=get_success_threshold,
        title=get_experiment_title,
        reference=get_experiment_reference,
        page_dir=get_page_dir,
    shell:
        "prefalign population-report --evaluations {input.evaluations:q} "
        "--observations {input.observations:q} --prior-meta {input.prior:q}/meta.json "
        "--reference {params.reference} --threshold {params.threshold} "
        "--title {params.title} --out results/experiments/{wildcards.experiment:q} "
        "--page-dir {params.page_dir:q} > {log:q} 2>&1"
