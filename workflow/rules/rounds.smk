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
        SPEC,
    log:
        f"{LOGS}/spec.log",
    benchmark:
        f"{CAMPAIGN_BENCHMARKS}/spec.tsv"
    params:
        spec=get_spec_json,
    run:
        write_campaign_spec(params.spec, output[0], log[0])


# Rounds 1, 2, ...: fit the surrogate on the observations of rounds 0..r-1 (warm-started from
# the one before it from round 2 on; `params.fit`), sample with it, and select the queries.
rule propose:
    input:
        spec=SPEC,
        observations=get_previous_observations,
        previous=get_warm_start,
        prior=get_prior,  # a held-out user's population prior (learner `population`)
    output:
        surrogate=directory(ROUND_SURROGATE),
        particles=PARTICLES,
        queries=QUERIES,
        selection=SELECTION,
    log:
        f"{ROUND_LOGS}/propose.log",
    benchmark:
        f"{ROUND_BENCHMARKS}/propose.tsv"
    wildcard_constraints:
        round="[1-9][0-9]*",
    resources:
        gpu=get_gpu,
    params:
        fit=get_fit_flags,
    shell:
        "prefalign propose --spec {input.spec:q} --round {wildcards.round}{params.fit} "
        "--particles {output.particles:q} --queries {output.queries:q} "
        "--selection {output.selection:q} > {log:q} 2>&1"


# Round 0, the cold start: the same job with no surrogate to fit (no observation yet), so it
# samples the base model. A rule of its own only because it has one output fewer.
use rule propose as cold_start with:
    output:
        particles=PARTICLES,
        queries=QUERIES,
        selection=SELECTION,
    wildcard_constraints:
        round="0",


rule query:
    input:
        spec=SPEC,
        queries=QUERIES,
    output:
        REWARDS,
    log:
        f"{ROUND_LOGS}/query.log",
    benchmark:
        f"{ROUND_BENCHMARKS}/query.tsv"
    wildcard_constraints:
        domain=domains_pattern("command"),
    shell:
        "prefalign query --spec {input.spec:q} --round {wildcards.round} "
        "--queries {input.queries:q} --rewards {output:q} "
        "--log {log:q} 2>> {log:q}"


rule observe:
    input:
        spec=SPEC,
        previous=get_previous_observations,
        queries=QUERIES,
        selection=SELECTION,
        rewards=REWARDS,
    output:
        observations=OBSERVATIONS,
        plot=queries_plot(),
    log:
        f"{ROUND_LOGS}/observe.log",
    benchmark:
        f"{ROUND_BENCHMARKS}/observe.tsv"
    wildcard_constraints:
        domain=domains_pattern("command"),
    params:
        previous=get_previous_flag,
    shell:
        "prefalign observe --spec {input.spec:q} --round {wildcards.round} {params.previous} "
        "--queries {input.queries:q} --selection {input.selection:q} --rewards {input.rewards:q} "
        "--out {output.observations:q} --plot {output.plot:q} > {log:q} 2>&1"


rule answer:
    input:
        spec=SPEC,
        previous=get_previous_observations,
        queries=QUERIES,
        selection=SELECTION,
    output:
        rewards=REWARDS,
        observations=OBSERVATIONS,
        plot=queries_plot(),
    log:
        f"{ROUND_LOGS}/answer.log",
    benchmark:
        f"{ROUND_BENCHMARKS}/answer.tsv"
    wildcard_constraints:
        domain=domains_pattern("builtin"),
    params:
        previous=get_previous_flag,
    shell:
        "prefalign answer --spec {input.spec:q} --round {wildcards.round} {params.previous} "
        "--queries {input.queries:q} --selection {input.selection:q} --rewards {output.rewards:q} "
        "--out {output.observations:q} --plot {output.plot:q} --log {log:q} >> {log:q} 2>&1"
