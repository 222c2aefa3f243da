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

StrPath = str | os.PathLike[str]
_ROUND = re.compile(r"round(\d+)$")
#: The benchmark files (named after their rules) of a campaign outside its rounds.
CAMPAIGN_RULES = ("spec", "evaluate")
#: The benchmark files of one round; round 0's ``cold_start`` writes ``propose.tsv`` like the
#: rounds after it. An oracle command (a person's page, a script) answers in a ``query`` job of
#: its own; a built-in user answers and is observed in one ``answer`` job.
ROUND_RULES = {"command": ("propose", "query", "observe"), "builtin": ("propose", "answer")}
#: Every rule with a benchmark file, in the order a campaign runs them.
RULE_ORDER = ("spec", "propose", "query", "observe", "answer", "evaluate")


_COLUMNS = ["domain", "method", "seed", "round", "rule", "seconds", "max_rss_mb"]
_SEED = re.compile(r"seed(\d+)$")


def _job_row(tsv: Path, domain: str, method: str, seed: int) -> dict:
    match = _ROUND.match(tsv.parent.name)
    bench = pd.read_csv(tsv, sep="\t")
    if bench.empty or "s" not in bench:
        raise ValueError(f"benchmark file {tsv} has no 's' column")
    rss = pd.to_numeric(bench.get("max_rss", np.nan), errors="coerce")
    return {
        "domain": domain,
        "method": method,
        "seed": int(seed),
        "round": int(match.group(1)) if match else np.nan,
        "rule": tsv.stem,
        "seconds": float(bench["s"].iloc[0]),
        "max_rss_mb": float(np.nanmax(rss)) if len(rss) else np.nan,
    }


def load_benchmark_files(paths: Iterable[StrPath]) -> pd.DataFrame:
    """One row per job: domain, method, seed, round (NaN outside rounds), rule, seconds,
    max_rss_mb, from Snakemake benchmark files, each
    ``.../<domain>/<method>/seed<s>/[round<r>/]<rule>.tsv`` (what the workflow's ``aggregate``
    rule declares as its inputs); the campaign is read from the path."""
    rows = []
    for path in sorted(Path(p) for p in paths):
        parts = path.parts[:-2] if _ROUND.match(path.parent.name) else path.parts[:-1]
        seed = _SEED.match(parts[-1]) if len(parts) >= 3 else None
        if seed is None:
            raise ValueError(
                f"benchmark file {path} is not .../<domain>/<method>/seed<s>/[round<r>/]<rule>.tsv"
            )
        rows.append(_job_row(path, parts[-3], parts[-2], int(seed.group(1))))
    return pd.DataFrame(rows, columns=_COLUMNS)


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
    # imported here: the workflow's plan imports this module for CAMPAIGN_RULES and ROUND_RULES,
    # and every Snakemake process would pay for matplotlib, seaborn and scipy.stats (1-2 s)
    from matplotlib.figure import Figure

    from prefalign.reporting.figures import DPI, method_palette

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
