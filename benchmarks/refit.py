"""Surrogate refit: warm start (each round's fit starts from the previous round's weights, the
config's default) against a fit from scratch each round (the config's ``from-scratch`` method),
and a warm start with a third of the epochs.

Each arm is a short ``fkc-al`` campaign of the config (its budget, k, N, sampler, surrogate) run
in this process through the round functions; the arms of a seed run one after another, in an
order that alternates with the seed. For each arm:

- fit time: the sum of the rounds' ``FitReport.seconds``;
- reward reached: the final evaluation of :func:`prefalign.loop.evaluation.evaluate_campaign` (mean oracle
  reward of fresh FKC samples tilted by the last surrogate; no budget spent);
- fit quality: RMSE of the last surrogate against the oracle on held-out points, the evaluation
  samples of all arms of that seed pooled (where the tilted samplers put their mass; no surrogate
  was trained on them).

Usage: python benchmarks/refit.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_OUT,
    campaign_spec,
    digits_model,
    load_config,
    run_rounds,
    section,  # noqa: E402
)

ARMS: tuple[str, ...] = ("scratch", "warm", "warm-1/3")


@dataclass(frozen=True)
class RefitSizes:
    """Seeds per domain and (quick only) shrunken campaigns."""

    seeds: dict[str, tuple[int, ...]]
    overrides: dict | None = None
    n_steps: int | None = None


def full_sizes() -> RefitSizes:
    """3 seeds on mixture2d, 2 on digits, the config's campaigns (budget 40 / 24)."""
    return RefitSizes({"mixture2d": (0, 1, 2), "digits": (0, 1)})


def quick_sizes() -> RefitSizes:
    """Tiny campaigns for the smoke test."""
    small = {"budget": 16, "k": 8, "n_particles": 32, "eval_particles": 16}
    return RefitSizes({"mixture2d": (0,), "digits": (0,)}, small, n_steps=4)


def arm_spec(arm: str, domain: str, seed: int, sizes: RefitSizes, model_dir: Path | None):
    """The campaign of one arm."""
    config = load_config()
    overrides: dict = dict(sizes.overrides or {})
    if domain == "digits":
        overrides["domain_options"] = {"model_dir": str(model_dir)}
    epochs = int(config["domains"][domain].get("surrogate", {}).get("epochs", 200))
    if sizes.overrides:  # quick
        epochs = 6
    method = "from-scratch" if arm == "scratch" else "fkc-al"
    surrogate = {"epochs": epochs if arm != "warm-1/3" else max(1, epochs // 3)}
    overrides["surrogate"] = surrogate
    return campaign_spec(domain, method, seed, overrides=overrides, n_steps=sizes.n_steps)


def run_domain(
    domain: str, sizes: RefitSizes, out: Path, model_dir: Path | None, base_draws
) -> dict:
    """Every arm x seed of one domain."""
    import torch

    from prefalign.learning.checkpoint import load_surrogate
    from prefalign.loop.evaluation import evaluate_campaign
    from prefalign.oracles.builtin import answer_in_process, user_function

    per_arm: dict[str, dict[str, list[float]]] = {
        a: {"fit_s": [], "eval_reward": [], "rmse": []} for a in ARMS
    }
    epochs: dict[str, int] = {}
    _warm_up(domain, sizes, model_dir)
    for i, seed in enumerate(sizes.seeds[domain]):
        order = ARMS if i % 2 == 0 else tuple(reversed(ARMS))
        surrogates: dict[str, Path] = {}
        samples = []
        for arm in order:
            spec = arm_spec(arm, domain, seed, sizes, model_dir)
            epochs[arm] = spec.surrogate.epochs
            wd = out / "refit" / domain / arm / f"seed{seed}"
            run = run_rounds(spec, wd, fit=True, fit_last=True, base_draws=base_draws)
            assert run.surrogate is not None
            evaluation = evaluate_campaign(
                spec,
                run.surrogate,
                wd / "evaluation.json",
                wd / "samples.npz",
                runner=answer_in_process,
            )
            per_arm[arm]["fit_s"].append(run.fit_seconds)
            per_arm[arm]["eval_reward"].append(evaluation["mean_reward"])
            surrogates[arm] = run.surrogate
            with np.load(wd / "samples.npz") as data:
                samples.append(data["x"])
        held_out = np.concatenate(samples)
        truth = user_function(tuple(spec.oracle)).rate(held_out)
        for arm, path in surrogates.items():
            with torch.no_grad():
                pred = load_surrogate(path)(torch.as_tensor(held_out)).double().numpy()
            per_arm[arm]["rmse"].append(float(np.sqrt(np.mean((pred - truth) ** 2))))
    summary = {"domain": domain, "epochs": epochs, "arms": {}, "ratios": {}}
    for arm, values in per_arm.items():
        summary["arms"][arm] = {k: float(np.mean(v)) for k, v in values.items()}
        summary["arms"][arm]["per_seed"] = values
    scratch = summary["arms"]["scratch"]
    for arm in ("warm", "warm-1/3"):
        a = summary["arms"][arm]
        for label, key in (
            ("fit time", "fit_s"),
            ("eval reward", "eval_reward"),
            ("held-out RMSE", "rmse"),
        ):
            summary["ratios"][f"{label} {arm}/scratch"] = _ratio(a[key], scratch[key])
    return summary


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else float("nan")


def _warm_up(domain: str, sizes: RefitSizes, model_dir: Path | None) -> None:
    """One throwaway fit of the domain's surrogate, so that the first arm timed does not pay
    for first-call costs (lazy imports, allocator growth) that the others do not."""
    from prefalign.learning.surrogate import fit

    spec = arm_spec("warm", domain, 0, sizes, model_dir)
    shape = (2,) if domain == "mixture2d" else (1, 8, 8)
    x = np.random.default_rng(0).normal(size=(16, *shape)).astype(np.float32)
    fit(x, x.reshape(16, -1).mean(axis=1), spec.surrogate, seed=0)


def report(summary: dict, n_seeds: int) -> None:
    """Print one domain's arms and ratios."""
    print(f"{summary['domain']}: {n_seeds} seed(s), means over seeds")
    for arm, a in summary["arms"].items():
        print(
            f"  {arm:9s} ({summary['epochs'][arm]:3d} epochs): fit time {a['fit_s']:6.2f} s, "
            f"final eval reward {a['eval_reward']:.3f}, held-out RMSE {a['rmse']:.3f}"
        )
    for name, value in summary["ratios"].items():
        print(f"  {name:30s} = {value:.2f}", flush=True)


def run_section(*, quick: bool, out: Path, model_dir: Path | None = None) -> list[dict]:
    """Section 3 of ``run_all.py``."""
    import torch

    from prefalign.loop.steps import BaseDrawCache

    section("3. Surrogate refit: warm start vs from scratch (time, held-out fit, reward reached)")
    torch.set_num_threads(1)
    sizes = quick_sizes() if quick else full_sizes()
    summaries = []
    draws = BaseDrawCache()  # the arms share their base draws seed by seed
    for domain in ("mixture2d", "digits"):
        mdir = digits_model(out, quick=quick, model_dir=model_dir) if domain == "digits" else None
        summary = run_domain(domain, sizes, out, mdir, draws)
        report(summary, len(sizes.seeds[domain]))
        summaries.append(summary)
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model-dir", type=Path, help="a trained digits DDPM to use")
    args = parser.parse_args()
    run_section(quick=args.quick, out=args.out, model_dir=args.model_dir)


if __name__ == "__main__":
    main()
