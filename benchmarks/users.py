"""How rare each simulated digits user's preference is under the base model: the users of a
study must be chosen before any method is tuned, and a preference most base samples already
satisfy lets every method tie.

For each user: the share of base samples (FKC untilted, the campaigns' 50 steps) and of real
held-out digits whose reward is above 0.9 and 0.5, and the mean reward.

    python benchmarks/users.py --model-dir models/digits --n 1024 \\
        --users thick-3 slant-7 wide-1 thin-8 slant-4 wide-0
    python benchmarks/users.py --family digits-style --n 4096 --seed 1   # every style-K

``--family digits-style`` measures every ``{style}-{K}`` and marks the tastes the family keeps
(at most ``MAX_BASE_SHARE`` of base samples above 0.5; prefalign.oracles.population).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", default="models/digits")
    p.add_argument("--n", type=int, default=1024, help="base samples")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", nargs="+")
    p.add_argument("--family", help="measure every style-K user of a digits family instead")
    args = p.parse_args()
    from prefalign.domains.digits import STYLES
    from prefalign.oracles.population import FAMILIES, MAX_BASE_SHARE

    if args.family:
        if FAMILIES[args.family].domain_type != "digits":
            p.error("--family measures digits families")
        args.users = [f"{style}-{k}" for style in STYLES for k in range(10)]
    elif not args.users:
        p.error("give --users or --family")

    from prefalign.domains import get_domain
    from prefalign.domains.digits import digit_split
    from prefalign.sampling import SamplerConfig, sample

    torch.set_num_threads(1)
    domain = get_domain("digits", {"model_dir": args.model_dir})
    result = sample(
        domain.score,
        domain.sde,
        args.n,
        tuple(domain.event_shape),
        config=SamplerConfig(variant="base", n_steps=args.steps),
        generator=torch.Generator().manual_seed(args.seed),
    )
    base = result.x.numpy()
    valid = domain.is_valid(base)
    real = digit_split("heldout").images
    print(f"base samples: {len(base)} ({valid.mean():.1%} valid); real held-out: {len(real)}")
    print(f"{'user':>10s} {'base>0.9':>9s} {'base>0.5':>9s} {'mean':>6s} {'real>0.9':>9s}")
    for name in args.users:
        user = domain.oracle(name)
        r, q = np.asarray(user(base)), np.asarray(user(real))
        mark = ""
        if args.family:
            rare = (r > 0.5).mean() <= MAX_BASE_SHARE
            kept = name in FAMILIES[args.family].tastes
            mark = f" {'rare' if rare else 'common'}{' (kept)' if kept else ''}"
        print(
            f"{name:>10s} {(r > 0.9).mean():9.2%} {(r > 0.5).mean():9.2%} {r.mean():6.3f} "
            f"{(q > 0.9).mean():9.2%}{mark}"
        )


if __name__ == "__main__":
    main()
