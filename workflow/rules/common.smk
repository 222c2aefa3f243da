# Helper functions of the workflow: config validation, campaign resolution, input functions.
import dataclasses
import functools
import json
import os
import re
import shlex

from snakemake.logging import logger
from snakemake.utils import validate

from prefalign.loop import spec as campaigns
from prefalign.loop.population import (
    PRIOR_DIR,
    expand_populations,
    held_out_domains,
    training_domains,
)
from prefalign.oracles.builtin import is_builtin
from prefalign.reporting.cost import CAMPAIGN_RULES, ROUND_RULES
from prefalign.settings import DDPMTraining
from prefalign.snakemake_patches import patch_job_scheduler

# one pending scheduler wake-up instead of one more per pass (prefalign.snakemake_patches: the
# unpatched scheduler's own CPU grows with the number of jobs finished)
patch_job_scheduler()


# also fills in the schema's `default:` values (name, results_page, success_threshold,
# job_server): the one place those defaults are written
validate(config, "../schemas/config.schema.yaml")

# Every user of every population (`populations:`) is a config domain of its own, {NAME}-u{III}
# (prefalign.loop.population): from here on each rule, DVC-versioned path and report works per
# user as for any domain.
config["domains"].update(expand_populations(config))

# Every path pattern of the rules, written once. A campaign (one domain x method x seed) has a
# folder of its own and one folder per round in it. (`{{round}}` in an f-string is the wildcard.)
CAMPAIGN = "results/campaigns/{domain}/{method}/seed{seed}"
# the campaign's settings, written by the `spec` rule and read by every step
SPEC = f"{CAMPAIGN}/spec.json"
ROUND = f"{CAMPAIGN}/round{{round}}"
# what `propose` writes: the particles it sampled, the queries it picked among them, the record
# of the picks
PARTICLES = f"{ROUND}/particles.npz"
QUERIES = f"{ROUND}/queries.npz"
SELECTION = f"{ROUND}/selection.csv"
# the oracle's answers to the round's queries, and their picture
REWARDS = f"{ROUND}/rewards.csv"
QUERIES_PLOT = f"{ROUND}/queries.png"
# the surrogate round r samples with: fitted on the observations of rounds 0..r-1 (r >= 1)
ROUND_SURROGATE = f"{ROUND}/surrogate"
# the campaign's observations after round r (rounds 0..r), one dataset per round
OBSERVATIONS = "results/observations/{domain}/{method}/seed{seed}/round{round}.parquet"
# the final evaluation: its folder (samples, the surrogate they were tilted by, ...) and record
EVALUATION_DIR = "results/evaluation/{domain}/{method}/seed{seed}"
EVALUATION = f"{EVALUATION_DIR}.json"
# the surrogate the final evaluation samples with: fitted on every round
FINAL_SURROGATE = f"{EVALUATION_DIR}/surrogate"
# the `finetune` rule's folder: a campaign's aligned sampler distilled into the base model
FINETUNED = "results/finetune/{domain}/{method}/seed{seed}"
# an experiment's figures, tables and section of the results page
EXPERIMENT = "results/experiments/{experiment}"
# the logs of a campaign's jobs and of its rounds' jobs
LOGS = "logs/{domain}/{method}/seed{seed}"
ROUND_LOGS = f"{LOGS}/round{{round}}"
# each job's `benchmark:` file (wall time, memory), read by `aggregate` (experiment E4)
CAMPAIGN_BENCHMARKS = "results/benchmarks/{domain}/{method}/seed{seed}"
ROUND_BENCHMARKS = f"{CAMPAIGN_BENCHMARKS}/round{{round}}"
# a population's prior (PRIOR_DIR, prefalign.loop.population: fitted on its training users'
# observations), the log and benchmark file of its fit
PRIOR_LOG = "logs/populations/{population}/prior.log"
PRIOR_BENCHMARK = "results/benchmarks/populations/{population}/prior.tsv"
# the digits base model shipped with the project (models/shipped.json records its hash); the
# `train_digits` rule regenerates it here on request (--forcerun train_digits)
DIGITS_MODEL = "models/digits"
SHIPPED_MODELS = "models/shipped.json"
# the digits base model's samples beside real held-out digits, and their validity
DIGITS_BASE = "results/models/digits-base"


def oracle_kind(domain):
    """The kind of the domain's oracle: "builtin" for a built-in user (its round: `propose`,
    `answer`), else "command" (a person's page, a script: `propose`, `query`, `observe`)."""
    return "builtin" if is_builtin(config["domains"][domain]["oracle"]) else "command"


def domains_pattern(kind):
    """A `domain` wildcard constraint matching the domains whose oracle is of this kind."""
    names = [re.escape(d) for d in config["domains"] if oracle_kind(d) == kind]
    return "|".join(names) if names else "(?!)"  # (?!) matches nothing


def queries_plot():
    """The picture of a round's queries with their answers (`observe`, `answer`), in the report."""
    return report(
        QUERIES_PLOT,
        category="Queries",
        subcategory="{domain} / {method}",
        labels={"seed": "{seed}", "round": "{round}"},
    )


wildcard_constraints:
    seed=r"\d+",
    round=r"\d+",


def campaign_spec(domain, method, seed):
    """The campaign's settings (a prefalign.loop.spec.CampaignSpec), resolved from the config
    once per campaign: the `spec` rule writes this object as spec.json, which every step reads."""
    return _campaign_spec(domain, method, int(seed))


@functools.cache
def _campaign_spec(domain, method, seed):
    return campaigns.campaign_spec(config, domain, method, seed)


def n_rounds(domain, method):
    """Rounds of a campaign: budget / k (one round for the non-adaptive baseline)."""
    return campaign_spec(domain, method, 0).rounds


def experiment_population(experiment):
    """The population an experiment runs on (`population:`), or None (`domains:`)."""
    return config["experiments"][experiment].get("population")


def experiment_domains(experiment):
    """The domains of an experiment: its `domains`, or its population's held-out users."""
    population = experiment_population(experiment)
    if population is not None:
        return held_out_domains(config, population)
    return config["experiments"][experiment]["domains"]


def experiments_pattern(population):
    """An `experiment` wildcard constraint matching the experiments that run on a population
    (population=True: the `population_report` rule's) or those that do not (`aggregate`'s)."""
    names = [
        re.escape(e)
        for e in config["experiments"]
        if (experiment_population(e) is not None) == population
    ]
    return "|".join(names) if names else "(?!)"


def experiment_campaigns(experiment):
    """Every (domain, method, seed) of one experiment (a population experiment: every held-out
    user of its population x method x seed)."""
    e = config["experiments"][experiment]
    excluded = set(e.get("exclude", []))
    return [
        (d, m, s)
        for d in experiment_domains(experiment)
        for m in e["methods"]
        if f"{d}/{m}" not in excluded
        for s in e["seeds"]
    ]


def last_round(wildcards):
    """The campaign's last round (rounds count from 0)."""
    return n_rounds(wildcards.domain, wildcards.method) - 1


def get_spec_json(wildcards):
    """The campaign's settings as JSON: the `spec` rule's param, so that a changed setting reruns
    the campaign (Snakemake's params trigger)."""
    spec = campaign_spec(wildcards.domain, wildcards.method, wildcards.seed)
    return json.dumps(spec.to_dict(), sort_keys=True)


def write_campaign_spec(spec_json, out, log):
    """The `spec` rule's work, in Snakemake's own process: spec.json, and a line in its log."""
    campaigns.write_spec(campaigns.CampaignSpec.from_dict(json.loads(spec_json)), out)
    with open(log, "w") as fh:
        print(f"wrote {out}", file=fh)


def model_dir(domain):
    """The model directory a domain samples (`options.model_dir`: the digits DDPM, a pretrained
    model), or None."""
    return config["domains"][domain].get("options", {}).get("model_dir")


def get_model_inputs(wildcards):
    """A domain's model directory (e.g. the trained digits DDPM) is an input of its campaigns:
    retraining the model reruns them."""
    directory = model_dir(wildcards.domain)
    return [directory] if directory is not None else []


def _round_file(pattern, wildcards, r):
    """`pattern` (OBSERVATIONS, ROUND_SURROGATE) of round r of the wildcards' campaign, as an
    input list; empty where there is none: no round before round 0, and round 0 samples with no
    surrogate (the cold start)."""
    first = 1 if pattern == ROUND_SURROGATE else 0
    campaign = {k: wildcards[k] for k in ("domain", "method", "seed")}
    return expand(pattern, **campaign, round=r) if r >= first else []


def get_warm_start(wildcards):
    """The surrogate fitted one round before the one that round r samples with (rounds 2+)."""
    return _round_file(ROUND_SURROGATE, wildcards, int(wildcards.round) - 1)


def get_previous_observations(wildcards):
    """The observations of rounds 0..r-1, the dataset after round r-1 (none in round 0)."""
    return _round_file(OBSERVATIONS, wildcards, int(wildcards.round) - 1)


def get_last_observations(wildcards):
    """The campaign's final observation dataset, which the last surrogate is fitted on."""
    return _round_file(OBSERVATIONS, wildcards, last_round(wildcards))


def get_final_warm_start(wildcards):
    """The last round's surrogate, warm start of the final fit (campaigns of 2+ rounds)."""
    return _round_file(ROUND_SURROGATE, wildcards, last_round(wildcards))


def get_prior(wildcards):
    """The population prior the campaign starts from (a held-out user's campaign whose method's
    learner uses one: `CampaignSpec.prior`), as an input list; empty for every other campaign."""
    spec = campaign_spec(wildcards.domain, wildcards.method, wildcards.seed)
    prior = getattr(spec, "prior", None)
    return [prior] if prior else []


def _population(wildcards):
    return config["populations"][wildcards.population]


def population_training_observations(population):
    """The final observation dataset of each training user's campaign of a population (its
    `train_method` at `train_seed`): what its prior is fitted on."""
    pop = config["populations"][population]
    method, seed = pop["train_method"], pop.get("train_seed", 0)
    return [
        expand(OBSERVATIONS, domain=d, method=method, seed=seed, round=n_rounds(d, method) - 1)[0]
        for d in training_domains(config, population)
    ]


def get_training_observations(wildcards):
    """:func:`population_training_observations` of the rule's population."""
    return population_training_observations(wildcards.population)


def get_population_seed(wildcards):
    """The seed of the population prior's fit: the population's `seed`."""
    return _population(wildcards).get("seed", 0)


def get_experiment_prior(wildcards):
    """The prior directory of the experiment's population."""
    return expand(PRIOR_DIR, population=experiment_population(wildcards.experiment))


def flag(name, paths):
    """`--name path` for an optional input, or nothing."""
    return f"--{name} {shlex.quote(paths[0])}" if paths else ""


def get_previous_flag(wildcards, input):
    """`--previous PATH` for the rule's optional input `previous` (the warm start of a fit, the
    observations of the round before), or nothing."""
    return flag("previous", input.previous)


def get_fit_flags(wildcards, input, output):
    """The part of `propose`'s command that fits the surrogate round r samples with, each flag
    after a space: `--observations` (rounds 0..r-1), `--previous` (its warm start, rounds 2+) and
    `--surrogate` (where the fit goes); nothing in round 0 (`cold_start`: no observation yet)."""
    if int(wildcards.round) == 0:
        return ""
    fit = (
        flag("observations", input.observations),
        flag("previous", input.previous),
        flag("surrogate", [output.surrogate]),
    )
    return " " + " ".join(fit)


def final_observations(experiment):
    """The last observation dataset of each campaign of the experiment."""
    return [
        expand(OBSERVATIONS, domain=d, method=m, seed=s, round=n_rounds(d, m) - 1)[0]
        for d, m, s in experiment_campaigns(experiment)
    ]


def evaluations(experiment):
    """The final evaluation of each campaign of the experiment."""
    return [
        expand(EVALUATION, domain=d, method=m, seed=s)[0]
        for d, m, s in experiment_campaigns(experiment)
    ]


def get_final_observations(wildcards):
    """:func:`final_observations` of the rule's experiment."""
    return final_observations(wildcards.experiment)


def get_evaluations(wildcards):
    """:func:`evaluations` of the rule's experiment."""
    return evaluations(wildcards.experiment)


def get_experiment_title(wildcards):
    """The experiment's title (its name when it has none), shell-quoted."""
    e = config["experiments"][wildcards.experiment]
    return shlex.quote(e.get("title", wildcards.experiment))


def get_experiment_reference(wildcards):
    """The method the experiment's paired differences are against."""
    e = config["experiments"][wildcards.experiment]
    return shlex.quote(e.get("reference", "best-of-n"))


def get_experiment_benchmarks(wildcards):
    """The benchmark file of every job of the experiment's campaigns: what `prefalign aggregate
    --benchmarks` reads (every `*.tsv` under each campaign's folder of results/benchmarks)."""
    files = []
    for d, m, s in experiment_campaigns(wildcards.experiment):
        base = expand(CAMPAIGN_BENCHMARKS, domain=d, method=m, seed=s)[0]
        files += [f"{base}/{step}.tsv" for step in CAMPAIGN_RULES]
        steps = ROUND_RULES[oracle_kind(d)]
        files += [f"{base}/round{r}/{step}.tsv" for r in range(n_rounds(d, m)) for step in steps]
    return files


def get_success_threshold(wildcards):
    """The reward that counts as a success (queries to reach it: the final table)."""
    return config["success_threshold"]


def get_results_page():
    """Where the results page goes (`results_page`, or the schema's default)."""
    return config["results_page"]


def get_page_dir(wildcards):
    """The results page's folder, which the experiments' sections link relative to."""
    return os.path.dirname(get_results_page()) or "."


def get_torch_threads(wildcards):
    """Torch threads per job, as the campaigns resolve them (for the results page's record)."""
    domain, method, seed = experiment_campaigns(experiments()[0])[0]
    return campaign_spec(domain, method, seed).torch_threads


def get_run_name(wildcards):
    """The config's `name`, shell-quoted: the results page names the run with it."""
    return shlex.quote(config["name"])


def digits_training():
    """How the digits DDPM is trained: `models.digits` over the defaults of
    prefalign.settings.DDPMTraining. One scalar param per setting (:func:`get_digits_setting`,
    not the dataclass), so that Snakemake's params trigger sees a changed value: it ignores params
    it cannot repr."""
    return DDPMTraining.from_dict(config.get("models", {}).get("digits"))


def check_base_models():
    """Warn at plan time when the config's digits training settings (`models.digits`) differ
    from those the shipped or regenerated model in DIGITS_MODEL was trained with: Snakemake does
    not retrain a model it has no record of making (a fresh clone's shipped one), so the new
    settings take effect only with --forcerun train_digits."""
    try:
        with open(os.path.join(DIGITS_MODEL, "training.json")) as fh:
            trained = json.load(fh).get("settings", {})
    except (OSError, ValueError):
        return
    wanted = dataclasses.asdict(digits_training())
    differ = {k: (trained.get(k), v) for k, v in wanted.items() if trained.get(k) != v}
    if differ:
        what = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in differ.items())
        logger.warning(
            f"models.digits differs from the training of {DIGITS_MODEL} ({what}); the run uses "
            f"the model as it is: regenerate it with --forcerun train_digits"
        )


def base_models():
    """`{domain: model directory}` of every domain of the run that samples a model directory, in
    the order the experiments name them; a population's users under the population's name."""
    models = {}
    for e in experiments():
        population = experiment_population(e)
        for d in experiment_domains(e):
            if model_dir(d):
                models[population or d] = model_dir(d)
    return models


def get_base_models(wildcards):
    """`--base-model DOMAIN=MODEL_DIR` of every domain of :func:`base_models`: the results page
    records each one's content hash and origin (shipped, regenerated, supplied)."""
    items = [shlex.quote(f"{d}={m}") for d, m in base_models().items()]
    return " ".join(f"--base-model {item}" for item in items)


def get_base_model_dirs(wildcards):
    """The model directories of :func:`get_base_models`, inputs of the results page."""
    return sorted(set(base_models().values()))


def get_shipped_models(wildcards):
    """The record of the shipped models' hashes, an input of the results page when it exists."""
    return [SHIPPED_MODELS] if os.path.exists(SHIPPED_MODELS) else []


def get_digits_setting(name):
    """The param (or `threads:`) function of one setting of :func:`digits_training`: `steps`,
    `batch_size`, `lr`, `seed`, `threads`."""

    def setting(wildcards):
        return getattr(digits_training(), name)

    return setting


def on_gpu():
    """Whether the run's torch jobs use a device other than the CPU (`device: cuda`, `auto`)."""
    return str(config.get("device", "cpu")) != "cpu"


def job_server_wanted():
    """Whether this run starts the job server: on in the config, local jobs, not --touch, and
    jobs on the CPU: a job on a GPU starts in a fresh process (prefalign.cli.job_server.serves)."""
    from prefalign.cli.job_server import serves

    return (
        bool(config["job_server"])
        and workflow.local_exec
        and not workflow.touch
        and serves(config.get("device", "cpu"))
    )


def gpu_plan_notes():
    """What a run on a GPU should know at plan time (also under -n): its jobs start as fresh
    processes, and, run locally, whether `--resources gpu=N` limits the GPU jobs."""
    if not on_gpu() or not workflow.local_exec:
        return []
    device = config.get("device")
    notes = []
    if config["job_server"]:
        notes.append(
            f"device {device}: the job server is off; every job starts in a fresh process "
            "(CUDA cannot be used in a process forked from one that started it)"
        )
    if "gpu" in workflow.global_resources:
        limit = workflow.global_resources["gpu"]
        notes.append(
            f"device {device}: at most {getattr(limit, 'value', limit)} GPU job(s) at a time "
            "(--resources gpu)"
        )
    else:
        notes.append(
            f"device {device}: nothing limits the GPU jobs (each asks for gpu=1), so up to "
            "--cores of them would share the GPU: add --resources gpu=N (N: the GPUs there "
            "are) or use --workflow-profile profiles/gpu-workstation"
        )
    return notes


def experiments():
    """The experiments to run: `run` (a list, so that a --configfile replaces it rather than
    merging into it), or every experiment defined."""
    names = config.get("run", list(config["experiments"]))
    unknown = [n for n in names if n not in config["experiments"]]
    if unknown:
        raise ValueError(
            f"run: unknown experiment(s) {unknown}; defined: {list(config['experiments'])}"
        )
    return names


def run_domains():
    """The domains of the experiments to run, each once, in the order the experiments name them."""
    return list(dict.fromkeys(d for e in experiments() for d in experiment_domains(e)))


def run_populations():
    """The populations of the experiments to run, each once."""
    names = (experiment_population(e) for e in experiments())
    return list(dict.fromkeys(p for p in names if p is not None))


def check_campaigns():
    """Resolve every campaign of the run once, at plan time: an invalid one (budget not a multiple
    of k, a score its sampler cannot give, ...) stops `snakemake -n` with the setting named,
    before any job."""
    for experiment in experiments():
        distil = config["experiments"][experiment].get("distil")
        if distil and distil["method"] not in config["experiments"][experiment]["methods"]:
            raise ValueError(
                f"config: experiment {experiment!r} distils {distil['method']!r}, which is not "
                "one of its methods"
            )
        for domain, method, seed in experiment_campaigns(experiment):
            try:
                campaign_spec(domain, method, seed)
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"config: experiment {experiment!r}, campaign {domain}/{method}: {err}"
                ) from None
    for population in run_populations():  # the campaigns its prior is fitted on
        pop = config["populations"][population]
        method, seed = pop["train_method"], pop.get("train_seed", 0)
        for domain in training_domains(config, population):
            try:
                campaign_spec(domain, method, seed)
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"config: population {population!r}, training campaign "
                    f"{domain}/{method}: {err}"
                ) from None


def get_experiment_sections(wildcards):
    """Each experiment's section, followed by its fine-tuning section when it distils."""
    sections = []
    for e in experiments():
        sections += expand(f"{EXPERIMENT}/section.md", experiment=e)
        if "distil" in config["experiments"][e]:
            sections += expand(f"{EXPERIMENT}/amortised.md", experiment=e)
    return sections


def _distil(experiment):
    """The experiment's `distil:` (the method distilled into the base model, the modes)."""
    return config["experiments"][experiment]["distil"]


def distil_modes(experiment):
    """The modes of the experiment's `distil:` (full, split, LoRA by default), shell-quoted."""
    return " ".join(map(shlex.quote, _distil(experiment).get("modes", ["full", "split", "lora"])))


def get_distil_modes(wildcards):
    """`--modes` of the finetune and amortise rules: the modes of the (first) experiment that
    distils this campaign, or of this experiment."""
    if "experiment" in wildcards.keys():
        return distil_modes(wildcards.experiment)
    for e in experiments():
        d = config["experiments"][e].get("distil")
        if d and d["method"] == wildcards.method and wildcards.domain in experiment_domains(e):
            return distil_modes(e)
    raise ValueError(f"no experiment distils {wildcards.domain}/{wildcards.method}")


def get_distil_method(wildcards):
    """The method the experiment distils, shell-quoted (the teacher of its fine-tuning table)."""
    return shlex.quote(_distil(wildcards.experiment)["method"])


def distilled(experiment):
    """The finetune folders of an experiment: its distilled method's campaigns."""
    method = _distil(experiment)["method"]
    return [
        expand(FINETUNED, domain=d, method=m, seed=s)[0]
        for d, m, s in experiment_campaigns(experiment)
        if m == method
    ]


def get_distilled(wildcards):
    """:func:`distilled` of the rule's experiment."""
    return distilled(wildcards.experiment)


def get_gpu(wildcards):
    """`resources: gpu` of the rules that run torch: 1 with `gpu: true` or a device other than
    the CPU (so that `--resources gpu=N` limits them to the GPUs there are)."""
    return 1 if config.get("gpu", False) or on_gpu() else 0


#: the figures and tables of an experiment's `aggregate` job, and of a population experiment's
#: `population_report` job (beside its section.md)
AGGREGATE_OUTPUTS = (
    "figures/reward_vs_queries.png",
    "figures/final_metrics.png",
    "figures/cost.png",
    "tables/final.md",
    "tables/round_metrics.csv",
    "tables/final_metrics.json",
)
POPULATION_OUTPUTS = ("figures/population.png", "tables/population.md", "tables/paired.csv")


def get_final_outputs():
    """The results page, every experiment's figures and tables, and every campaign's last
    observation dataset and evaluation. The figures, tables and page are committed to git, so a
    fresh clone has them without Snakemake's records; naming the campaigns' own outputs here
    makes a fresh clone recompute every experiment (Snakemake would otherwise take a committed
    figure whose inputs are missing as up to date)."""
    outputs = [get_results_page()]
    for e in experiments():
        names = POPULATION_OUTPUTS if experiment_population(e) else AGGREGATE_OUTPUTS
        outputs += expand([f"{EXPERIMENT}/{name}" for name in names], experiment=e)
    for e in experiments():
        outputs += final_observations(e) + evaluations(e)
        if "distil" in config["experiments"][e]:
            outputs += distilled(e) + expand(f"{EXPERIMENT}/amortised.md", experiment=e)
    if any(config["domains"][d].get("type", d) == "digits" for d in run_domains()):
        outputs.append(f"{DIGITS_BASE}/validity.json")
    return outputs


#: what the default run shows and where the method loses, under the results page's header
RESULTS_NOTES = "config/results-notes.md"


def get_results_notes(wildcards):
    """The Markdown notes shown under the results page's header, when the file exists."""
    path = RESULTS_NOTES
    return [path] if os.path.exists(path) else []
