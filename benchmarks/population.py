"""What a held-out user is spared by the population prior, at a population size the default run
cannot afford, without the workflow's final evaluations (experiment U1 has those).

Draws a population of the digits-style family (prefalign.oracles.population), runs each
training user's fkc-al campaign in process (the workflow's per-round functions,
prefalign.loop.campaign.run_campaign), fits the prior on their observations, then runs every
held-out user with fkc-al (from nothing) and fkc-al-prior (from the prior), and prints, paired by
user: the mean noiseless reward of each round's questions and the questions until a round's
mean reaches the threshold (unreached: budget + k), with 95 % t intervals over users.

    python benchmarks/population.py --train 100 --held-out 20 --train-budget 16 --budget 40 \\
        --workers 2 --out benchmarks/out/population     # about 25 min on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import yaml
from _common import CONFIG, REPO


def _domain(config: dict, user, budget: int, prior: str | None) -> dict:
    """The user's domain block, as prefalign.loop.population.expand_populations writes it."""
    block = copy.deepcopy(config["domains"]["digits"])
    block.update(
        type="digits",
        budget=budget,
        oracle=list(user.oracle),
        eval_oracle=list(user.eval_oracle),
        true_reward=user.true_reward,
    )
    if prior is not None:
        block["prior"] = prior
    return block


def _campaign(job: tuple) -> dict:
    """One user's campaign in this process; the noiseless reward of every question."""
    config, user, method, budget, prior, out = job
    import torch

    from prefalign.domains import get_oracle
    from prefalign.io.observations import observations_xy, read_observations
    from prefalign.loop.campaign import run_campaign
    from prefalign.loop.spec import campaign_spec
    from prefalign.oracles.builtin import answer_in_process

    torch.set_num_threads(1)
    name = f"u{user.index:03d}"
    config = {**config, "domains": {name: _domain(config, user, budget, prior)}}
    spec = campaign_spec(config, name, method, 0)
    start = time.perf_counter()
    workdir = Path(out) / name / method
    run_campaign(spec, workdir, runner=answer_in_process)
    last = sorted(workdir.glob("observations-round*.parquet"))[-1]
    df, shape = read_observations(last)
    x, _ = observations_xy(df, shape)
    reward = get_oracle("digits", user.true_reward)(x)
    rounds = df["round"].to_numpy()
    return {
        "user": user.index,
        "taste": user.name,
        "method": method,
        "round_mean_reward": [float(reward[rounds == r].mean()) for r in range(spec.rounds)],
        "observations": str(last),
        "seconds": time.perf_counter() - start,
    }


def _to_threshold(curve: list[float], k: int, threshold: float) -> int:
    hits = [i for i, v in enumerate(curve) if v >= threshold]
    return k * (hits[0] + 1) if hits else k * (len(curve) + 1)


def _interval(d: np.ndarray) -> str:
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train", type=int, default=100, help="training users")
    p.add_argument("--held-out", type=int, default=20, help="held-out users")
    p.add_argument("--train-budget", type=int, default=16)
    p.add_argument("--budget", type=int, default=40, help="the held-out users' budget")
    p.add_argument("--seed", type=int, default=0, help="seeds the draw of the users")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "population"))
    args = p.parse_args()

    from prefalign.loop.steps.prior import fit_prior_files
    from prefalign.oracles.population import draw_users

    config = yaml.safe_load(CONFIG.read_text())
    users = draw_users("digits-style", args.train + args.held_out, args.seed, (0.0, 0.1))
    train, held = users[: args.train], users[args.train :]
    out = Path(args.out)
    with Pool(args.workers) as pool:
        start = time.perf_counter()
        jobs = [(config, u, "fkc-al", args.train_budget, None, out) for u in train]
        trained = pool.map(_campaign, jobs)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        report = fit_prior_files(
            [t["observations"] for t in trained], out / "prior", seed=args.seed
        )
        prior_seconds = time.perf_counter() - start
        jobs = [
            (config, u, m, args.budget, str(out / "prior"), out)
            for u in held
            for m in ("fkc-al", "fkc-al-prior")
        ]
        campaigns = pool.map(_campaign, jobs)
    k = config["k"]
    curves = {(c["user"], c["method"]): np.asarray(c["round_mean_reward"]) for c in campaigns}
    ids = [u.index for u in held]
    with_prior = np.stack([curves[(i, "fkc-al-prior")] for i in ids])
    without = np.stack([curves[(i, "fkc-al")] for i in ids])
    q_with = np.array([_to_threshold(list(c), k, args.threshold) for c in with_prior])
    q_without = np.array([_to_threshold(list(c), k, args.threshold) for c in without])
    seen = {u.name: sum(t.name == u.name for t in train) for u in held}
    lines = [
        f"{args.train} training users ({train_seconds:.0f} s of campaigns), prior fitted in "
        f"{prior_seconds:.0f} s: leave-one-user-out log-likelihood per answer "
        f"{report.loo_log_likelihood:.3f} with the population, "
        f"{report.independent_log_likelihood:.3f} without",
        f"{len(held)} held-out users (taste shared by training users: "
        f"{', '.join(f'{t} x{n}' for t, n in sorted(seen.items()))})",
        "questions | mean query reward with prior | without | paired difference [95 % CI]",
    ]
    for r in range(with_prior.shape[1]):
        lines.append(
            f"{k * (r + 1):9d} | {with_prior[:, r].mean():.3f} | {without[:, r].mean():.3f} | "
            f"{_interval(with_prior[:, r] - without[:, r])}"
        )
    lines += [
        f"questions to a round mean >= {args.threshold} (unreached: {k * (without.shape[1] + 1)}):"
        f" with prior {q_with.mean():.1f} ({(q_with <= args.budget).sum()}/{len(ids)} reached),"
        f" without {q_without.mean():.1f} ({(q_without <= args.budget).sum()}/{len(ids)}),"
        f" ratio {q_with.mean() / q_without.mean():.2f}, paired difference "
        f"{_interval((q_with - q_without).astype(float))}",
    ]
    print("\n".join(lines))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    (out / "campaigns.json").write_text(json.dumps(campaigns, indent=1) + "\n")


if __name__ == "__main__":
    main()
