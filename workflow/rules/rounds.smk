# One active-learning round = five jobs; round r of a campaign depends on round r-1.


rule spec:
    input:
        get_model_inputs,
    output:
        "results/campaigns/{domain}/{method}/seed{seed}/spec.json",
    params:
        spec=get_spec_json,
    log:
        "logs/{domain}/{method}/seed{seed}/spec.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/spec.tsv"
    shell:
        "prefalign spec --json {params.spec} --out {output} 2> {log}"


rule sample:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        surrogate=get_previous_surrogate,
    output:
        "results/campaigns/{domain}/{method}/seed{seed}/round{round}/particles.npz",
    params:
        surrogate=lambda wc, input: flag("surrogate", input.surrogate),
    resources:
        gpu=sample_resources,
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/sample.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/sample.tsv"
    shell:
        "prefalign sample-round --spec {input.spec} --round {wildcards.round} "
        "{params.surrogate} --out {output} > {log} 2>&1"


rule select:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        particles="results/campaigns/{domain}/{method}/seed{seed}/round{round}/particles.npz",
    output:
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
        selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/select.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/select.tsv"
    shell:
        "prefalign select --spec {input.spec} --round {wildcards.round} "
        "--particles {input.particles} --queries {output.queries} "
        "--selection {output.selection} > {log} 2>&1"


rule oracle:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
    output:
        "results/campaigns/{domain}/{method}/seed{seed}/round{round}/rewards.csv",
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/oracle.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/oracle.tsv"
    shell:
        "prefalign query --spec {input.spec} --round {wildcards.round} "
        "--queries {input.queries} --rewards {output} "
        "--log {log} 2>> {log}"


rule observe:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        previous=get_previous_observations,
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
        selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
        rewards="results/campaigns/{domain}/{method}/seed{seed}/round{round}/rewards.csv",
    output:
        observations="results/observations/{domain}/{method}/seed{seed}/round{round}.parquet",
        plot=report(
            "results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.png",
            category="Queries",
            subcategory="{domain} / {method}",
            labels={"seed": "{seed}", "round": "{round}"},
        ),
    params:
        previous=lambda wc, input: flag("previous", input.previous),
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/observe.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/observe.tsv"
    shell:
        "prefalign observe --spec {input.spec} --round {wildcards.round} {params.previous} "
        "--queries {input.queries} --selection {input.selection} --rewards {input.rewards} "
        "--out {output.observations} --plot {output.plot} > {log} 2>&1"


rule fit:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        observations="results/observations/{domain}/{method}/seed{seed}/round{round}.parquet",
        previous=get_previous_surrogate,
    output:
        directory("results/surrogates/{domain}/{method}/seed{seed}/round{round}"),
    params:
        previous=lambda wc, input: flag("previous", input.previous),
    resources:
        gpu=sample_resources,
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/fit.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/fit.tsv"
    shell:
        "prefalign fit --spec {input.spec} --round {wildcards.round} "
        "--observations {input.observations} {params.previous} --out {output} > {log} 2>&1"
