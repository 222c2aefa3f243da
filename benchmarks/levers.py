"""Which lever moves which number: in-process campaigns of several methods, paired by seed.

Runs each (method, seed) campaign of one domain in this process family (built-in users answer
in-process, by ``prefalign.loop.run_campaign``; the files are those of the workflow's steps),
evaluates the last surrogate by fresh samples, and prints per method: fresh-sample reward, the
evaluation oracle's reward, validity, classes and pairwise distance of the fresh samples, the
mean reward of the queries of rounds 1+, and the questions asked until a round's queries first
reached the threshold; then each method minus a reference method, paired by seed, with a 95 %
t interval.

    python benchmarks/levers.py --domain digits --budget 120 --k 12 --seeds 0 1 2 3 4 \\
        --methods best-of-n random fkc-al --jobs 2 --out benchmarks/out/levers-digits

Methods are those of ``config/config.yaml`` and ``config/paper.yaml`` (or ``--config``); ``--set NAME.KEY=VALUE`` defines
or changes one (``--set fkc-kc.batch=kcenter --set fkc-kc.base=fkc-al``), keys as in the
config's ``methods`` section (``sampler.*``/``surrogate.*`` nest).

``--eval-lam LAM`` re-evaluates each campaign's final surrogate (the campaigns are reused when
finished) with every evaluation sampler's tilt set to ``LAM``, into ``evaluation-lam<LAM>.json``,
and reports those fresh samples: is a stronger tilt by what the questions taught still aligned?
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def _parse_value(text: str):
    return yaml.safe_load(text)


def build_config(
    path: Path,
    sets: list[str],
    domain: str,
    budget: int | None,
    k: int | None,
    domain_sets: list[str],
    user: str | None = None,
) -> dict:
    """The workflow config with the ``--set`` method changes applied (and ``user``: the
    domain's simulated user, its ``eval-`` twin as the evaluation oracle and its exact reward
    as the ``true-reward`` reference)."""
    config = _common.load_config(path)
    if user is not None:
        dom = config["domains"][domain]
        kind = dom.get("type", domain)
        dom["oracle"] = ["prefalign", "oracle", "builtin", kind, user]
        dom["eval_oracle"] = ["prefalign", "oracle", "builtin", kind, f"eval-{user}"]
        dom["true_reward"] = user
    for item in sets:
        key, _, value = item.partition("=")
        name, _, rest = key.partition(".")
        methods = config["methods"]
        if rest == "base":
            methods[name] = json.loads(json.dumps(methods[_parse_value(value)]))
            continue
        node = methods.setdefault(name, {})
        parts = rest.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(value)
    dom = config["domains"][domain]
    for item in domain_sets:
        key, _, value = item.partition("=")
        node = dom
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(value)
    if budget is not None:
        dom["budget"] = budget
    if k is not None:
        config["k"] = k
        for meth in config["methods"].values():
            meth.pop("k", None)
    return config


def run_seed(args: tuple) -> list[dict]:
    """Every method's campaign of one seed in this process, sharing the base model's draws
    (round 0, and every round of the methods that query base samples, are the same particles
    seed by seed: :class:`prefalign.loop.steps.BaseDrawCache`); returns their summary rows."""
    from prefalign.loop.steps import BaseDrawCache

    config, domain, methods, seed, out, threshold, eval_lam = args
    draws = BaseDrawCache()
    return [
        run_campaign((config, domain, m, seed, out, threshold, eval_lam), base_draws=draws)
        for m in methods
    ]


def run_campaign(args: tuple, base_draws=None) -> dict:
    """One campaign: rounds, final fit, evaluation; returns its summary row."""
    config, domain, method, seed, out, threshold, eval_lam = args
    import torch

    from prefalign.loop.evaluation import evaluate_campaign
    from prefalign.loop.spec import campaign_spec
    from prefalign.oracles.builtin import answer_in_process
    from prefalign.reporting.metrics import round_metrics

    torch.set_num_threads(1)
    spec = campaign_spec(config, domain, method, seed)
    work = Path(out) / method / f"seed{seed}"
    done, settings = work / "evaluation.json", work / "spec.json"
    if done.is_file() and settings.is_file() and json.loads(settings.read_text()) == spec.to_dict():
        evaluation, seconds = json.loads(done.read_text()), math.nan  # a finished campaign
    else:
        run = _common.run_rounds(spec, work, fit_last=True, base_draws=base_draws)
        evaluation = evaluate_campaign(
            spec,
            run.surrogate,
            work / "evaluation.json",
            work / "samples.npz",
            runner=answer_in_process,
        )
        settings.write_text(json.dumps(spec.to_dict()))
        seconds = run.seconds
    if eval_lam is not None:
        evaluation = _evaluate_at(spec, work, eval_lam)
    rm = round_metrics(pd.read_parquet(sorted(work.glob("observations-round*.parquet"))[-1]))
    later = rm[rm["round"] >= 1]
    hit = rm.loc[rm["round_mean_reward"] >= threshold, "n_queries"]
    frontier = work / "frontier.csv"
    tilts = {}
    if frontier.is_file() and eval_lam is None:
        table = pd.read_csv(frontier)
        for _, row in table.iterrows():
            tilts[f"reward@{row['lam']:g}"] = row["mean_reward"]
            tilts[f"validity@{row['lam']:g}"] = row["validity_rate"]
            tilts[f"std@{row['lam']:g}"] = row["surrogate_std"]
    return {
        "method": method,
        "seed": seed,
        "lam": evaluation.get("lam", math.nan),
        **tilts,
        "reward": evaluation["mean_reward"],
        "eval_reward": evaluation.get("eval_mean_reward", math.nan),
        "validity": evaluation["validity_rate"],
        **{k: v for k, v in evaluation["diversity"].items()},
        "query_reward": float(later["round_mean_reward"].mean()) if len(later) else math.nan,
        "top10": float(rm["top10_mean"].iloc[-1]),
        "q_to_threshold": float(hit.iloc[0]) if len(hit) else math.nan,
        "seconds": seconds + evaluation["seconds"],
    }


def _evaluate_at(spec, work: Path, lam: float) -> dict:
    """The final surrogate's fresh samples with the evaluation tilt at ``lam`` (cached)."""
    from dataclasses import replace

    from prefalign.loop.evaluation import evaluate_campaign
    from prefalign.oracles.builtin import answer_in_process

    out = work / f"evaluation-lam{lam:g}.json"
    if out.is_file():
        return json.loads(out.read_text())
    method = spec.method
    eval_sampler = method.eval_sampler
    method = replace(
        method,
        sampler=replace(method.sampler, lam_max=lam),
        eval_sampler=None if eval_sampler is None else replace(eval_sampler, lam_max=lam),
    )
    final = work / f"surrogate-round{spec.rounds - 1}"
    samples = work / f"samples-lam{lam:g}.npz"
    return evaluate_campaign(
        replace(spec, method=method), final, out, samples, runner=answer_in_process
    )


def t_interval(d: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t interval of paired differences."""
    from scipy import stats

    d = d[np.isfinite(d)]
    if d.size < 2:
        return float(d.mean()) if d.size else math.nan, math.nan, math.nan
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, default=_common.CONFIG)
    p.add_argument("--domain", default="digits")
    p.add_argument("--budget", type=int)
    p.add_argument("--k", type=int)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--reference", default="best-of-n")
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--domain-set", dest="domain_sets", action="append", default=[])
    p.add_argument("--user", help="the domain's simulated user (and eval- twin, exact reward)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=_common.DEFAULT_OUT / "levers")
    p.add_argument("--eval-lam", type=float, help="re-evaluate the final surrogates at this tilt")
    args = p.parse_args()
    config = build_config(
        args.config, args.sets, args.domain, args.budget, args.k, args.domain_sets, args.user
    )
    # one task per seed: its methods share the base model's draws (the same files as apart)
    tasks = [
        (config, args.domain, args.methods, s, str(args.out), args.threshold, args.eval_lam)
        for s in args.seeds
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [row for rows in pool.map(run_seed, tasks) for row in rows]
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.eval_lam is None else f"-lam{args.eval_lam:g}"
    df.to_csv(args.out / f"campaigns{suffix}.csv", index=False)
    cols = [
        c
        for c in (
            "lam",
            "reward",
            "eval_reward",
            "validity",
            "n_classes",
            "mean_pairwise_l2",
            "modes_covered",
            "query_reward",
            "top10",
            "q_to_threshold",
            "seconds",
        )
        if c in df
    ]
    pd.set_option("display.width", 200)
    print(df.groupby("method", sort=False)[cols].mean().round(3).to_string())
    if args.reference in set(df["method"]):
        ref = df[df["method"] == args.reference].set_index("seed")
        lines = []
        for method, g in df.groupby("method", sort=False):
            if method == args.reference:
                continue
            g = g.set_index("seed").loc[ref.index]
            for col in ("reward", "query_reward", "q_to_threshold"):
                m, lo, hi = t_interval((g[col] - ref[col]).to_numpy(np.float64))
                lines.append(
                    f"{method:>16s} - {args.reference}: {col:>15s} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                )
        print("\n".join(lines))


if __name__ == "__main__":
    main()
