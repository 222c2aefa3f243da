# The digits base model. The project ships it (models/digits, recorded in models/shipped.json):
# a run samples the shipped model and trains nothing. `train_digits` regenerates it in place on
# request: `snakemake --cores 2 --forcerun train_digits` (every campaign that samples it reruns,
# and the results page says the model was regenerated). README, "The shipped digits model".


rule train_digits:
    output:
        directory(DIGITS_MODEL),
    log:
        "logs/models/train_digits.log",
    benchmark:
        "results/benchmarks/models/train_digits.tsv"
    # the run's critical path when it runs: first, on as many cores as its torch threads
    priority: 10
    threads: get_digits_setting("threads")
    params:
        steps=get_digits_setting("steps"),
        batch_size=get_digits_setting("batch_size"),
        lr=get_digits_setting("lr"),
        seed=get_digits_setting("seed"),
        # the setting, not {threads}: Snakemake scales that down to --cores, and the weights'
        # bytes depend on the thread count
        torch_threads=get_digits_setting("threads"),
    shell:
        "prefalign train-digits --out {output:q} --steps {params.steps} "
        "--batch-size {params.batch_size} --lr {params.lr} --seed {params.seed} "
        "--threads {params.torch_threads} "
        "> {log:q} 2>&1"


rule digits_base_samples:
    input:
        DIGITS_MODEL,
    output:
        samples=f"{DIGITS_BASE}/samples.npz",
        grid=report(
            f"{DIGITS_BASE}/samples.png",
            category="Base models",
            caption="../report/digits_base.rst",
        ),
        summary=f"{DIGITS_BASE}/validity.json",
    log:
        "logs/models/digits_base_samples.log",
    benchmark:
        "results/benchmarks/models/digits_base_samples.tsv"
    shell:
        "prefalign base-report --domain digits --domain-option model_dir={input:q} "
        "--n-particles 512 --out {output.samples:q} --plot {output.grid:q} "
        "--summary {output.summary:q} > {log:q} 2>&1"
