# One active-learning round = five jobs; round r of a campaign depends on round r-1.


rule spec:
    output:
        CAMPAIGN + "/spec.json",
    params:
        spec=get_spec_json,
    log:
        LOGS + "/spec.log",
    benchmark:
        BENCH + "/spec.tsv"
    shell:
        "prefalign spec --json {params.spec} --out {output} 2> {log}"


rule sample:
    input:
        spec=CAMPAIGN + "/spec.json",
        surrogate=get_previous_surrogate,
    output:
        ROUND + "/particles.npz",
    params:
        surrogate=lambda wc, input: flag("surrogate", input.surrogate),
    resources:
        gpu=sample_resources,
    log:
        LOGS + "/round{round}/sample.log",
    benchmark:
        BENCH + "/round{round}/sample.tsv"
    shell:
        "prefalign sample-round --spec {input.spec} --round {wildcards.round} "
        "{params.surrogate} --out {output} > {log} 2>&1"


rule select:
    input:
        spec=CAMPAIGN + "/spec.json",
        particles=ROUND + "/particles.npz",
    output:
        queries=ROUND + "/queries.npz",
        selection=ROUND + "/selection.csv",
    log:
        LOGS + "/round{round}/select.log",
    benchmark:
        BENCH + "/round{round}/select.tsv"
    shell:
        "prefalign select --spec {input.spec} --round {wildcards.round} "
        "--particles {input.particles} --queries {output.queries} "
        "--selection {output.selection} > {log} 2>&1"


rule oracle:
    input:
        spec=CAMPAIGN + "/spec.json",
        queries=ROUND + "/queries.npz",
    output:
        ROUND + "/rewards.csv",
    log:
        LOGS + "/round{round}/oracle.log",
    benchmark:
        BENCH + "/round{round}/oracle.tsv"
    shell:
        "prefalign query --spec {input.spec} --queries {input.queries} --rewards {output} "
        "--log {log} 2>> {log}"


rule observe:
    input:
        spec=CAMPAIGN + "/spec.json",
        previous=get_previous_observations,
        queries=ROUND + "/queries.npz",
        selection=ROUND + "/selection.csv",
        rewards=ROUND + "/rewards.csv",
    output:
        OBSERVATIONS,
    params:
        previous=lambda wc, input: flag("previous", input.previous),
    log:
        LOGS + "/round{round}/observe.log",
    benchmark:
        BENCH + "/round{round}/observe.tsv"
    shell:
        "prefalign observe --spec {input.spec} --round {wildcards.round} {params.previous} "
        "--queries {input.queries} --selection {input.selection} --rewards {input.rewards} "
        "--out {output} > {log} 2>&1"


rule fit:
    input:
        spec=CAMPAIGN + "/spec.json",
        observations=OBSERVATIONS,
        previous=get_previous_surrogate,
    output:
        directory(SURROGATE),
    params:
        previous=lambda wc, input: flag("previous", input.previous),
    resources:
        gpu=sample_resources,
    log:
        LOGS + "/round{round}/fit.log",
    benchmark:
        BENCH + "/round{round}/fit.tsv"
    shell:
        "prefalign fit --spec {input.spec} --round {wildcards.round} "
        "--observations {input.observations} {params.previous} --out {output} > {log} 2>&1"
