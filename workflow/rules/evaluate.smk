# After the budget is spent: fresh samples from the aligned sampler, scored by the oracle.


rule evaluate:
    input:
        spec=CAMPAIGN + "/spec.json",
        surrogate=get_final_surrogate,
    output:
        evaluation=EVALUATION + ".json",
        samples=EVALUATION + "/samples.npz",
        plot=report(
            EVALUATION + "/samples.png",
            category="Final samples",
            subcategory="{domain}",
            labels={"method": "{method}", "seed": "{seed}"},
        ),
    resources:
        gpu=sample_resources,
    log:
        LOGS + "/evaluate.log",
    benchmark:
        BENCH + "/evaluate.tsv"
    shell:
        "prefalign evaluate --spec {input.spec} --surrogate {input.surrogate} "
        "--out {output.evaluation} --samples {output.samples} --plot {output.plot} "
        "--log {log} --quiet >> {log} 2>&1"
