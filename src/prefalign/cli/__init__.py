"""The ``prefalign`` command line: one subcommand per workflow step, each files in, files out.

Run ``prefalign --help`` for the list and ``prefalign SUBCOMMAND --help`` for each one.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prefalign.settings import VARIANTS

Handler = Callable[[argparse.Namespace], int]


def _parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` pairs, values parsed as YAML scalars (numbers, booleans, strings)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: option {pair!r} is not of the form key=value")
        options[key] = yaml.safe_load(value)
    return options


# --------------------------------------------------------------------------------------------
# prefalign sample: standalone sampling of a domain, tilted by a built-in user or a surrogate
# --------------------------------------------------------------------------------------------
def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from prefalign.domains import get_domain
    from prefalign.learning.checkpoint import load_surrogate
    from prefalign.loop.spec import resolve_device
    from prefalign.sampling import SamplerConfig, sample

    torch.set_num_threads(args.threads)
    domain = get_domain(args.domain, _parse_options(args.domain_option))
    config = SamplerConfig(
        variant=args.variant,
        n_steps=args.n_steps,
        lam_max=args.lam_max,
        schedule=args.schedule,
        tilt_start=args.tilt_start,
        resample=args.resample,
        ess_threshold=args.ess_threshold,
        chunk_size=args.chunk_size,
    )
    reward = None
    if args.surrogate:
        reward = load_surrogate(args.surrogate).eval()
    elif args.user:
        preference = domain.oracle(args.user)
        if not hasattr(preference, "torch"):
            raise SystemExit(
                f"error: user {args.user!r} has no differentiable form; use --surrogate"
            )
        reward = preference.torch
    if config.tilted and reward is None:
        raise SystemExit(f"error: variant {args.variant!r} needs --user or --surrogate")
    device = resolve_device(args.device)
    result = sample(
        domain.score,
        domain.sde,
        args.n_particles,
        tuple(domain.event_shape),
        reward=reward.to(device) if hasattr(reward, "to") else reward,
        config=config,
        generator=torch.Generator().manual_seed(args.seed),
        device=device,
        progress=not args.quiet,
    )
    x = result.x.detach().cpu().float().numpy()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        x=x,
        log_weight=result.log_weights.cpu().numpy(),
        fk_log_weight=result.path_log_weights.cpu().numpy(),
        ess=result.ess.numpy(),
        config=json.dumps(config.to_dict()),
    )
    valid = domain.is_valid(x)
    summary = {
        "particles": len(x),
        "validity_rate": float(valid.mean()),
        "n_resamples": result.n_resamples,
        "min_ess": float(result.ess.min()),
        **domain.diversity(x),
    }
    if args.user:
        summary["mean_reward"] = float(np.mean(domain.oracle(args.user)(x)))
    print(json.dumps(summary, indent=2))
    if args.plot:
        _plot_samples(
            domain, x, args.user, args.plot, title=f"{args.variant}, lam_max={args.lam_max}"
        )
        print(f"wrote {args.out} and {args.plot}")
    else:
        print(f"wrote {args.out}")
    return 0


def _plot_samples(domain: Any, x: np.ndarray, user: str | None, path: str, title: str) -> None:
    from prefalign.reporting import render

    rewards = domain.oracle(user)(x) if user else None
    if x.ndim == 2 and x.shape[1] == 2:
        import torch

        background = domain.sample_data(2000, torch.Generator().manual_seed(0))
        render.save_points(path, x, rewards, background=background, title=title)
    else:
        render.save_grid(path, x[:64], rewards[:64] if rewards is not None else None)


def _cmd_base_report(args: argparse.Namespace) -> int:
    import torch

    from prefalign.domains import get_domain
    from prefalign.reporting import render
    from prefalign.sampling import SamplerConfig, sample

    torch.set_num_threads(args.threads)
    domain = get_domain(args.domain, _parse_options(args.domain_option))
    config = SamplerConfig(variant="base", n_steps=args.n_steps)
    result = sample(
        domain.score,
        domain.sde,
        args.n_particles,
        tuple(domain.event_shape),
        config=config,
        generator=torch.Generator().manual_seed(args.seed),
        progress=not args.quiet,
    )
    x = result.x.float().numpy()
    real = domain.reference_samples()
    summary = {
        "domain": args.domain,
        "n_base_samples": len(x),
        "n_real_samples": len(real),
        "validity_rate_base": float(domain.is_valid(x).mean()),
        "validity_rate_real": float(domain.is_valid(real).mean()),
        "diversity_base": domain.diversity(x),
        "diversity_real": domain.diversity(real),
    }
    np.savez(args.out, x=x)
    Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    if x.ndim == 2 and x.shape[1] == 2:
        render.save_points(args.plot, x, background=real, title="base samples")
    else:
        render.save_grid(args.plot, x[:64], suptitle="base samples")
    print(json.dumps(summary, indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# workflow steps
# --------------------------------------------------------------------------------------------
def _cmd_spec(args: argparse.Namespace) -> int:
    from prefalign.loop.spec import CampaignSpec, write_spec

    write_spec(CampaignSpec.from_dict(json.loads(args.json)), args.out)
    return 0


def _spec(args: argparse.Namespace):
    from prefalign.loop.spec import read_spec

    return read_spec(args.spec)


def _cmd_sample_round(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import sample_round

    stats = sample_round(_spec(args), args.round, args.surrogate, args.out, progress=not args.quiet)
    print(json.dumps(stats))
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import select_round

    table = select_round(_spec(args), args.round, args.particles, args.queries, args.selection)
    print(table.to_string(index=False))
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import oracle_round

    rewards = oracle_round(_spec(args), args.round, args.queries, args.rewards, args.log)
    print(f"oracle answered {len(rewards)} queries; mean reward {rewards.mean():.4f}")
    return 0


def _cmd_observe(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import observe_round

    df = observe_round(
        _spec(args), args.round, args.previous, args.queries, args.selection, args.rewards, args.out
    )
    print(f"{len(df)} observations after round {args.round}; best reward {df['reward'].max():.4f}")
    if args.plot:
        from prefalign.io.queries import read_queries, read_rewards
        from prefalign.reporting import render

        ids, x = read_queries(args.queries)
        rewards = read_rewards(args.rewards, list(ids)).to_numpy()
        title = f"round {args.round} queries"
        if x.ndim == 2 and x.shape[1] == 2:
            render.save_points(args.plot, x, rewards, title=title)
        else:
            render.save_grid(args.plot, x, rewards, suptitle=title)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import fit_round

    report = fit_round(
        _spec(args), args.round, args.observations, args.previous, args.out, progress=not args.quiet
    )
    print(json.dumps(report))
    return 0


def _cmd_propose(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import propose_round

    done = propose_round(
        _spec(args),
        args.round,
        args.observations,
        args.previous,
        args.surrogate,
        args.particles,
        args.queries,
        args.selection,
        progress=not args.quiet,
    )
    print(json.dumps(done, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from prefalign.loop.steps import campaign_domain, evaluate_campaign, fit_round

    spec = _spec(args)
    if args.fit:  # the last round's fit, in this process (the workflow's default layout)
        fit_round(
            spec, spec.rounds - 1, args.fit, args.previous, args.surrogate, progress=not args.quiet
        )
    elif args.previous:
        raise ValueError("--previous is the warm start of --fit; give --fit too")
    evaluation = evaluate_campaign(
        spec, args.surrogate, args.out, args.samples, log=args.log, progress=not args.quiet
    )
    print(json.dumps(evaluation, indent=2))
    if args.plot:
        with np.load(args.samples) as data:
            x = data["x"]
        user = spec.oracle[-1] if spec.oracle[:2] == ["prefalign", "oracle"] else None
        domain = campaign_domain(spec)
        _plot_samples(
            domain, x, user if user in domain.oracle_names() else None, args.plot, spec.name
        )
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    import shutil

    from prefalign.reporting import cost, metrics
    from prefalign.reporting import figures as report
    from prefalign.reporting.results_page import write_section

    out = Path(args.out)
    figures, tables = out / "figures", out / "tables"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    rounds = metrics.campaign_round_metrics(args.observations)
    rounds.to_csv(tables / "round_metrics.csv", index=False)
    evals = metrics.load_evaluations(args.evaluations)
    evals.to_csv(tables / "evaluations.csv", index=False)
    table = metrics.final_table(evals, rounds, threshold=args.threshold)
    report.write_tables(table, tables / "final")
    per_seed = metrics.per_seed_table(evals, rounds, threshold=args.threshold)
    paired = metrics.paired_differences(per_seed, args.reference)
    report.write_paired_table(paired, tables / "paired")
    nested: dict = {}
    for row in table.to_dict(orient="records"):
        values = {k: v for k, v in row.items() if k not in ("domain", "method") and v == v}
        nested.setdefault(row["domain"], {})[row["method"]] = values
    (tables / "final_metrics.json").write_text(json.dumps(nested, indent=2, default=float) + "\n")
    report.plot_learning_curves(rounds, figures / "reward_vs_queries.png")
    report.plot_final_metrics(evals, figures / "final_metrics.png")

    # E4: cost per rule and per round from the benchmark files
    campaigns = evals[["domain", "method", "seed"]].itertuples(index=False)
    jobs = cost.load_benchmarks(args.benchmarks, [tuple(c) for c in campaigns])
    per_rule, per_round = cost.cost_tables(jobs)
    jobs.to_csv(tables / "cost_jobs.csv", index=False)
    per_rule.to_csv(tables / "cost_per_rule.csv", index=False)
    per_round.to_csv(tables / "cost_per_round.csv", index=False)
    (tables / "cost_per_rule.md").write_text(per_rule.to_markdown(index=False, floatfmt=".2f"))
    (tables / "cost_per_round.md").write_text(per_round.to_markdown(index=False, floatfmt=".2f"))
    cost.plot_cost(jobs, figures / "cost.png")

    # the first seed's final samples of each method, copied beside the figures for the page
    plots: dict[str, Path] = {}
    records = [json.loads(Path(p).read_text()) | {"path": p} for p in args.evaluations]
    for record in sorted(records, key=lambda r: r["seed"]):
        key = f"{record['domain']} / {record['method']}"
        src = Path(record["path"]).with_suffix("") / "samples.png"  # seed0.json -> seed0/
        if key not in plots and src.is_file():
            plots[key] = figures / f"samples_{record['domain']}_{record['method']}.png"
            shutil.copyfile(src, plots[key])
    write_section(
        out / "section.md",
        title=args.title or out.name,
        experiment_dir=out,
        evaluations=evals,
        sample_plots=plots,
        page_dir=args.page_dir,
    )
    print(f"wrote {out}/section.md, figures in {figures}, tables in {tables}")
    return 0


def _cmd_results_page(args: argparse.Namespace) -> int:
    from prefalign.reporting.results_page import write_results_page

    write_results_page(
        args.out,
        args.sections,
        config_name=args.config_name,
        notes=next((n for n in args.notes if n), None),
    )
    print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------------------------
# oracles
# --------------------------------------------------------------------------------------------
def _cmd_oracle_builtin(args: argparse.Namespace) -> int:
    import pandas as pd

    from prefalign.domains import get_oracle
    from prefalign.io.queries import read_queries

    oracle = get_oracle(
        args.domain,
        args.user,
        _parse_options(args.domain_option),
        noise_std=args.noise_std,
        noise_seed=args.noise_seed,
    )
    ids, x = read_queries(args.queries)
    rewards = np.asarray(oracle(x), dtype=np.float64)
    pd.DataFrame({"id": ids, "reward": rewards}).to_csv(
        args.rewards, index=False, float_format="%.17g"
    )
    return 0


def _cmd_train_digits(args: argparse.Namespace) -> int:
    import torch

    from prefalign.domains.digits import train_digits_ddpm

    torch.set_num_threads(args.threads)  # more threads are slower on a busy 2-core machine
    out = train_digits_ddpm(
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"digits DDPM in {out}")
    return 0


def _cmd_oracle_human(args: argparse.Namespace) -> int:
    from prefalign.oracles.human import main as human_main

    return human_main(args.human_args)


# --------------------------------------------------------------------------------------------
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

    def add_spec_round(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spec", required=True, help="campaign spec.json")
        p.add_argument("--round", type=int, required=True, help="round number (0 = cold start)")

    p = add("sample", _cmd_sample, "Sample a domain with the FKC sampler; write particles to .npz.")
    p.add_argument("--domain", default="mixture2d")
    p.add_argument("--domain-option", action="append", metavar="KEY=VALUE", help="domain option")
    p.add_argument("--variant", default="fkc", choices=list(VARIANTS))
    p.add_argument("--user", help="tilt by this built-in simulated user's (differentiable) reward")
    p.add_argument("--surrogate", help="tilt by the surrogate checkpoint in this directory")
    p.add_argument("--lam-max", type=float, default=1.0, help="tilt strength at the data end")
    p.add_argument("--schedule", default="linear", choices=["linear", "constant"])
    p.add_argument("--tilt-start", type=float, default=0.0)
    p.add_argument("--resample", default="ess", choices=["ess", "always", "never"])
    p.add_argument("--ess-threshold", type=float, default=0.5)
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("--n-steps", type=int, default=100)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output .npz (x, log_weight, fk_log_weight, ess)")
    p.add_argument("--plot", help="also write a PNG of the samples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("train-digits", _cmd_train_digits, "Train (or reuse) the digits base DDPM.")
    p.add_argument("--out", required=True, help="model directory (diffusers layout)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")

    p = add("base-report", _cmd_base_report, "Base-model samples: validity next to real data.")
    p.add_argument("--domain", required=True)
    p.add_argument("--domain-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--n-particles", type=int, default=512)
    p.add_argument("--n-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="samples .npz")
    p.add_argument("--plot", required=True, help="PNG grid or scatter of the samples")
    p.add_argument("--summary", required=True, help="validity and diversity .json")
    p.add_argument("--quiet", action="store_true")

    p = add("spec", _cmd_spec, "Write a campaign's spec.json from its JSON settings.")
    p.add_argument("--json", required=True, help="the CampaignSpec as JSON")
    p.add_argument("--out", required=True)

    p = add("sample-round", _cmd_sample_round, "Round step 1: sample particles (FKC or base).")
    add_spec_round(p)
    p.add_argument("--surrogate", help="previous round's surrogate directory (absent in round 0)")
    p.add_argument("--out", required=True, help="particles.npz")
    p.add_argument("--quiet", action="store_true")

    p = add("select", _cmd_select, "Round step 2: choose the k queries (no particle twice).")
    add_spec_round(p)
    p.add_argument("--particles", required=True)
    p.add_argument("--queries", required=True, help="queries.npz for the oracle (id, x)")
    p.add_argument("--selection", required=True, help="selection.csv (how each was chosen)")

    p = add("query", _cmd_query, "Round step 3: run the oracle command on the queries.")
    add_spec_round(p)
    p.add_argument("--queries", required=True)
    p.add_argument("--rewards", required=True, help="validated rewards.csv (id,reward)")
    p.add_argument("--log", help="file the oracle's stdout/stderr are appended to")

    p = add("observe", _cmd_observe, "Round step 4: append the answers to the observations.")
    add_spec_round(p)
    p.add_argument("--previous", help="previous round's observations (absent in round 0)")
    p.add_argument("--queries", required=True)
    p.add_argument("--selection", required=True)
    p.add_argument("--rewards", required=True)
    p.add_argument("--out", required=True, help="cumulative observations .parquet")
    p.add_argument("--plot", help="PNG of the round's queries with their rewards")

    p = add("fit", _cmd_fit, "Round step 5: fit and checkpoint the surrogate.")
    add_spec_round(p)
    p.add_argument("--observations", required=True)
    p.add_argument("--previous", help="previous surrogate directory, for warm starts")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--quiet", action="store_true")

    p = add(
        "propose",
        _cmd_propose,
        "Round steps 5, 1, 2 in one process: fit the surrogate on rounds 0..r-1, sample round r "
        "with it, select the queries (one torch start per round; same files as fit, "
        "sample-round and select).",
    )
    add_spec_round(p)
    p.add_argument("--observations", help="observations of round r-1 (absent in round 0)")
    p.add_argument("--previous", help="surrogate of round r-1, for warm starts (rounds 2+)")
    p.add_argument("--surrogate", help="checkpoint directory of the surrogate fitted here")
    p.add_argument("--particles", required=True, help="particles.npz")
    p.add_argument("--queries", required=True, help="queries.npz for the oracle (id, x)")
    p.add_argument("--selection", required=True, help="selection.csv (how each was chosen)")
    p.add_argument("--quiet", action="store_true")

    p = add("evaluate", _cmd_evaluate, "Final evaluation with the last surrogate (no budget).")
    p.add_argument("--spec", required=True)
    p.add_argument(
        "--surrogate",
        required=True,
        help="the last surrogate's directory (with --fit: where the fit writes it)",
    )
    p.add_argument("--fit", metavar="OBSERVATIONS", help="first fit the last surrogate on these")
    p.add_argument("--previous", help="with --fit: the surrogate to warm-start from")
    p.add_argument("--out", required=True, help="evaluation .json")
    p.add_argument("--samples", required=True, help="fresh samples .npz")
    p.add_argument("--plot", help="PNG of the fresh samples")
    p.add_argument("--log")
    p.add_argument("--quiet", action="store_true")

    p = add("aggregate", _cmd_aggregate, "An experiment's seeds aggregated into figures, tables.")
    p.add_argument(
        "--observations", nargs="+", required=True, help="final observations per campaign"
    )
    p.add_argument("--evaluations", nargs="+", required=True, help="evaluation .json per campaign")
    p.add_argument("--threshold", type=float, default=0.5, help="reward for 'queries to threshold'")
    p.add_argument("--benchmarks", default="results/benchmarks", help="root of benchmark files")
    p.add_argument(
        "--reference", default="best-of-n", help="method the paired differences are taken against"
    )
    p.add_argument("--out", required=True, help="experiment folder: figures/, tables/, section.md")
    p.add_argument("--title", help="the experiment's title on the results page")
    p.add_argument("--page-dir", default="results", help="folder of the results page (for links)")

    p = add("results-page", _cmd_results_page, "Concatenate experiment sections into one page.")
    p.add_argument("--sections", nargs="+", required=True)
    p.add_argument("--config-name", default="config/config.yaml")
    p.add_argument(
        "--notes", nargs="*", default=[], help="Markdown shown under the header (findings)"
    )
    p.add_argument("--out", required=True)

    p = add("oracle", lambda a: 2, "Built-in oracle commands (simulated users, a person).")
    osub = p.add_subparsers(dest="oracle_kind", required=True, metavar="KIND")
    b = osub.add_parser("builtin", help="a simulated user of a domain")
    b.set_defaults(handler=_cmd_oracle_builtin)
    b.add_argument("domain")
    b.add_argument("user", help="the simulated user's name (see the domain's docs)")
    b.add_argument("--domain-option", action="append", metavar="KEY=VALUE")
    b.add_argument("--noise-std", type=float, default=0.0, help="Gaussian noise on the answers")
    b.add_argument("--noise-seed", type=int, default=0)
    b.add_argument("queries")
    b.add_argument("rewards")
    h = osub.add_parser("human", help="a person rating queries in a local web page", add_help=False)
    h.set_defaults(handler=_cmd_oracle_human)
    h.add_argument("human_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefalign`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["oracle", "human"]:
        # argparse.REMAINDER drops options that come first (python/cpython#61252): the human
        # oracle parses its own arguments, untouched
        from prefalign.oracles.human import main as human_main

        return human_main(argv[2:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SystemExit as err:  # prefalign.io.oracle_command.OracleTerminated (not imported by every step)
        if not isinstance(getattr(err, "signum", None), int):
            raise
        name = signal.Signals(err.signum).name
        print(
            f"prefalign {args.command}: {name}: the oracle and every process it started were "
            "killed; nothing was written",
            file=sys.stderr,
        )
        return int(err.code)
    except KeyboardInterrupt:  # an oracle it ran was killed first (prefalign.io.oracle_command.run_oracle)
        print(f"prefalign {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"prefalign {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
