"""Feedback efficiency: oracle queries each method needs before the user is satisfied.

Campaigns run in this process through the round functions of :mod:`prefalign.loop.steps`
(``sample_round -> select_round -> oracle -> observe_round -> fit_round``) with
:class:`~prefalign.loop.spec.CampaignSpec` s built by ``prefalign.loop.spec.campaign_spec`` (as the workflow builds them) from
``config/config.yaml`` (k, N, sampler, surrogate of each domain and method), except for a larger
budget, so that ``random`` has a chance to reach the threshold. The simulated user of the config
answers in this process (the same CSV as ``prefalign oracle builtin``).

"Queries to threshold" is the ``n_queries`` of the first round whose observed rewards reach the
config's ``success_threshold`` (0.5), by two criteria, both reported:

- ``best``: best reward so far >= threshold (one satisfying query; the workflow's tables use this);
- ``top10``: mean of the ten best rewards so far >= threshold (ten satisfying queries).

A campaign that never gets there counts as ``budget + k`` (and is marked ``*``). A campaign stops
once both criteria are met (later rounds cannot change either number). ``random`` fits no
surrogate: its queries are uniform draws from base samples and do not depend on one. Base-model
draws are shared across methods seed by seed (``prefalign.loop.steps.BaseDrawCache``).

Usage: python benchmarks/feedback.py [--quick] [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_OUT,
    campaign_spec,
    digits_model,
    goal_text,
    load_config,
    run_rounds,
    section,
)

METHODS: tuple[str, ...] = ("fkc-al", "random", "best-of-n")
CRITERIA: dict[str, str] = {"best": "best_so_far", "top10": "top10_mean"}
GOAL = 1.0 / 3.0  # fkc-al's queries at most a third of random's


@dataclass(frozen=True)
class FeedbackSizes:
    """Seeds, budgets and (quick only) shrunken campaigns."""

    seeds: tuple[int, ...]
    budgets: dict[str, int]  # per domain; k stays the config's
    overrides: dict[str, dict] = field(default_factory=dict)  # per domain, merged over the spec
    n_steps: int | None = None  # sampler steps override (quick only)


def full_sizes(seeds: int = 5) -> FeedbackSizes:
    """The config's campaigns with budgets of 80 (mixture2d) and 64 (digits) queries: about 2 %
    and 3 % of base samples reach 0.5, so random reaches one such query with a probability of
    about 0.8 and 0.85."""
    return FeedbackSizes(tuple(range(seeds)), {"mixture2d": 80, "digits": 64})


def quick_sizes() -> FeedbackSizes:
    """Tiny campaigns for the smoke test."""
    small = {"n_particles": 32, "surrogate": {"epochs": 5}, "k": 8}
    return FeedbackSizes((0,), {"mixture2d": 16, "digits": 16}, {"*": small}, n_steps=4)


def run_campaign(spec, workdir: Path, threshold: float, *, fit: bool, base_draws) -> dict:
    """Run one campaign until both criteria are met or the budget is spent; its queries to
    threshold by each criterion (NaN: not reached)."""

    def satisfied(metrics) -> bool:
        return all((metrics[c] >= threshold).any() for c in CRITERIA.values())

    run = run_rounds(spec, workdir, fit=fit, stop=satisfied, base_draws=base_draws)
    metrics = run.metrics
    out = {"seconds": run.seconds, "rounds_run": int(metrics["round"].max()) + 1}
    for name, column in CRITERIA.items():
        hit = metrics.loc[metrics[column] >= threshold, "n_queries"]
        out[name] = float(hit.iloc[0]) if len(hit) else math.nan
    out["final_best"] = float(metrics["best_so_far"].iloc[-1])
    return out


def run_domain(
    domain: str, sizes: FeedbackSizes, out: Path, model_dir: Path | None, base_draws
) -> dict[str, list[dict]]:
    """Every method x seed of one domain; method -> one result per seed."""
    config = load_config()
    threshold = float(config["success_threshold"])
    overrides = {"budget": sizes.budgets[domain], **sizes.overrides.get("*", {})}
    if domain == "digits":
        overrides["domain_options"] = {"model_dir": str(model_dir)}
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in sizes.seeds:
        for method in METHODS:
            spec = campaign_spec(domain, method, seed, overrides=overrides, n_steps=sizes.n_steps)
            res = run_campaign(
                spec,
                out / "feedback" / domain / method / f"seed{seed}",
                threshold,
                fit=method != "random",
                base_draws=base_draws,
            )
            res.update(seed=seed, budget=spec.budget, k=spec.k)
            results[method].append(res)
    return results


def _counted(res: dict, criterion: str) -> float:
    """Queries to threshold, 'not reached' counted as budget + k."""
    q = res[criterion]
    return res["budget"] + res["k"] if math.isnan(q) else q


def summarise(domain: str, results: dict[str, list[dict]]) -> dict:
    """Means over seeds (not reached = budget + k) and the ratios of fkc-al to the baselines."""
    summary: dict = {"domain": domain, "methods": {}, "ratios": {}}
    for method, runs in results.items():
        entry = {"seconds": sum(r["seconds"] for r in runs)}
        for criterion in CRITERIA:
            counted = [_counted(r, criterion) for r in runs]
            entry[criterion] = {
                "per_seed": [r[criterion] for r in runs],
                "mean": float(np.mean(counted)),
                "reached": sum(not math.isnan(r[criterion]) for r in runs),
                "n": len(runs),
            }
        summary["methods"][method] = entry
    for criterion in CRITERIA:
        fkc = summary["methods"]["fkc-al"][criterion]["mean"]
        for baseline in ("random", "best-of-n"):
            ref = summary["methods"][baseline][criterion]["mean"]
            summary["ratios"][f"{criterion}:fkc-al/{baseline}"] = fkc / ref
    return summary


def report(summary: dict, budget: int, k: int) -> None:
    """Print the per-seed numbers and the ratios of one domain."""
    domain = summary["domain"]
    print(f"{domain}: budget {budget}, k {k}; not reached = {budget + k} (marked *)")
    for method, entry in summary["methods"].items():
        parts = []
        for criterion in CRITERIA:
            e = entry[criterion]
            seeds = " ".join(
                f"{budget + k:.0f}*" if math.isnan(q) else f"{q:.0f}" for q in e["per_seed"]
            )
            parts.append(f"{criterion}: [{seeds}] mean {e['mean']:.1f} ({e['reached']}/{e['n']})")
        print(f"  {method:9s} " + " | ".join(parts) + f" | {entry['seconds']:.0f} s")
    for name, value in summary["ratios"].items():
        criterion, ratio = name.split(":")
        note = ""
        if ratio.endswith("/random"):
            note = f"  (goal <= 1/3: {goal_text(value, GOAL)})"
        print(f"  {criterion:5s} {ratio:20s} = {value:.2f}{note}", flush=True)


def run_section(
    *, quick: bool, out: Path, model_dir: Path | None = None, seeds: int = 5
) -> list[dict]:
    """Section 2 of ``run_all.py``: both domains."""
    import torch

    section("2. Feedback efficiency: queries to reach the threshold (fkc-al vs random, best-of-n)")
    torch.set_num_threads(1)
    sizes = quick_sizes() if quick else full_sizes(seeds)
    threshold = load_config()["success_threshold"]
    print(
        f"threshold {threshold}: 'best' = best reward so far >= it, 'top10' = mean of the 10 best "
        f"so far >= it; {len(sizes.seeds)} seeds; means over seeds"
    )
    summaries = []
    from prefalign.loop.steps import BaseDrawCache

    draws = BaseDrawCache()  # shared by the methods seed by seed (the same particles)
    for domain in ("mixture2d", "digits"):
        mdir = digits_model(out, quick=quick, model_dir=model_dir) if domain == "digits" else None
        results = run_domain(domain, sizes, out, mdir, draws)
        summary = summarise(domain, results)
        k = results["fkc-al"][0]["k"]
        report(summary, sizes.budgets[domain], k)
        summary["results"] = results
        summaries.append(summary)
    print(f"base-model draws computed {draws.computed}, reused {draws.reused}")
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model-dir", type=Path, help="a trained digits DDPM to use")
    args = parser.parse_args()
    run_section(quick=args.quick, out=args.out, model_dir=args.model_dir, seeds=args.seeds)


if __name__ == "__main__":
    main()
