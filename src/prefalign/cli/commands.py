"""The handlers of the ``prefalign`` subcommands: each reads its arguments, calls one library
function, and prints what it did. The work lives in the library (named in each docstring)."""

from __future__ import annotations

import argparse
import json

from prefalign.settings import SamplerConfig, parse_options

#: The :class:`SamplerConfig` fields that ``prefalign sample`` takes as flags.
SAMPLER_FLAGS = (
    "variant",
    "n_steps",
    "lam_max",
    "resample",
    "ess_threshold",
    "chunk_size",
)


def _spec(args: argparse.Namespace):
    from prefalign.loop.spec import read_spec

    return read_spec(args.spec)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)  # more threads are slower on a busy 2-core machine


def _domain(args: argparse.Namespace):
    """The domain of ``--domain`` and ``--domain-option``, on ``--device`` where there is one."""
    from prefalign.domains import get_domain
    from prefalign.runtime import resolve_device

    device = resolve_device(args.device) if getattr(args, "device", None) else None
    return get_domain(args.domain, parse_options(args.domain_option), device)


# --- outside a campaign -------------------------------------------------------------------------
def sample(args: argparse.Namespace) -> int:
    """:func:`prefalign.reporting.samples.sample_domain` with the command line's sampler."""
    from prefalign.reporting.samples import sample_domain

    _threads(args.threads)
    summary = sample_domain(
        _domain(args),
        SamplerConfig(**{name: getattr(args, name) for name in SAMPLER_FLAGS}),
        n=args.n_particles,
        out=args.out,
        **{k: getattr(args, k) for k in ("user", "surrogate", "seed", "device", "plot")},
        progress=not args.quiet,
    )
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def base_report(args: argparse.Namespace) -> int:
    """:func:`prefalign.reporting.samples.base_model_report`."""
    from prefalign.reporting.samples import base_model_report

    _threads(args.threads)
    summary = base_model_report(
        _domain(args),
        args.domain,
        n=args.n_particles,
        n_steps=args.n_steps,
        out=args.out,
        plot=args.plot,
        summary_path=args.summary,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(json.dumps(summary, indent=2))
    return 0


def train_digits(args: argparse.Namespace) -> int:
    """:func:`prefalign.domains.digits.train_digits_ddpm`."""
    from prefalign.domains.digits import train_digits_ddpm

    _threads(args.threads)
    out = train_digits_ddpm(
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        progress=not args.quiet,
    )
    print(f"digits DDPM in {out}")
    return 0


def model_hash(args: argparse.Namespace) -> int:
    """:func:`prefalign.provenance.content_hash` (and, with ``--ship``,
    :func:`prefalign.reporting.base_models.ship_model`)."""
    from prefalign.provenance import content_hash, model_manifest

    if args.manifest:
        print(model_manifest(args.model_dir), end="")
    if args.ship:
        from prefalign.reporting.base_models import ship_model

        extra = json.loads(args.extra) if args.extra else {}
        entry = ship_model(args.model_dir, args.name, args.ship, **extra)
        print(f"recorded {args.model_dir} as {args.name!r} in {args.ship}")
        print(entry["content_sha256"])
        return 0
    print(content_hash(args.model_dir))
    return 0


# --- the workflow's steps -------------------------------------------------------------------------
def spec(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.spec.write_spec` of the settings resolved at plan time."""
    from prefalign.loop.spec import CampaignSpec, write_spec

    write_spec(CampaignSpec.from_dict(json.loads(args.json)), args.out)
    return 0


def _round_step(args: argparse.Namespace, name: str, *paths: str, **options):
    """``prefalign.loop.steps.<name>(spec, round, *paths from the flags, **options)``."""
    from prefalign.loop import steps

    return getattr(steps, name)(
        _spec(args), args.round, *(getattr(args, p) for p in paths), **options
    )


def propose(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.propose_round`: fit, sample, select."""
    paths = ("observations", "previous", "surrogate", "particles", "queries", "selection")
    done = _round_step(args, "propose_round", *paths, progress=not args.quiet)
    print(json.dumps(done, indent=2))
    return 0


def sample_round(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.sample_round`."""
    stats = _round_step(args, "sample_round", "surrogate", "out", progress=not args.quiet)
    print(json.dumps(stats))
    return 0


def select(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.select_round`."""
    table = _round_step(args, "select_round", "particles", "queries", "selection", "surrogate")
    print(table.to_string(index=False))
    return 0


def fit(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.fit_round`."""
    paths = ("observations", "previous", "out")
    print(json.dumps(_round_step(args, "fit_round", *paths, progress=not args.quiet)))
    return 0


def query(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.oracle_round`; a built-in user answers in this process (it
    is library code: no interpreter start), any other oracle runs as its command."""
    from prefalign.oracles.builtin import answer_in_process

    rewards = _round_step(
        args, "oracle_round", "queries", "rewards", "log", runner=answer_in_process
    )
    print(f"oracle answered {len(rewards)} queries; mean reward {rewards.mean():.4f}")
    return 0


def observe(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.observe_round`."""
    paths = ("previous", "queries", "selection", "rewards", "out")
    df = _round_step(args, "observe_round", *paths, plot=args.plot)
    print(f"{len(df)} observations after round {args.round}; best reward {df['reward'].max():.4f}")
    return 0


def answer(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.answer_round`: ``query`` and ``observe`` in one process."""
    paths = ("previous", "queries", "selection", "rewards", "out", "log")
    df = _round_step(args, "answer_round", *paths, plot=args.plot)
    frame = df[df["round"] == args.round]
    print(
        f"oracle answered {len(frame)} queries; mean reward {frame['reward'].mean():.4f}; "
        f"{len(df)} observations after round {args.round}; best reward {df['reward'].max():.4f}"
    )
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.evaluation.evaluate_campaign` (after the last fit with ``--fit``:
    :func:`~prefalign.loop.evaluation.fit_and_evaluate`); built-in users score the samples in
    this process, any other oracle runs as its command."""
    from prefalign.loop import evaluation
    from prefalign.oracles.builtin import answer_in_process

    if args.previous and not args.fit:
        raise ValueError("--previous is the warm start of --fit; give --fit too")
    options = {
        "log": args.log,
        "plot": args.plot,
        "progress": not args.quiet,
        "runner": answer_in_process,
    }
    if args.query_rewards and not args.fit:
        raise ValueError("--query-rewards rates the observations of --fit; give --fit too")
    paths = (args.surrogate, args.out, args.samples)
    if args.fit:  # the last round's fit, in this process (the workflow's evaluate job)
        record = evaluation.fit_and_evaluate(
            _spec(args), args.fit, args.previous, *paths, query_rewards=args.query_rewards,
            **options,
        )  # fmt: skip
    else:
        record = evaluation.evaluate_campaign(_spec(args), *paths, **options)
    print(json.dumps(record, indent=2))
    return 0


def finetune(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.finetuning.distil_campaign`; built-in users judge in this process."""
    from prefalign.loop.finetuning import distil_campaign
    from prefalign.oracles.builtin import answer_in_process

    records = distil_campaign(
        _spec(args),
        args.surrogate,
        args.out,
        args.modes,
        log=args.log,
        progress=not args.quiet,
        runner=answer_in_process,
    )
    for mode, record in records.items():
        print(
            f"{mode}: reward {record['mean_reward']:.4f}, validity {record['validity_rate']:.3f}, "
            f"{record['finetune_seconds']:.1f} s fine-tuning, "
            f"{record['trained_parameters']:,} parameters trained"
        )
    return 0


def amortise(args: argparse.Namespace) -> int:
    """:func:`prefalign.reporting.amortised.write_amortised`."""
    from prefalign.reporting.amortised import write_amortised

    section = write_amortised(
        args.evaluations,
        args.distilled,
        args.modes,
        args.out,
        teacher=args.teacher,
        title=args.title,
        page_dir=args.page_dir,
    )
    print(f"wrote {section}")
    return 0


def population_prior(args: argparse.Namespace) -> int:
    """:func:`prefalign.loop.steps.prior.fit_prior_files`."""
    from prefalign.loop.steps.prior import fit_prior_files

    _threads(args.threads)
    report = fit_prior_files(args.observations, args.out, seed=args.seed, progress=not args.quiet)
    print(json.dumps(report.to_dict(), indent=2))
    print(f"wrote {args.out}")
    return 0


def aggregate(args: argparse.Namespace) -> int:
    """:func:`prefalign.reporting.aggregate.aggregate_experiment`."""
    from prefalign.reporting.aggregate import aggregate_experiment

    section = aggregate_experiment(
        args.observations,
        args.evaluations,
        args.out,
        threshold=args.threshold,
        benchmarks=args.benchmarks,
        reference=args.reference,
        title=args.title,
        page_dir=args.page_dir,
    )
    print(f"wrote {section}, figures and tables beside it")
    return 0


def population_report(args: argparse.Namespace) -> int:
    """:func:`prefalign.reporting.population.write_population_report`."""
    from prefalign.reporting.population import write_population_report

    section = write_population_report(
        args.evaluations,
        args.observations,
        args.out,
        threshold=args.threshold,
        reference=args.reference,
        prior_meta=args.prior_meta,
        title=args.title,
        page_dir=args.page_dir,
        margin=args.margin,
    )
    print(f"wrote {section}, figures and tables beside it")
    return 0


def results_page(args: argparse.Namespace) -> int:
    """:func:`prefalign.reporting.results_page.write_results_page`."""
    from prefalign.reporting.results_page import write_results_page

    notes = next((n for n in args.notes if n), None)
    base_models: dict[str, list[str]] = {}
    for item in args.base_model or []:
        domain, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--base-model {item!r}: expected DOMAIN=MODEL_DIR")
        base_models.setdefault(path, []).append(domain)
    write_results_page(
        args.out,
        args.sections,
        config_name=args.config_name,
        notes=notes,
        torch_threads=args.torch_threads,
        base_models=base_models,
        shipped_file=args.shipped,
    )
    print(f"wrote {args.out}")
    return 0


# --- oracles -----------------------------------------------------------------------------------
def oracle_builtin(args: argparse.Namespace) -> int:
    """:func:`prefalign.oracles.builtin.answer_queries`."""
    from prefalign.oracles.builtin import answer_queries

    answer_queries(
        args.domain,
        args.user,
        args.queries,
        args.rewards,
        options=parse_options(args.domain_option),
        noise_std=args.noise_std,
        noise_seed=args.noise_seed,
        temperature=args.temperature,
        like_threshold=args.like_threshold,
        tie_margin=args.tie_margin,
    )
    return 0
