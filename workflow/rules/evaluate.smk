# After the budget is spent: fit the last surrogate on every round, then score fresh samples from
# the aligned sampler with the oracle (no budget spent). With `fuse_steps: false` the last fit is
# its own job (fit_final).


if FUSE_STEPS:

    rule evaluate:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
            observations=get_last_observations,
            previous=get_final_warm_start,
        output:
            surrogate=directory(FINAL_SURROGATE),
            evaluation="results/evaluation/{domain}/{method}/seed{seed}.json",
            samples="results/evaluation/{domain}/{method}/seed{seed}/samples.npz",
            plot=report(
                "results/evaluation/{domain}/{method}/seed{seed}/samples.png",
                category="Final samples",
                subcategory="{domain}",
                labels={"method": "{method}", "seed": "{seed}"},
            ),
        params:
            previous=lambda wc, input: flag("previous", input.previous),
        resources:
            gpu=sample_resources,
        log:
            "logs/{domain}/{method}/seed{seed}/evaluate.log",
        benchmark:
            "results/benchmarks/{domain}/{method}/seed{seed}/evaluate.tsv"
        shell:
            "prefalign evaluate --spec {input.spec:q} --fit {input.observations:q} {params.previous} "
            "--surrogate {output.surrogate:q} --out {output.evaluation:q} "
            "--samples {output.samples:q} --plot {output.plot:q} --log {log:q} --quiet >> {log:q} 2>&1"

else:

    rule fit_final:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
            observations=get_last_observations,
            previous=get_final_warm_start,
        output:
            directory(FINAL_SURROGATE),
        params:
            previous=lambda wc, input: flag("previous", input.previous),
            fitted_on=last_round,
        resources:
            gpu=sample_resources,
        log:
            "logs/{domain}/{method}/seed{seed}/fit_final.log",
        benchmark:
            "results/benchmarks/{domain}/{method}/seed{seed}/fit_final.tsv"
        shell:
            "prefalign fit --spec {input.spec:q} --round {params.fitted_on} "
            "--observations {input.observations:q} {params.previous} --out {output:q} > {log:q} 2>&1"

    rule evaluate:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
            surrogate=FINAL_SURROGATE,
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
            "prefalign evaluate --spec {input.spec:q} --surrogate {input.surrogate:q} "
            "--out {output.evaluation:q} --samples {output.samples:q} --plot {output.plot:q} "
            "--log {log:q} --quiet >> {log:q} 2>&1"
