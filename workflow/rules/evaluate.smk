# After the budget is spent: fresh samples from the aligned sampler, scored by the oracle.


rule evaluate:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        surrogate=get_final_surrogate,
    output:
        evaluation="results/evaluation/{domain}/{method}/seed{seed}.json",
        samples="results/evaluation/{domain}/{method}/seed{seed}/samples.npz",
        plot=report(
            "results/evaluation/{domain}/{method}/seed{seed}/samples.png",
            category="Final samples",
            subcategory="{domain}",
            labels={"method": "{method}", "seed": "{seed}"},
        ),
    resources:
        gpu=sample_resources,
    log:
        "logs/{domain}/{method}/seed{seed}/evaluate.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/evaluate.tsv"
    shell:
        "prefalign evaluate --spec {input.spec} --surrogate {input.surrogate} "
        "--out {output.evaluation} --samples {output.samples} --plot {output.plot} "
        "--log {log} --quiet >> {log} 2>&1"
