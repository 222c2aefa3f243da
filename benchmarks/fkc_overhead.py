"""FKC overhead: wall time of one ``fkc`` sampling round over one ``base`` round, same model, N
and steps, on mixture2d (exact mixture score) and digits (the trained UNet score).

The reward of the ``fkc`` round is what a round uses: a surrogate from
:func:`prefalign.learning.surrogate.fit` (the config's MLP on mixture2d, its CNN on digits) fitted to base
samples answered by the config's simulated user. Both variants run in this process, alternating,
and the ratio of medians is printed (goal: at most 1.5 on CPU and on a GPU).

Usage: python benchmarks/fkc_overhead.py [--domain mixture2d|digits|both] [--quick]
       [--device cpu|cuda]   (the model, the surrogate, the particles and the noise there)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_OUT,
    digits_model,
    fitted_surrogate,
    goal_text,
    interleaved,
    load_config,
    median,
    section,
)

GOAL = 1.5


@dataclass(frozen=True)
class OverheadCase:
    """One overhead measurement: domain, particles, steps, timed repetitions per variant."""

    domain: str
    n: int
    steps: int
    repeats: int
    lam_max: float = 8.0  # config/config.yaml


def full_cases() -> list[OverheadCase]:
    """The sizes of the issue: mixture2d N=4096, digits N=256, both 100 steps."""
    return [OverheadCase("mixture2d", 4096, 100, 9), OverheadCase("digits", 256, 100, 3)]


def quick_cases() -> list[OverheadCase]:
    """Tiny sizes for the smoke test."""
    return [OverheadCase("mixture2d", 256, 10, 2), OverheadCase("digits", 16, 4, 2)]


def build_domain(name: str, model_dir: Path | None, device: str = "cpu"):
    """The domain object on ``device`` (the digits one loads the UNet from ``model_dir``)."""
    from prefalign.domains import get_domain

    return get_domain(name, {"model_dir": str(model_dir)} if name == "digits" else {}, device)


def measure(case: OverheadCase, model_dir: Path | None, device: str = "cpu") -> dict:
    """Time ``base`` and ``fkc`` side by side; returns medians and their ratio.

    On mixture2d a third case, ``fkc`` tilted by the simulated user's exact differentiable reward
    (the ``true-reward`` upper bound; a few elementwise ops), separates the sampler's own
    overhead from the cost of the surrogate's forward and backward pass."""
    from prefalign.runtime import device_generator, resolve_device
    from prefalign.sampling import SamplerConfig, sample

    device = resolve_device(device)
    domain = build_domain(case.domain, model_dir, device)
    surrogate = fitted_surrogate(domain, case.domain, n=64, steps=case.steps, device=device)
    rewards = {"base": None, "fkc": surrogate}
    if hasattr(domain, "preference"):
        user = load_config()["domains"][case.domain]["oracle"][-1]
        rewards["fkc-exact"] = domain.preference(user).torch
    configs = {
        v: SamplerConfig(
            variant="base" if v == "base" else "fkc", n_steps=case.steps, lam_max=case.lam_max
        )
        for v in rewards
    }

    def run(variant: str) -> None:
        sample(
            domain.score,
            domain.sde,
            case.n,
            tuple(domain.event_shape),
            reward=rewards[variant],
            config=configs[variant],
            generator=device_generator(0, device),
            device=device,
        )  # its last read of the device waits for the GPU's queue: the time is the work's

    times = interleaved({v: (lambda v=v: run(v)) for v in configs}, case.repeats)
    med = {v: median(t) for v, t in times.items()}
    result = {
        "domain": case.domain,
        "device": str(device),
        "n": case.n,
        "steps": case.steps,
        "repeats": case.repeats,
        "base_s": med["base"],
        "fkc_s": med["fkc"],
        "ratio": med["fkc"] / med["base"],
    }
    if "fkc-exact" in med:
        result["fkc_exact_s"] = med["fkc-exact"]
        result["ratio_exact_reward"] = med["fkc-exact"] / med["base"]
    return result


def report(results: list[dict]) -> None:
    """Print one line per domain (two on mixture2d)."""
    for r in results:
        print(
            f"{r['domain']:9s} {r.get('device', 'cpu')} N={r['n']:5d} steps={r['steps']:3d} "
            f"repeats={r['repeats']}: "
            f"base {r['base_s']:.3f} s, fkc {r['fkc_s']:.3f} s (medians) -> "
            f"fkc/base = {r['ratio']:.2f}  (goal <= {GOAL}: {goal_text(r['ratio'], GOAL)})",
            flush=True,
        )
        if "ratio_exact_reward" in r:
            print(
                f"{'':9s} same run, fkc tilted by the exact user reward instead of the surrogate: "
                f"{r['fkc_exact_s']:.3f} s -> fkc-exact/base = {r['ratio_exact_reward']:.2f} "
                f"(the sampler's own overhead; the rest is the surrogate's forward + backward)",
                flush=True,
            )


def run_section(
    *,
    quick: bool,
    out: Path,
    model_dir: Path | None = None,
    domains: tuple[str, ...] = (),
    device: str = "cpu",
) -> list[dict]:
    """Section 1 of ``run_all.py``: both domains (or ``domains``)."""
    section("1. FKC overhead: one fkc round / one base round (same model, N, steps)")
    cases = quick_cases() if quick else full_cases()
    results = []
    for case in cases:
        if domains and case.domain not in domains:
            continue
        mdir = (
            digits_model(out, quick=quick, model_dir=model_dir) if case.domain == "digits" else None
        )
        results.append(measure(case, mdir, device))
        report(results[-1:])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=["mixture2d", "digits", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where models are cached")
    parser.add_argument("--model-dir", type=Path, help="a trained digits DDPM to use")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    domains = () if args.domain == "both" else (args.domain,)
    run_section(
        quick=args.quick,
        out=args.out,
        model_dir=args.model_dir,
        domains=domains,
        device=args.device,
    )


if __name__ == "__main__":
    main()
