# One active-learning round: propose (fit the surrogate on rounds 0..r-1, sample, select) ->
# the oracle answers -> observe. Round r depends on round r-1; round 0 is the cold start.
# A built-in (simulated) user answers and is observed in one `answer` job: its answers are a
# function of the queries, so a second job would only cost a second interpreter start. Any other
# oracle (a person's rating page, a script) runs in a `query` job of its own, so that its answers
# are kept whatever happens to the `observe` job after it.

# the spec is written by Snakemake itself (no job process: it is already resolved at plan time)
localrules:
    spec,


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
    run:
        write_campaign_spec(params.spec, output[0], log[0])


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
        gpu=get_gpu,
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
        previous=get_previous_flag,
    resources:
        gpu=get_gpu,
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/propose.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/propose.tsv"
    shell:
        "prefalign propose --spec {input.spec:q} --round {wildcards.round} "
        "--observations {input.observations:q} {params.previous} --surrogate {output.surrogate:q} "
        "--particles {output.particles:q} --queries {output.queries:q} "
        "--selection {output.selection:q} > {log:q} 2>&1"


rule query:
    wildcard_constraints:
        domain=domains_pattern("command"),
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
    output:
        "results/campaigns/{domain}/{method}/seed{seed}/round{round}/rewards.csv",
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/query.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/query.tsv"
    shell:
        "prefalign query --spec {input.spec:q} --round {wildcards.round} "
        "--queries {input.queries:q} --rewards {output:q} "
        "--log {log:q} 2>> {log:q}"


rule observe:
    wildcard_constraints:
        domain=domains_pattern("command"),
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        previous=get_previous_observations,
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
        selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
        rewards="results/campaigns/{domain}/{method}/seed{seed}/round{round}/rewards.csv",
    output:
        observations=OBSERVATIONS,
        plot=queries_plot(),
    params:
        previous=get_previous_flag,
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/observe.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/observe.tsv"
    shell:
        "prefalign observe --spec {input.spec:q} --round {wildcards.round} {params.previous} "
        "--queries {input.queries:q} --selection {input.selection:q} --rewards {input.rewards:q} "
        "--out {output.observations:q} --plot {output.plot:q} > {log:q} 2>&1"


rule answer:
    wildcard_constraints:
        domain=domains_pattern("builtin"),
    input:
        spec="results/campaigns/{domain}/{method}/seed{seed}/spec.json",
        previous=get_previous_observations,
        queries="results/campaigns/{domain}/{method}/seed{seed}/round{round}/queries.npz",
        selection="results/campaigns/{domain}/{method}/seed{seed}/round{round}/selection.csv",
    output:
        rewards="results/campaigns/{domain}/{method}/seed{seed}/round{round}/rewards.csv",
        observations=OBSERVATIONS,
        plot=queries_plot(),
    params:
        previous=get_previous_flag,
    log:
        "logs/{domain}/{method}/seed{seed}/round{round}/answer.log",
    benchmark:
        "results/benchmarks/{domain}/{method}/seed{seed}/round{round}/answer.tsv"
    shell:
        "prefalign answer --spec {input.spec:q} --round {wildcards.round} {params.previous} "
        "--queries {input.queries:q} --selection {input.selection:q} --rewards {output.rewards:q} "
        "--out {output.observations:q} --plot {output.plot:q} --log {log:q} >> {log:q} 2>&1"
