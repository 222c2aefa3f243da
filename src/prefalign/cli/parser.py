"""The argument parser of the ``prefalign`` command: every subcommand, its flags and its handler
(:mod:`prefalign.cli.commands`). Defaults come from the settings dataclasses."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from prefalign.cli import commands
from prefalign.oracles import builtin
from prefalign.settings import RESAMPLE_MODES, VARIANTS, DDPMTraining, SamplerConfig

Handler = Callable[[argparse.Namespace], int]

_SAMPLER = SamplerConfig()
_TRAINING = DDPMTraining()


def _sample_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", default="mixture2d")
    p.add_argument("--domain-option", action="append", metavar="KEY=VALUE", help="domain option")
    p.add_argument("--variant", default=_SAMPLER.variant, choices=list(VARIANTS))
    p.add_argument("--user", help="tilt by this built-in simulated user's (differentiable) reward")
    p.add_argument("--surrogate", help="tilt by the surrogate checkpoint in this directory")
    p.add_argument("--lam-max", type=float, default=_SAMPLER.lam_max, help="tilt at the data end")
    p.add_argument("--resample", default=_SAMPLER.resample, choices=list(RESAMPLE_MODES))
    p.add_argument("--ess-threshold", type=float, default=_SAMPLER.ess_threshold)
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("--n-steps", type=int, default=_SAMPLER.n_steps)
    p.add_argument("--chunk-size", type=int, default=_SAMPLER.chunk_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output .npz (x, log_weight, fk_log_weight, ess)")
    p.add_argument("--plot", help="also write a PNG of the samples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="model directory (diffusers layout)")
    p.add_argument("--steps", type=int, default=_TRAINING.steps)
    p.add_argument("--batch-size", type=int, default=_TRAINING.batch_size)
    p.add_argument("--lr", type=float, default=_TRAINING.lr)
    p.add_argument("--seed", type=int, default=_TRAINING.seed)
    p.add_argument("--threads", type=int, default=_TRAINING.threads, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")


def _base_report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", required=True)
    p.add_argument("--domain-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--n-particles", type=int, default=512)
    p.add_argument("--n-steps", type=int, default=_SAMPLER.n_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="samples .npz")
    p.add_argument("--plot", required=True, help="PNG grid or scatter of the samples")
    p.add_argument("--summary", required=True, help="validity and diversity .json")
    p.add_argument("--quiet", action="store_true")


def _spec_round(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="campaign spec.json")
    p.add_argument("--round", type=int, required=True, help="round number (0 = cold start)")


def _step_flags(add: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    """The workflow's steps: one subcommand each, files in, files out."""
    p = add("spec", commands.spec, "Write a campaign's spec.json from its JSON settings.")
    p.add_argument("--json", required=True, help="the CampaignSpec as JSON")
    p.add_argument("--out", required=True)

    p = add(
        "propose",
        commands.propose,
        "Round steps 5, 1, 2 in one process: fit the surrogate on rounds 0..r-1, sample round r "
        "with it, select the queries (one torch start per round; the same files as fit, "
        "sample-round and select).",
    )
    _spec_round(p)
    p.add_argument("--observations", help="observations of round r-1 (absent in round 0)")
    p.add_argument("--previous", help="surrogate of round r-1, for warm starts (rounds 2+)")
    p.add_argument("--surrogate", help="checkpoint directory of the surrogate fitted here")
    p.add_argument("--particles", required=True, help="particles.npz")
    p.add_argument("--queries", required=True, help="queries.npz for the oracle (id, x)")
    p.add_argument("--selection", required=True, help="selection.csv (how each was chosen)")
    p.add_argument("--quiet", action="store_true")

    p = add("sample-round", commands.sample_round, "Round step 1 alone: sample the particles.")
    _spec_round(p)
    p.add_argument("--surrogate", help="the surrogate round r samples with (absent in round 0)")
    p.add_argument("--out", required=True, help="particles.npz")
    p.add_argument("--quiet", action="store_true")

    p = add("select", commands.select, "Round step 2 alone: choose the k queries.")
    _spec_round(p)
    p.add_argument("--particles", required=True)
    p.add_argument("--queries", required=True, help="queries.npz for the oracle (id, x)")
    p.add_argument("--selection", required=True, help="selection.csv (how each was chosen)")
    p.add_argument(
        "--surrogate", help="the round's surrogate (explore_from: information asks what it doubts)"
    )

    p = add("query", commands.query, "Round step 3: run the oracle command on the queries.")
    _spec_round(p)
    p.add_argument("--queries", required=True)
    p.add_argument("--rewards", required=True, help="validated rewards.csv (id,reward)")
    p.add_argument("--log", help="file the oracle's stdout/stderr are appended to")

    p = add("observe", commands.observe, "Round step 4: append the answers to the observations.")
    _spec_round(p)
    p.add_argument("--previous", help="previous round's observations (absent in round 0)")
    p.add_argument("--queries", required=True)
    p.add_argument("--selection", required=True)
    p.add_argument("--rewards", required=True)
    p.add_argument("--out", required=True, help="cumulative observations .parquet")
    p.add_argument("--plot", help="PNG of the round's queries with their rewards")

    p = add(
        "answer",
        commands.answer,
        "Round steps 3 and 4 in one process: a built-in user answers, the answers are observed.",
    )
    _spec_round(p)
    p.add_argument("--previous", help="previous round's observations (absent in round 0)")
    p.add_argument("--queries", required=True)
    p.add_argument("--selection", required=True)
    p.add_argument("--rewards", required=True, help="validated rewards.csv (id,reward)")
    p.add_argument("--out", required=True, help="cumulative observations .parquet")
    p.add_argument("--plot", help="PNG of the round's queries with their rewards")
    p.add_argument("--log", help="file the oracle's stdout/stderr are appended to")

    p = add("fit", commands.fit, "Round step 5 alone: fit and checkpoint the surrogate.")
    _spec_round(p)
    p.add_argument("--observations", required=True)
    p.add_argument("--previous", help="previous surrogate directory, for warm starts")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--quiet", action="store_true")

    p = add("evaluate", commands.evaluate, "Final evaluation with the last surrogate (no budget).")
    p.add_argument("--spec", required=True)
    p.add_argument(
        "--surrogate", required=True, help="the last surrogate (with --fit: where it is written)"
    )
    p.add_argument("--fit", metavar="OBSERVATIONS", help="first fit the last surrogate on these")
    p.add_argument("--previous", help="with --fit: the surrogate to warm-start from")
    p.add_argument("--out", required=True, help="evaluation .json")
    p.add_argument("--samples", required=True, help="fresh samples .npz")
    p.add_argument("--plot", help="PNG of the fresh samples")
    p.add_argument(
        "--query-rewards",
        help="with --fit: CSV of every shown item's reward (rated by the evaluator in the forms "
        "that answer no number)",
    )
    p.add_argument("--log")
    p.add_argument("--quiet", action="store_true")


def _finetune_flags(add: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    p = add(
        "finetune",
        commands.finetune,
        "Distil a campaign's aligned sampler into the base model (full, split, LoRA) and judge "
        "each fine-tuned model like the final evaluation.",
    )
    p.add_argument("--spec", required=True)
    p.add_argument("--surrogate", required=True, help="the campaign's last surrogate")
    p.add_argument("--modes", nargs="+", default=["full", "split", "lora"])
    p.add_argument("--out", required=True, help="folder: <mode>/ models, <mode>.json records")
    p.add_argument("--log")
    p.add_argument("--quiet", action="store_true")

    p = add(
        "amortise",
        commands.amortise,
        "The fine-tuning table of an experiment: FKC sampler, fine-tuned models, baselines.",
    )
    p.add_argument("--evaluations", nargs="+", required=True, help="the campaigns' evaluations")
    p.add_argument("--distilled", nargs="+", required=True, help="the finetune rule's folders")
    p.add_argument("--modes", nargs="+", required=True)
    p.add_argument("--teacher", required=True, help="the method the models were distilled from")
    p.add_argument("--out", required=True, help="experiment folder")
    p.add_argument("--title", required=True)
    p.add_argument("--page-dir", required=True, help="folder of the results page (for links)")


def _report_flags(add: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    p = add("aggregate", commands.aggregate, "An experiment's seeds into figures and tables.")
    p.add_argument("--observations", nargs="+", required=True, help="final observations each")
    p.add_argument("--evaluations", nargs="+", required=True, help="evaluation .json each")
    p.add_argument(
        "--threshold", type=float, required=True, help="reward for 'queries to threshold'"
    )
    p.add_argument("--benchmarks", nargs="+", required=True, help="the jobs' benchmark files")
    p.add_argument("--reference", default="best-of-n", help="method of the paired differences")
    p.add_argument("--out", required=True, help="experiment folder: figures/, tables/, section.md")
    p.add_argument("--title", help="the experiment's title on the results page")
    p.add_argument("--page-dir", required=True, help="folder of the results page (for links)")

    p = add(
        "population-report",
        commands.population_report,
        "A population's held-out users, with the prior and without, paired by user.",
    )
    p.add_argument(
        "--evaluations", nargs="+", required=True, help="evaluation .json of every campaign"
    )
    p.add_argument(
        "--observations", nargs="+", required=True, help="final observations of every campaign"
    )
    p.add_argument("--prior-meta", help="the prior's meta.json (its cost: fit_seconds, n_users...)")
    p.add_argument("--reference", default="fkc-al", help="the arm without the prior")
    p.add_argument(
        "--threshold", type=float, required=True, help="reward for 'questions to threshold'"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="the fresh-sample reward is 'no lower' when its paired 95%% CI's lower bound is "
        ">= -margin",
    )
    p.add_argument("--title", help="the experiment's title on the results page")
    p.add_argument("--out", required=True, help="experiment folder: figures/, tables/, section.md")
    p.add_argument("--page-dir", required=True, help="folder of the results page (for links)")

    p = add("results-page", commands.results_page, "Join experiment sections into one page.")
    p.add_argument("--sections", nargs="+", required=True)
    p.add_argument("--config-name", required=True, help="the config the page was made from")
    p.add_argument("--notes", nargs="*", default=[], help="Markdown under the header (findings)")
    p.add_argument("--torch-threads", type=int, help="torch threads per job, for the record")
    p.add_argument(
        "--base-model",
        action="append",
        metavar="DOMAIN=MODEL_DIR",
        help="a domain's base model directory: its content hash and origin go on the page",
    )
    p.add_argument("--shipped", default="models/shipped.json", help="the shipped models' records")
    p.add_argument("--out", required=True)


def _population_flags(add: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    p = add(
        "population-prior",
        commands.population_prior,
        "Fit a population prior on the training users' observations (one dataset each); a "
        "held-out user's campaign starts from it (learner `population`).",
    )
    p.add_argument("--observations", nargs="+", required=True, help="a parquet per user")
    p.add_argument("--out", required=True, help="the prior's checkpoint directory")
    p.add_argument("--seed", type=int, default=0, help="seeds the training users' GP fits")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``prefalign`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="prefalign",
        description="Active preference alignment of diffusion models with Feynman-Kac correctors.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    _sample_flags(add("sample", commands.sample, "Sample a domain with the FKC sampler (.npz)."))
    _train_flags(add("train-digits", commands.train_digits, "Train (or reuse) the digits DDPM."))
    _base_report_flags(
        add("base-report", commands.base_report, "Base-model samples: validity beside real data.")
    )
    p = add(
        "model-hash",
        commands.model_hash,
        "Print a model directory's content hash (SHA-256 of its files' sha256sum listing, "
        "training.json left out); --ship records it as a shipped model.",
    )
    p.add_argument("model_dir")
    p.add_argument("--manifest", action="store_true", help="print the sha256sum listing first")
    p.add_argument("--ship", metavar="SHIPPED_JSON", help="record the model in this file")
    p.add_argument("--name", default="digits", help="its name in the --ship file")
    p.add_argument("--extra", metavar="JSON", help="more fields for the --ship record")
    _step_flags(add)
    _finetune_flags(add)
    _population_flags(add)
    _report_flags(add)

    p = add("oracle", lambda a: 2, "Built-in oracle commands (simulated users, a person).")
    kinds = p.add_subparsers(dest="oracle_kind", required=True, metavar="KIND")
    b = kinds.add_parser("builtin", help="a simulated user of a domain")
    b.set_defaults(handler=commands.oracle_builtin)
    builtin.add_arguments(b)
    # `prefalign oracle human ...` is handed to the page's own parser before this one runs
    kinds.add_parser("human", help="a person rating queries in a local web page", add_help=False)
    return parser
