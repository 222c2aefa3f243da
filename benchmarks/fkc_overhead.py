"""Wall-time ratio of one `fkc` sampling run to one `base` run, same particles and steps.

Both are measured side by side in this one process, alternating, and the ratio of medians is
printed. Usage: python benchmarks/fkc_overhead.py [--n 4096] [--steps 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prefalign.domains.mixture2d import Mixture2D
from prefalign.fkc import SamplerConfig, sample


def _time(domain: Mixture2D, config: SamplerConfig, n: int, reward) -> float:
    start = time.perf_counter()
    sample(
        domain.score,
        domain.sde,
        n,
        domain.event_shape,
        reward=reward,
        config=config,
        generator=torch.Generator().manual_seed(0),
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    domain = Mixture2D()
    reward = domain.preference("one-mode").torch
    configs = {
        "base": SamplerConfig(variant="base", n_steps=args.steps),
        "fkc": SamplerConfig(variant="fkc", n_steps=args.steps, lam_max=8.0),
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    _time(domain, configs["fkc"], 64, reward)  # warm-up
    for _ in range(args.repeats):
        for name, config in configs.items():
            times[name].append(_time(domain, config, args.n, reward))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"mixture2d, N={args.n}, steps={args.steps}, threads={args.threads}, repeats={args.repeats}"
    )
    for name, t in med.items():
        print(f"  {name:5s} median {t:.3f} s")
    print(f"fkc / base wall-time ratio: {med['fkc'] / med['base']:.2f}")


if __name__ == "__main__":
    main()
