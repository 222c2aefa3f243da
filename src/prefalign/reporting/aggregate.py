"""One experiment's campaigns (every method × seed) aggregated into its figures, tables and
results-page section: what the workflow's ``aggregate`` rule writes."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from prefalign.reporting import comparison, cost, figures, frontier, metrics, tables
from prefalign.reporting.results_page import write_section

StrPath = str | os.PathLike[str]


def final_metrics_json(table: pd.DataFrame) -> dict:
    """The final table as ``{domain: {method: {metric: value}}}`` (DVC's metrics file), without
    missing values."""
    nested: dict = {}
    for row in table.to_dict(orient="records"):
        values = {k: v for k, v in row.items() if k not in ("domain", "method") and v == v}
        nested.setdefault(row["domain"], {})[row["method"]] = values
    return nested


def write_cost(benchmarks: Sequence[StrPath], tables_dir: Path, figures_dir: Path) -> None:
    """E4: wall time per rule and per round of the experiment's campaigns, from their jobs'
    Snakemake benchmark files."""
    jobs = cost.load_benchmark_files(benchmarks)
    per_rule, per_round = cost.cost_tables(jobs)
    jobs.to_csv(tables_dir / "cost_jobs.csv", index=False)
    for name, frame in (("cost_per_rule", per_rule), ("cost_per_round", per_round)):
        frame.to_csv(tables_dir / f"{name}.csv", index=False)
        (tables_dir / f"{name}.md").write_text(frame.to_markdown(index=False, floatfmt=".2f"))
    cost.plot_cost(jobs, figures_dir / "cost.png")


def copy_sample_plots(evaluations: Sequence[StrPath], figures_dir: Path) -> dict[str, Path]:
    """The first seed's final-sample picture of each method, copied beside the figures for the
    page: ``{"domain / method": path}``."""
    plots: dict[str, Path] = {}
    records = [json.loads(Path(p).read_text()) | {"path": p} for p in evaluations]
    for record in sorted(records, key=lambda r: r["seed"]):
        key = f"{record['domain']} / {record['method']}"
        src = Path(record["path"]).with_suffix("") / "samples.png"  # seed0.json -> seed0/
        if key not in plots and src.is_file():
            plots[key] = figures_dir / f"samples_{record['domain']}_{record['method']}.png"
            shutil.copyfile(src, plots[key])
    return plots


def query_rewards_files(evaluations: Sequence[StrPath]) -> dict[tuple[str, int], Path]:
    """``{(campaign, seed): query_rewards.csv}`` of the evaluations that wrote one (beside their
    samples: ``seed0.json`` -> ``seed0/query_rewards.csv``)."""
    found = {}
    for p in evaluations:
        record = json.loads(Path(p).read_text())
        path = Path(p).with_suffix("") / "query_rewards.csv"
        if path.is_file():
            found[(str(record["campaign"]), int(record["seed"]))] = path
    return found


def aggregate_experiment(
    observations: Sequence[StrPath],
    evaluations: Sequence[StrPath],
    out: StrPath,
    *,
    threshold: float,
    benchmarks: Sequence[StrPath],
    reference: str = "best-of-n",
    title: str | None = None,
    page_dir: StrPath = "results",
) -> Path:
    """Write ``out/figures/`` (reward vs queries, final metrics, cost, sample pictures),
    ``out/tables/`` (final, paired differences against ``reference``, round metrics, cost) and
    ``out/section.md``; returns the section's path."""
    out = Path(out)
    figures_dir, tables_dir = out / "figures", out / "tables"
    figures_dir.mkdir(parents=True, exist_ok=True)
    tables_dir.mkdir(parents=True, exist_ok=True)
    rounds = metrics.campaign_round_metrics(
        observations, query_rewards=query_rewards_files(evaluations)
    )
    rounds.to_csv(tables_dir / "round_metrics.csv", index=False)
    evals = comparison.load_evaluations(evaluations)
    evals.to_csv(tables_dir / "evaluations.csv", index=False)
    table = comparison.final_table(evals, rounds, threshold=threshold)
    tables.write_tables(table, tables_dir / "final")
    per_seed = comparison.per_seed_table(evals, rounds, threshold=threshold)
    paired = comparison.paired_differences(per_seed, reference)
    tables.write_paired_table(paired, tables_dir / "paired")
    nested = final_metrics_json(table)
    (tables_dir / "final_metrics.json").write_text(
        json.dumps(nested, indent=2, default=float) + "\n"
    )
    figures.plot_learning_curves(rounds, figures_dir / "reward_vs_queries.png")
    figures.plot_final_metrics(evals, figures_dir / "final_metrics.png")
    frontier.write_frontier(evaluations, reference, tables_dir, figures_dir)
    write_cost(benchmarks, tables_dir, figures_dir)
    section = out / "section.md"
    write_section(
        section,
        title=title or out.name,
        experiment_dir=out,
        evaluations=evals,
        sample_plots=copy_sample_plots(evaluations, figures_dir),
        page_dir=page_dir,
    )
    return section
