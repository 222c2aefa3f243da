"""Compute cost of a run, read from Snakemake's ``benchmark:`` files (experiment E4).

Every rule writes ``results/benchmarks/<domain>/<method>/seed<s>/[round<r>/]<rule>.tsv`` with the
job's wall time (``s``) and peak memory (``max_rss``, MB).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prefalign.reporting.figures import DPI, method_palette

StrPath = str | os.PathLike[str]
_ROUND = re.compile(r"round(\d+)$")
#: The workflow's rules in the order a campaign runs them, both layouts (``fuse_steps``).
RULE_ORDER = (
    "spec", "cold_start", "propose", "fit", "sample", "select", "oracle", "observe",
    "fit_final", "evaluate",
)  # fmt: skip


def load_benchmarks(root: StrPath, campaigns: Iterable[tuple[str, str, int]]) -> pd.DataFrame:
    """One row per job of the given campaigns: domain, method, seed, round (NaN outside
    rounds), rule, seconds, max_rss_mb."""
    rows = []
    for domain, method, seed in campaigns:
        base = Path(root) / domain / method / f"seed{seed}"
        for tsv in sorted(base.rglob("*.tsv")):
            match = _ROUND.match(tsv.parent.name)
            bench = pd.read_csv(tsv, sep="\t")
            if bench.empty or "s" not in bench:
                raise ValueError(f"benchmark file {tsv} has no 's' column")
            rss = pd.to_numeric(bench.get("max_rss", np.nan), errors="coerce")
            rows.append(
                {
                    "domain": domain,
                    "method": method,
                    "seed": int(seed),
                    "round": int(match.group(1)) if match else np.nan,
                    "rule": tsv.stem,
                    "seconds": float(bench["s"].iloc[0]),
                    "max_rss_mb": float(np.nanmax(rss)) if len(rss) else np.nan,
                }
            )
    return pd.DataFrame(
        rows, columns=["domain", "method", "seed", "round", "rule", "seconds", "max_rss_mb"]
    )


def cost_tables(jobs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per rule: mean/median/total seconds and peak memory per domain, method and rule;
    per round: mean and max seconds of one whole round, summed over its jobs)."""
    per_rule = (
        jobs.groupby(["domain", "method", "rule"])
        .agg(
            jobs=("seconds", "size"),
            mean_s=("seconds", "mean"),
            median_s=("seconds", "median"),
            total_s=("seconds", "sum"),
            peak_rss_mb=("max_rss_mb", "max"),
        )
        .reset_index()
    )
    rounds = jobs.dropna(subset=["round"])
    per_round = rounds.groupby(["domain", "method", "seed", "round"])["seconds"].sum().reset_index()
    per_round = (
        per_round.groupby(["domain", "method"])["seconds"]
        .agg(rounds="size", mean_round_s="mean", max_round_s="max")
        .reset_index()
    )
    return per_rule, per_round


def plot_cost(jobs: pd.DataFrame, path: StrPath) -> Path:
    """Mean wall time per rule and method (bars), one panel per domain."""
    path = Path(path)
    domains = sorted(jobs["domain"].unique()) or ["(none)"]
    methods = sorted(jobs["method"].unique())
    rules = [r for r in RULE_ORDER if r in set(jobs["rule"])]
    palette = method_palette(methods)
    fig = Figure(figsize=(7, 2.6 * len(domains)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(domains), 1, squeeze=False)[:, 0]
    width = 0.8 / max(len(methods), 1)
    for ax, domain in zip(axes, domains, strict=True):
        part = jobs[jobs["domain"] == domain]
        for i, method in enumerate(methods):
            means = [
                part[(part["method"] == method) & (part["rule"] == r)]["seconds"].mean()
                for r in rules
            ]
            ax.bar(
                np.arange(len(rules)) + i * width, means, width, label=method, color=palette[method]
            )
        ax.set_xticks(np.arange(len(rules)) + 0.4 - width / 2, rules)
        ax.set_ylabel("mean wall time per job (s)")
        ax.set_title(domain, fontsize=10)
    axes[0].legend(fontsize=8, ncols=min(len(methods), 4), loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
