"""Cost of one round of each method and lever against one base round on digits, side by side.

A round is what the workflow's ``propose`` job does: fit the surrogate on the answers so far
(48 answers of base samples, from scratch), sample N particles with the method's sampler tilted
by it, and select k queries. ``best-of-n`` (base samples ranked by the surrogate) is the base
round; every other case is the same round with one lever changed, timed in this process,
alternating the cases, and printed as the ratio of medians. Goals (issue "Feedback efficiency,
decisively"): the default method at most 1.15x, the reward at the denoised estimate at most 2x.

Usage: python benchmarks/lever_cost.py [--quick] [--repeats R] [--only SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_OUT,
    campaign_spec,
    digits_model,
    interleaved,
    median,
    section,
)

GOAL_DEFAULT = 1.15
GOAL_XHAT0 = 2.0
GOAL_NEW = 1.5  # issue 26: each new surrogate and acquisition rule, one round / a base round
#: name -> overrides of the campaign spec's method (over the config's ``fkc-al``)
#: the surrogate of every case unless it says otherwise: the CNN that was digits' default before
#: the GP (issue 26), so that the base round stays the same round across the project's history
CNN_SURROGATE = {"arch": "cnn", "hidden": 32, "layers": 3, "epochs": 200, "lr": 0.003}
LEVERS: dict[str, dict] = {
    "fkc-al, CNN (former default)": {},
    "draft-al (draft's rule)": {"method": {"batch": "top", "explore_from": "tilted"}},
    "fkc-al, k-center batch": {"method": {"batch": "kcenter"}},
    "fkc-al, reward at xhat0": {"method": {"sampler": {"reward_at": "xhat0"}}},
    "fkc-al, Thompson (ensemble of 5)": {
        "method": {"tilt_member": "thompson"},
        "surrogate": {"ensemble": 5},
    },
    "fkc-al, uniform grid, no denoising": {
        "method": {"sampler": {"time_grid": "uniform", "denoise": False}}
    },
    # issue 26: the Gaussian-process surrogate, and questions chosen by information
    "best-of-n, GP surrogate": {"method": "best-of-n", "surrogate": {"arch": "gp"}},
    "fkc-al, GP surrogate (config default)": {"surrogate": {"arch": "gp"}},
    "fkc-info, GP surrogate (explore by information)": {
        "method": {"explore_from": "information"},
        "surrogate": {"arch": "gp"},
    },
}


def _observations(spec, workdir: Path, n_answers: int):
    """A base round of ``n_answers`` queries answered by the config's user: the fit's data."""
    from dataclasses import replace

    from prefalign.loop import steps
    from prefalign.oracles.builtin import answer_in_process

    spec0 = replace(spec, k=n_answers, budget=n_answers)
    d = workdir / "round0"
    d.mkdir(parents=True)
    steps.sample_round(spec0, 0, None, d / "particles.npz")
    steps.select_round(spec0, 0, d / "particles.npz", d / "queries.npz", d / "selection.csv")
    answer_in_process(spec0.oracle, d / "queries.npz", d / "rewards.csv")
    obs = workdir / "observations-round0.parquet"
    steps.observe_round(
        spec0, 0, None, d / "queries.npz", d / "selection.csv", d / "rewards.csv", obs
    )
    return obs


def run_section(
    *,
    quick: bool,
    out: Path,
    model_dir: Path | None = None,
    repeats: int | None = None,
    only: list[str] | None = None,
) -> list[dict]:
    """Section 6 of ``run_all.py``; ``only`` keeps the levers whose names contain one of the
    substrings (the base round always runs), ``repeats`` overrides the timed runs per case."""

    from prefalign.loop import steps
    from prefalign.loop.spec import merge_settings

    section("6. Cost of one round: each method and lever / a base round (best-of-n), digits")
    mdir = digits_model(out, quick=quick, model_dir=model_dir)
    n, n_steps, default_repeats, answers = (32, 5, 1, 16) if quick else (256, 50, 3, 48)
    repeats = repeats or default_repeats
    overrides = {
        "domain_options": {"model_dir": str(mdir)},
        "n_particles": n,
        "k": 12,
        "budget": 120,
        "surrogate": CNN_SURROGATE,
    }
    base = campaign_spec("digits", "best-of-n", 0, overrides={**overrides}, n_steps=n_steps)
    specs = {"base round (best-of-n, CNN)": base}
    for name, change in LEVERS.items():
        if only and not any(part in name for part in only):
            continue
        change = dict(change)
        method = change.pop("method") if isinstance(change.get("method"), str) else "fkc-al"
        specs[name] = campaign_spec(
            "digits",
            method,
            0,
            overrides=merge_settings(overrides, change),
            n_steps=n_steps,
        )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        obs = _observations(base, tmp / "data", answers)

        def one_round(name: str) -> None:
            spec = specs[name]
            d = tmp / name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
            d.mkdir(exist_ok=True)
            steps.fit_round(spec, 0, obs, None, d / "surrogate")
            steps.sample_round(spec, 1, d / "surrogate", d / "particles.npz")
            steps.select_round(
                spec, 1, d / "particles.npz", d / "q.npz", d / "s.csv", d / "surrogate"
            )

        times = interleaved({name: (lambda n=name: one_round(n)) for name in specs}, repeats)
    med = {name: median(t) for name, t in times.items()}
    ref = med["base round (best-of-n, CNN)"]
    results = []
    for name, t in med.items():
        ratio = t / ref
        goal = (
            GOAL_XHAT0
            if "xhat0" in name
            else GOAL_DEFAULT
            if "default" in name
            else GOAL_NEW
            if "GP" in name
            else None
        )
        results.append({"case": name, "seconds": t, "ratio": ratio, "goal": goal})
        note = (
            "" if goal is None else f"  (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})"
        )
        print(f"{name:40s} {t:6.2f} s  x{ratio:.2f}{note}", flush=True)
    print(
        f"(N={n}, {n_steps} steps, fit on {answers} answers, medians of {repeats} alternated runs)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 3)")
    parser.add_argument("--only", nargs="+", help="levers whose names contain one of these")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    np.seterr(all="ignore")
    run_section(
        quick=args.quick,
        out=args.out,
        model_dir=args.model_dir,
        repeats=args.repeats,
        only=args.only,
    )


if __name__ == "__main__":
    main()
