# After the budget is spent: fit the last surrogate on every round (warm-started from the last
# round's), then score fresh samples from the aligned sampler with the oracle (no budget spent),
# and every item the campaign showed (query_rewards.csv: rated by the evaluator where the
# questions' form answers no number).


rule evaluate:
    input:
        spec=SPEC,
        observations=get_last_observations,
        previous=get_final_warm_start,
        prior=get_prior,  # a held-out user's population prior (learner `population`)
    output:
        surrogate=directory(FINAL_SURROGATE),
        evaluation=EVALUATION,
        samples=f"{EVALUATION_DIR}/samples.npz",
        # one row per tilt of final_tilt.lams (the trusted one flagged), or the one tilt
        frontier=f"{EVALUATION_DIR}/frontier.csv",
        query_rewards=f"{EVALUATION_DIR}/query_rewards.csv",
        plot=report(
            f"{EVALUATION_DIR}/samples.png",
            category="Final samples",
            subcategory="{domain}",
            labels={"method": "{method}", "seed": "{seed}"},
        ),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{CAMPAIGN_BENCHMARKS}/evaluate.tsv"
    resources:
        gpu=get_gpu,
    params:
        previous=get_previous_flag,
    shell:
        "prefalign evaluate --spec {input.spec:q} --fit {input.observations:q} {params.previous} "
        "--surrogate {output.surrogate:q} --out {output.evaluation:q} "
        "--samples {output.samples:q} --query-rewards {output.query_rewards:q} "
        "--plot {output.plot:q} --log {log:q} --quiet >> {log:q} 2>&1"
