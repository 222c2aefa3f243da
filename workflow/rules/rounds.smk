# One active-learning round: propose (fit the surrogate on rounds 0..r-1, sample, select) ->
# oracle -> observe. Round r depends on round r-1. With `fuse_steps: false` the proposal is three
# jobs (fit, sample, select), e.g. to time or debug one step; the files are the same.


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
        "prefalign spec --json {params.spec} --out {output:q} 2> {log:q}"


if FUSE_STEPS:

    rule cold_start:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        output:
            particles="results/campaigns/{domain}/{method}/seed{seed}/round{round}/particles.npz",
            queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
            selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
        wildcard_constraints:
            round="0",
        resources:
            gpu=sample_resources,
        log:
            "logs/{domain}/{method}/seed{seed}/round{round}/propose.log",
        benchmark:
            "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/propose.tsv"
        shell:
            "prefalign propose --spec {input.spec:q} --round {wildcards.round} "
            "--particles {output.particles:q} --queries {output.queries:q} "
            "--selection {output.selection:q} > {log:q} 2>&1"

    rule propose:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
            observations=get_previous_observations,
            previous=get_warm_start,
        output:
            surrogate=directory(ROUND_SURROGATE),
            particles="results/campaigns/{domain}/{method}/seed{seed}/round{round}/particles.npz",
            queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
            selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
        wildcard_constraints:
            round="[1-9][0-9]*",
        params:
            previous=lambda wc, input: flag("previous", input.previous),
        resources:
            gpu=sample_resources,
        log:
            "logs/{domain}/{method}/seed{seed}/round{round}/propose.log",
        benchmark:
            "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/propose.tsv"
        shell:
            "prefalign propose --spec {input.spec:q} --round {wildcards.round} "
            "--observations {input.observations:q} {params.previous} --surrogate {output.surrogate:q} "
            "--particles {output.particles:q} --queries {output.queries:q} "
            "--selection {output.selection:q} > {log:q} 2>&1"

else:

    rule sample:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
            surrogate=get_round_surrogate,
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
            "prefalign sample-round --spec {input.spec:q} --round {wildcards.round} "
            "{params.surrogate} --out {output:q} > {log:q} 2>&1"

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
            "prefalign select --spec {input.spec:q} --round {wildcards.round} "
            "--particles {input.particles:q} --queries {output.queries:q} "
            "--selection {output.selection:q} > {log:q} 2>&1"

    rule fit:
        input:
            spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
            observations=get_previous_observations,
            previous=get_warm_start,
        output:
            directory(ROUND_SURROGATE),
        wildcard_constraints:
            round="[1-9][0-9]*",
        params:
            previous=lambda wc, input: flag("previous", input.previous),
            fitted_on=previous_round,
        resources:
            gpu=sample_resources,
        log:
            "logs/{domain}/{method}/seed{seed}/round{round}/fit.log",
        benchmark:
            "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/fit.tsv"
        shell:
            "prefalign fit --spec {input.spec:q} --round {params.fitted_on} "
            "--observations {input.observations:q} {params.previous} --out {output:q} > {log:q} 2>&1"


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
        "prefalign query --spec {input.spec:q} --round {wildcards.round} "
        "--queries {input.queries:q} --rewards {output:q} "
        "--log {log:q} 2>> {log:q}"


rule observe:
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        previous=get_previous_observations,
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
        selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
        rewards="results/campaigns/{domain}/{method}/seed{seed}/round{round}/rewards.csv",
    output:
        observations=OBSERVATIONS,
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
        "prefalign observe --spec {input.spec:q} --round {wildcards.round} {params.previous} "
        "--queries {input.queries:q} --selection {input.selection:q} --rewards {input.rewards:q} "
        "--out {output.observations:q} --plot {output.plot:q} > {log:q} 2>&1"
