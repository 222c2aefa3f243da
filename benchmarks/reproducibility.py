"""Do two runs of the same config agree, bit for bit or within the seeds' confidence intervals?

Compares two run folders (each holding ``results/``, e.g. two machines' clones after
``bash scripts/run-main.sh``, or the two sides kept by ``default_run.py --keep``):

- the observation datasets (``results/observations/**.parquet``) they both have: how many are
  identical byte for byte, per domain (same CPU type and versions: all of them);
- per experiment, domain and method, the final metrics of ``tables/evaluations.csv`` seed by
  seed: identical, or the paired difference B - A over the seeds with its 95% Student t interval;
  the runs agree statistically when every interval holds 0 (across CPU types the campaigns drift
  apart after a last-digit difference, so that is the claim, README "Reproducibility").

Usage: python benchmarks/reproducibility.py RUN_A RUN_B [--metrics mean_reward validity_rate ...]
Exit status 1 when an interval excludes 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.reporting.metrics import ci95

METRICS = ("mean_reward", "validity_rate", "frac_above_threshold")


def results_dir(run: Path) -> Path:
    """``run/results`` when it exists, else ``run`` itself."""
    return run / "results" if (run / "results").is_dir() else run


def compare_observations(a: Path, b: Path) -> dict[str, tuple[int, int]]:
    """Per domain: (identical files, files both runs have)."""
    out: dict[str, tuple[int, int]] = {}
    root_a, root_b = a / "observations", b / "observations"
    for path in sorted(root_a.rglob("*.parquet")):
        rel = path.relative_to(root_a)
        other = root_b / rel
        if not other.is_file():
            continue
        same, total = out.get(rel.parts[0], (0, 0))
        out[rel.parts[0]] = (same + (path.read_bytes() == other.read_bytes()), total + 1)
    return out


def compare_metrics(a: Path, b: Path, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per experiment, domain, method and metric: seeds, identical, mean difference
    B - A and its 95% interval."""
    rows = []
    for table_a in sorted((a / "experiments").glob("*/tables/evaluations.csv")):
        experiment = table_a.parts[-3]
        table_b = b / "experiments" / experiment / "tables" / "evaluations.csv"
        if not table_b.is_file():
            continue
        ea, eb = pd.read_csv(table_a), pd.read_csv(table_b)
        joined = ea.merge(eb, on=["domain", "method", "seed"], suffixes=("_a", "_b"))
        for (domain, method), g in joined.groupby(["domain", "method"], sort=True):
            for m in metrics:
                if f"{m}_a" not in g:
                    continue
                va, vb = g[f"{m}_a"].to_numpy(float), g[f"{m}_b"].to_numpy(float)
                mean, half = ci95(vb - va)
                rows.append(
                    {
                        "experiment": experiment,
                        "domain": domain,
                        "method": method,
                        "metric": m,
                        "seeds": len(g),
                        "identical": bool(np.array_equal(va, vb)),
                        "mean_a": float(np.mean(va)),
                        "mean_b": float(np.mean(vb)),
                        "difference": mean,
                        "ci95_low": mean - half,
                        "ci95_high": mean + half,
                    }
                )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--metrics", nargs="+", default=list(METRICS))
    args = parser.parse_args(argv)
    a, b = results_dir(args.run_a), results_dir(args.run_b)
    for domain, (same, total) in compare_observations(a, b).items():
        print(f"observations {domain}: {same} of {total} datasets identical byte for byte")
    table = compare_metrics(a, b, tuple(args.metrics))
    if table.empty:
        print("no experiment's evaluations.csv in both runs")
        return 0
    disagree = 0
    for r in table.itertuples():
        if r.identical:
            verdict = "identical"
        elif np.isnan(r.ci95_low):
            verdict = "differs (one seed: no interval)"
        else:
            inside = r.ci95_low <= 0.0 <= r.ci95_high
            disagree += not inside
            verdict = "agree within the 95% CI" if inside else "DISAGREE: the 95% CI excludes 0"
        print(
            f"{r.experiment} {r.domain}/{r.method} {r.metric}: A {r.mean_a:.4f}, B {r.mean_b:.4f}, "
            f"B - A {r.difference:+.4f} [{r.ci95_low:+.4f}, {r.ci95_high:+.4f}] over {r.seeds} "
            f"seeds: {verdict}"
        )
    n_identical = int(table["identical"].sum())
    print(
        f"{len(table)} comparisons: {n_identical} identical, {len(table) - n_identical - disagree} "
        f"agree within the seeds' 95% CI, {disagree} disagree"
    )
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
