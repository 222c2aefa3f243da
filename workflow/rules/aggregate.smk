# Seeds aggregated into the figures and tables of the experiment.


rule aggregate:
    input:
        observations=get_final_observations(),
        evaluations=get_evaluations(),
    output:
        curves=report(
            RESULTS + "/figures/reward_vs_queries.png",
            category="Reward vs queries",
            caption="../report/reward_vs_queries.rst",
        ),
        final=report(
            RESULTS + "/figures/final_metrics.png",
            category="Final metrics",
            caption="../report/final_metrics.rst",
        ),
        table=RESULTS + "/tables/final.md",
        rounds=RESULTS + "/tables/round_metrics.csv",
    params:
        threshold=config.get("success_threshold", 0.5),
    log:
        "logs/aggregate.log",
    benchmark:
        RESULTS + "/benchmarks/aggregate.tsv"
    shell:
        "prefalign aggregate --observations {input.observations} "
        "--evaluations {input.evaluations} --threshold {params.threshold} "
        "--figures {RESULTS}/figures --tables {RESULTS}/tables > {log} 2>&1"
