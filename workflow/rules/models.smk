# Base models that the workflow trains itself (nothing is downloaded).


rule train_digits:
    output:
        directory("results/models/digits"),
    # the run's critical path: first, on as many cores as its torch threads
    priority: 10
    threads: get_digits_threads
    params:
        steps=get_digits_steps,
        batch_size=get_digits_batch_size,
        lr=get_digits_lr,
        seed=get_digits_seed,
        # the setting, not {threads}: Snakemake scales that down to --cores, and the weights'
        # bytes depend on the thread count
        torch_threads=get_digits_threads,
    log:
        "logs/models/train_digits.log",
    benchmark:
        "results/benchmarks/models/train_digits.tsv"
    shell:
        "prefalign train-digits --out {output:q} --steps {params.steps} "
        "--batch-size {params.batch_size} --lr {params.lr} --seed {params.seed} "
        "--threads {params.torch_threads} "
        "> {log:q} 2>&1"


rule digits_base_samples:
    input:
        "results/models/digits",
    output:
        samples="results/models/digits-base/samples.npz",
        grid=report(
            "results/models/digits-base/samples.png",
            category="Base models",
            caption="../report/digits_base.rst",
        ),
        summary="results/models/digits-base/validity.json",
    log:
        "logs/models/digits_base_samples.log",
    benchmark:
        "results/benchmarks/models/digits_base_samples.tsv"
    shell:
        "prefalign base-report --domain digits --domain-option model_dir={input:q} "
        "--n-particles 512 --out {output.samples:q} --plot {output.grid:q} "
        "--summary {output.summary:q} > {log:q} 2>&1"
