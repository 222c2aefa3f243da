# Seeds aggregated into the figures and tables of the experiment.


rule aggregate:
    input:
        observations=get_final_observations(),
        evaluations=get_evaluations(),
    output:
        curves=report(
            "results/figures/reward_vs_queries.png",
            category="Reward vs queries",
            caption="../report/reward_vs_queries.rst",
        ),
        final=report(
            "results/figures/final_metrics.png",
            category="Final metrics",
            caption="../report/final_metrics.rst",
        ),
        table="results/tables/final.md",
        rounds="results/tables/round_metrics.csv",
        metrics="results/tables/final_metrics.json",
        page="results/README.md",
    params:
        threshold=config.get("success_threshold", 0.5),
        config_name=lambda wc: shlex.quote(config.get("name", "config/config.yaml")),
    log:
        "logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    shell:
        "prefalign aggregate --observations {input.observations} "
        "--evaluations {input.evaluations} --threshold {params.threshold} "
        "--figures results/figures --tables results/tables --page {output.page} "
        "--config-name {params.config_name} > {log} 2>&1"
