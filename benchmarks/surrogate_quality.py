"""Which surrogate knows the user best, and knows where it does not: the draft's CNN against the
Gaussian process on the raw pixels and on a fixed random projection, fitted on the same answers.

For each user and seed: ``--answers`` base samples of digits rated by the user, as a campaign's
round 0 would see them, plus the same number of FKC samples tilted by the user's exact reward
(what a campaign that found the preference shows); each surrogate is fitted on them and judged
on fresh draws of both kinds: Pearson and Spearman correlation with the user's reward, the
error on the tilted draws (where the aligned sampler goes), and, for the GP, whether its
posterior std says where it is wrong (the correlation of |error| with the std, and the
calibration: the share of errors within two std).

    python benchmarks/surrogate_quality.py --model-dir models/digits \\
        --users thick-3 slant-7 wide-1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from scipy import stats

SURROGATES = {
    "cnn": {"arch": "cnn", "hidden": 32, "layers": 3, "epochs": 200, "lr": 0.003},
    "gp-raw": {"arch": "gp"},
    "gp-proj16": {"arch": "gp", "features": "projection", "feature_dim": 16},
    "gp-proj32": {"arch": "gp", "features": "projection", "feature_dim": 32},
    "gp-network": {
        "arch": "gp",
        "features": "network",
        "hidden": 32,
        "layers": 3,
        "epochs": 200,
        "lr": 0.003,
    },
    "gp-network-raw": {
        "arch": "gp",
        "features": "network-raw",
        "hidden": 32,
        "layers": 3,
        "epochs": 200,
        "lr": 0.003,
    },
    "cnn-ensemble5": {
        "arch": "cnn",
        "hidden": 32,
        "layers": 3,
        "epochs": 200,
        "lr": 0.003,
        "ensemble": 5,
    },
}


def draws(domain, n: int, seed: int, reward=None, lam: float = 0.0) -> np.ndarray:
    from prefalign.sampling import SamplerConfig, sample

    variant = "fkc" if reward is not None else "base"
    result = sample(
        domain.score,
        domain.sde,
        n,
        tuple(domain.event_shape),
        reward=reward,
        config=SamplerConfig(variant=variant, n_steps=50, lam_max=lam),
        generator=torch.Generator().manual_seed(seed),
    )
    return result.x.numpy()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", default="models/digits")
    p.add_argument("--users", nargs="+", default=["thick-3"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--answers", type=int, default=60, help="base and tilted answers each")
    p.add_argument("--lam", type=float, default=16.0, help="tilt of the tilted draws")
    p.add_argument("--out", default=None, help="CSV of the per-seed rows")
    p.add_argument("--only", nargs="+", help="surrogates to compare (default: all)")
    args = p.parse_args()

    from prefalign.domains import get_domain
    from prefalign.learning.surrogate import fit
    from prefalign.settings import SurrogateConfig

    torch.set_num_threads(1)
    domain = get_domain("digits", {"model_dir": args.model_dir})
    rows = []
    for user_name in args.users:
        user = domain.oracle(user_name)
        for seed in args.seeds:
            n = args.answers
            train = np.concatenate(
                [
                    draws(domain, n, 1000 + seed),
                    draws(domain, n, 2000 + seed, user.torch, args.lam),
                ]
            )
            test_base = draws(domain, 256, 3000 + seed)
            test_tilt = draws(domain, 256, 4000 + seed, user.torch, args.lam)
            y = np.asarray(user(train), dtype=np.float64)
            for name, settings in SURROGATES.items():
                if args.only and name not in args.only:
                    continue
                start = time.perf_counter()
                surrogate, _ = fit(train, y, SurrogateConfig(**settings), seed=seed)
                seconds = time.perf_counter() - start
                row = {"user": user_name, "seed": seed, "surrogate": name, "fit_s": seconds}
                for label, x in (("base", test_base), ("tilted", test_tilt)):
                    r = np.asarray(user(x), dtype=np.float64)
                    with torch.no_grad():
                        mean, std = surrogate.predict(torch.as_tensor(x, dtype=torch.float32))
                    mean, std = mean.double().numpy(), std.double().numpy()
                    row[f"pearson_{label}"] = float(np.corrcoef(mean, r)[0, 1])
                    row[f"spearman_{label}"] = float(stats.spearmanr(mean, r).statistic)
                    row[f"rmse_{label}"] = float(np.sqrt(np.mean((mean - r) ** 2)))
                    if name.startswith("gp") or "ensemble" in name:
                        error = np.abs(mean - r)
                        row[f"std_vs_error_{label}"] = float(stats.spearmanr(std, error).statistic)
                        row[f"within_2std_{label}"] = float(np.mean(error <= 2 * std))
                rows.append(row)
                print(
                    f"{user_name} seed {seed} {name:10s} fit {seconds:5.1f}s  "
                    f"spearman base {row['spearman_base']:.3f} tilted {row['spearman_tilted']:.3f}"
                    f"  rmse tilted {row['rmse_tilted']:.3f}",
                    flush=True,
                )
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    cols = [c for c in df.columns if c not in ("user", "seed", "surrogate")]
    pd.set_option("display.width", 250)
    print(df.groupby(["user", "surrogate"], sort=False)[cols].mean().round(3).to_string())
    print(df.groupby("surrogate", sort=False)[cols].mean().round(3).to_string())


if __name__ == "__main__":
    main()
