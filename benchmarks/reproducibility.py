"""Do two runs of the same config agree, bit for bit or within the seeds' confidence intervals?

Compares two run folders (each holding ``results/``, e.g. two machines' clones after
``bash scripts/run-main.sh``, or the two sides kept by ``default_run.py --keep``):

- the observation datasets (``results/observations/**.parquet``) they both have: how many are
  identical byte for byte, per domain (same CPU type and versions: all of them), and for each
  campaign that differs, from which step on: the first round whose dataset differs, its first
  differing query (row) and what differs in it, named by the step of the round that wrote it
  (the surrogate's fit, the sampling, the selection, the answer), with the largest difference;
- per experiment, domain and method, the final metrics of ``tables/evaluations.csv`` seed by
  seed: identical, or the paired difference B - A over the seeds with its 95% Student t interval;
  the runs agree statistically when every interval holds 0 (across CPU types the campaigns drift
  apart after a last-digit difference, so that is the claim, README "Reproducibility").

Usage: python benchmarks/reproducibility.py RUN_A RUN_B [--metrics mean_reward validity_rate ...]
Exit status 1 when an interval excludes 0.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.observations import read_observations
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


#: The columns of a round's rows in the order the round's steps write them, with the step:
#: the surrogate round r samples with is fitted first (its prediction on each query), then the
#: particles are sampled (the queries' x and FK weights), selected and put into questions, and
#: last the oracle answers. The first differing column in this order names the earliest step
#: whose output differs.
STEP_OF_COLUMN = (
    ("surrogate_pred", "fit (the surrogate's prediction)"),
    ("x", "sample (the query's x)"),
    ("fk_log_weight", "sample (the query's FK weight)"),
    ("id", "select (which particle)"),
    ("selected_by", "select (why)"),
    ("form", "question form"),
    ("question", "question"),
    ("reward", "answer (the reward)"),
)
_ROUND = re.compile(r"round(\d+)\.parquet$")


@dataclass(frozen=True)
class Divergence:
    """Where two runs' datasets of one campaign first differ."""

    round: int  # the first round whose dataset differs
    row: int | None  # the first differing query of that round (None: a row count or metadata)
    steps: tuple[str, ...]  # the differing columns' steps, earliest first
    largest: float  # the largest absolute difference among the numeric columns of that row
    detail: str  # a sentence

    def __str__(self) -> str:
        return f"differs from round {self.round} on: {self.detail}"


def _rounds(campaign_dir: Path) -> dict[int, Path]:
    found = {}
    for path in campaign_dir.glob("round*.parquet"):
        match = _ROUND.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def _row_difference(ra: pd.Series, rb: pd.Series) -> tuple[list[str], float]:
    steps, largest = [], 0.0
    for column, step in STEP_OF_COLUMN:
        va, vb = ra[column], rb[column]
        if column == "x":
            xa, xb = np.asarray(va, np.float64), np.asarray(vb, np.float64)
            same = xa.shape == xb.shape and np.array_equal(xa, xb, equal_nan=True)
            if not same and xa.shape == xb.shape:
                largest = max(largest, float(np.nanmax(np.abs(xa - xb))))
        elif isinstance(va, float | np.floating):
            same = (np.isnan(va) and np.isnan(vb)) or va == vb
            if not same and np.isfinite(va) and np.isfinite(vb):
                largest = max(largest, abs(float(va) - float(vb)))
        else:
            same = va == vb
        if not same:
            steps.append(step)
    return steps, largest


def first_divergence(campaign_a: Path, campaign_b: Path) -> Divergence | None:
    """The first round, query and step at which one campaign's datasets differ between two
    runs (both runs' rounds compared in order), or None when every round both have is
    identical byte for byte."""
    a, b = _rounds(campaign_a), _rounds(campaign_b)
    for r in sorted(a.keys() & b.keys()):
        if a[r].read_bytes() == b[r].read_bytes():
            continue
        (fa, _), (fb, _) = read_observations(a[r]), read_observations(b[r])
        fa = fa[fa["round"] == r].reset_index(drop=True)
        fb = fb[fb["round"] == r].reset_index(drop=True)
        for i in range(min(len(fa), len(fb))):
            steps, largest = _row_difference(fa.iloc[i], fb.iloc[i])
            if steps:
                detail = (
                    f"query {i} of the round: {', '.join(steps)} differ"
                    + (f" (largest difference {largest:.3g})" if largest else "")
                    + f"; earliest step: {steps[0].split(' ')[0]}"
                )
                return Divergence(r, i, tuple(steps), largest, detail)
        if len(fa) != len(fb):
            return Divergence(r, None, (), 0.0, f"{len(fa)} against {len(fb)} queries")
        return Divergence(r, None, (), 0.0, "the same rows, other file bytes (metadata)")
    return None


def campaign_divergences(a: Path, b: Path) -> dict[str, Divergence | None]:
    """Per campaign (``domain/method/seed<s>``) both runs have: its :func:`first_divergence`."""
    root_a, root_b = a / "observations", b / "observations"
    out: dict[str, Divergence | None] = {}
    for first in sorted(root_a.rglob("round0.parquet")):
        campaign = first.parent.relative_to(root_a)
        if (root_b / campaign).is_dir():
            out[campaign.as_posix()] = first_divergence(first.parent, root_b / campaign)
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
    divergences = campaign_divergences(a, b)
    for campaign, where in divergences.items():
        if where is not None:
            print(f"  {campaign}: {where}")
    if divergences:
        differ = sum(d is not None for d in divergences.values())
        print(
            f"campaigns: {len(divergences) - differ} of {len(divergences)} identical in every "
            f"round, {differ} differ"
        )
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
