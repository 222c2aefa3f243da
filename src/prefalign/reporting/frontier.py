"""The tilt frontier: what each method's questions taught the sampler the user takes home, at
every tilt of the final evaluation's grid (``final_tilt.lams``), beside the user's exact reward
on the same grid (``true-reward``).

A single tilt can hide what matters: at a weak tilt every method's fresh samples look alike, and
at a strong one a surrogate that is wrong where it extrapolates sends the particles off the data
manifold (reward hacking). Each campaign's evaluation writes ``frontier.csv`` (one row per tilt,
the trusted one flagged); this module aggregates them over seeds into a table, paired
differences against a reference method at each tilt, and a figure of fresh-sample reward and
validity against the tilt.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prefalign.reporting.comparison import paired_differences
from prefalign.reporting.figures import _caption, _save, _style, method_palette
from prefalign.reporting.metrics import MetricsError, ci95

StrPath = str | os.PathLike[str]

#: Columns of the frontier that are aggregated over seeds.
FRONTIER_METRICS = ("mean_reward", "eval_mean_reward", "validity_rate", "surrogate_std")
#: The method whose frontier is the user's exact reward (drawn as the reference line).
EXACT = "true-reward"


def frontier_path(evaluation: StrPath) -> Path:
    """``frontier.csv`` of an evaluation file (``seed0.json`` -> ``seed0/frontier.csv``)."""
    return Path(evaluation).with_suffix("") / "frontier.csv"


def load_frontiers(evaluations: Sequence[StrPath]) -> pd.DataFrame:
    """Every campaign's frontier, one row per (campaign, tilt): domain, method, seed, lam,
    trusted and the metrics; empty when no evaluation has a frontier.

    Raises:
        MetricsError: a frontier file that cannot be read or lacks a column, naming it.
    """
    parts = []
    for p in evaluations:
        path = frontier_path(p)
        if not path.is_file():
            continue
        record = json.loads(Path(p).read_text())
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise MetricsError(f"frontier file {path} cannot be read: {exc}") from exc
        missing = [c for c in ("lam", "trusted", "mean_reward", "validity_rate") if c not in table]
        if missing:
            raise MetricsError(f"frontier file {path} lacks column(s) {missing}")
        table = table.assign(
            domain=str(record["domain"]), method=str(record["method"]), seed=int(record["seed"])
        )
        parts.append(table)
    if not parts:
        return pd.DataFrame(columns=["domain", "method", "seed", "lam", "trusted"])
    return pd.concat(parts, ignore_index=True)


def frontier_table(frontiers: pd.DataFrame) -> pd.DataFrame:
    """Per domain, method and tilt: each metric's mean over seeds and 95% CI half-width, and
    how many seeds' rule trusted that tilt."""
    rows = []
    metrics = [m for m in FRONTIER_METRICS if m in frontiers.columns]
    for (domain, method, lam), g in frontiers.groupby(["domain", "method", "lam"], sort=True):
        row: dict[str, object] = {"domain": domain, "method": method, "lam": float(lam)}
        row["n_seeds"] = int(g["seed"].nunique())
        row["trusted_seeds"] = int(g["trusted"].astype(bool).sum())
        for m in metrics:
            row[m], row[f"{m}_ci95"] = ci95(g[m].to_numpy(np.float64))
        rows.append(row)
    return pd.DataFrame(rows)


def frontier_paired(
    frontiers: pd.DataFrame,
    reference: str,
    metrics: Sequence[str] = ("mean_reward", "validity_rate"),
) -> pd.DataFrame:
    """Each method minus ``reference`` at each tilt, paired by seed: ``n_pairs``,
    ``mean_difference``, the 95% t interval and ``wins``."""
    tables = []
    for lam, part in frontiers.groupby("lam", sort=True):
        table = paired_differences(part, reference, metrics=metrics)
        tables.append(table.assign(lam=float(lam)))
    if not tables:
        return pd.DataFrame()
    paired = pd.concat(tables, ignore_index=True)
    columns = ["domain", "lam", *(c for c in paired.columns if c not in ("domain", "lam"))]
    return paired[columns].sort_values(["domain", "lam"], kind="stable", ignore_index=True)


def ceiling_tilt(table: pd.DataFrame, domain: str, share: float = 0.9) -> float:
    """The smallest tilt of the grid at which the user's exact reward (``true-reward``) reaches
    ``share`` of its best over the grid: how hard the domain's sampler should tilt (NaN without
    the reference)."""
    exact = table[(table["domain"] == domain) & (table["method"] == EXACT)].sort_values("lam")
    if exact.empty:
        return math.nan
    reward = exact["mean_reward"].to_numpy(np.float64)
    reached = exact["lam"].to_numpy(np.float64)[reward >= share * np.nanmax(reward)]
    return float(reached[0])


def _x(lams: np.ndarray) -> np.ndarray:
    """The tilt on a log2(1 + lam) axis: the grid's doublings evenly spaced, 0 included."""
    return np.log2(1.0 + np.asarray(lams, dtype=np.float64))


def plot_frontier(
    frontiers: pd.DataFrame,
    path: StrPath,
    *,
    palette: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Fresh-sample reward and validity against the tilt, one row of panels per domain with a
    grid of tilts (a domain evaluated at one tilt has no frontier to draw; its final table says
    it): a line per method (mean over seeds, 95% band), the user's exact reward dashed, and
    each seed's trusted tilt as a dot. Returns the plotted summary (also written as CSV beside
    the PNG)."""
    summary = frontier_table(frontiers)
    path = Path(path)
    grids = summary.groupby("domain")["lam"].nunique()
    domains = sorted(grids[grids >= 2].index) or sorted(summary["domain"].unique())
    summary = summary[summary["domain"].isin(domains)]
    frontiers = frontiers[frontiers["domain"].isin(domains)]
    methods = sorted(m for m in summary["method"].unique() if m != EXACT)
    colors = dict(palette or method_palette(methods))
    metrics = ("mean_reward", "validity_rate")
    labels = {"mean_reward": "mean reward of fresh samples", "validity_rate": "validity rate"}
    axes_style, context = _style()
    with axes_style, context:
        fig = Figure(figsize=(9.0, 3.0 * len(domains)), layout="constrained")
        axes = fig.subplots(len(domains), len(metrics), squeeze=False)
        for i, domain in enumerate(domains):
            part = summary[summary["domain"] == domain]
            seeds = frontiers[frontiers["domain"] == domain]
            lams = np.sort(part["lam"].unique())
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                for method in [*methods, EXACT]:
                    line = part[part["method"] == method].sort_values("lam")
                    if line.empty:
                        continue
                    x = _x(line["lam"].to_numpy())
                    mean = line[metric].to_numpy(np.float64)
                    half = np.nan_to_num(line[f"{metric}_ci95"].to_numpy(np.float64))
                    exact = method == EXACT
                    color = "#222222" if exact else colors[method]
                    ax.plot(x, mean, color=color, lw=2, ls="--" if exact else "-", label=method)
                    ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.15, lw=0)
                    trusted = seeds[(seeds["method"] == method) & seeds["trusted"].astype(bool)]
                    if not exact and len(trusted):
                        ax.scatter(
                            _x(trusted["lam"].to_numpy()),
                            trusted[metric],
                            color=color,
                            edgecolor="white",
                            s=28,
                            zorder=3,
                        )
                ax.set_xticks(_x(lams), [f"{v:g}" for v in lams])
                ax.set_xlabel("tilt λ" if i == len(domains) - 1 else "")
                ax.set_ylabel(labels[metric])
                if metric == "validity_rate":
                    ax.set_ylim(-0.02, 1.02)
                ax.set_title(domain if j == 0 else "", loc="left", fontweight="bold")
        legend: dict[str, object] = {}  # every method of every domain, once
        for ax in axes.flat:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(name, handle)
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="outside right upper",
            frameon=False,
            title="method",
        )
        _caption(
            fig,
            "lines: mean over seeds, bands: 95% CI (Student t); dots: each seed at its trusted "
            f"tilt; dashed: the user's exact reward ({EXACT})",
            left=True,
        )
        _save(fig, path, summary)
    return summary


def _cell(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f}" if not math.isfinite(half) else f"{mean:.3f} ± {half:.3f}"


def frontier_markdown(table: pd.DataFrame, paired: pd.DataFrame) -> str:
    """A Markdown table per domain: a row per tilt, per method the fresh-sample reward and
    validity (mean ± 95% CI) and, for methods other than the reference, the paired difference of
    the reward with its interval and wins; ``*`` marks the tilts some seeds trusted."""
    blocks = []
    for domain, part in table.groupby("domain", sort=True):
        methods = sorted(part["method"].unique(), key=lambda m: (m == EXACT, m))
        header = ["λ"] + [f"{m}: reward / validity" for m in methods]
        pairs = paired[paired["domain"] == domain] if len(paired) else paired
        reference = str(pairs["reference"].iloc[0]) if len(pairs) else None
        compared = sorted(pairs["method"].unique()) if len(pairs) else []
        header += [f"{m} − {reference}: reward" for m in compared]
        lines = [f"**{domain}**", ""]
        ceiling = ceiling_tilt(table, domain)
        if math.isfinite(ceiling):
            lines += [
                f"The user's exact reward reaches 90 % of its best over the grid at λ = "
                f"{ceiling:g}.",
                "",
            ]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for lam, rows in part.groupby("lam", sort=True):
            by = rows.set_index("method")
            cells = [f"{lam:g}"]
            for m in methods:
                if m not in by.index:
                    cells.append("n/a")
                    continue
                r = by.loc[m]
                star = "*" if r["trusted_seeds"] else ""
                cells.append(
                    f"{_cell(r['mean_reward'], r['mean_reward_ci95'])} / "
                    f"{r['validity_rate']:.2f}{star}"
                )
            for m in compared:
                d = pairs[
                    (pairs["method"] == m)
                    & (pairs["lam"] == lam)
                    & (pairs["metric"] == "mean_reward")
                ]
                if d.empty or not math.isfinite(d["mean_difference"].iloc[0]):
                    cells.append("n/a")
                    continue
                r = d.iloc[0]
                interval = (
                    f" [{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}]"
                    if math.isfinite(r["ci95_low"])
                    else ""
                )
                cells.append(f"{r['mean_difference']:+.3f}{interval} ({r['wins']}/{r['n_pairs']})")
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_frontier(
    evaluations: Sequence[StrPath], reference: str, tables_dir: Path, figures_dir: Path
) -> bool:
    """The frontier's table (``frontier.{csv,md}``), paired differences
    (``frontier_paired.csv``) and figure (``frontier.png``) of an experiment whose campaigns
    were evaluated on a grid of tilts; False (and nothing written) when each was evaluated at
    one tilt only."""
    frontiers = load_frontiers(evaluations)
    if frontiers.empty or frontiers["lam"].nunique() < 2:  # one tilt: the final table says it
        return False
    table = frontier_table(frontiers)
    paired = frontier_paired(frontiers, reference)
    table.to_csv(tables_dir / "frontier.csv", index=False)
    paired.to_csv(tables_dir / "frontier_paired.csv", index=False)
    (tables_dir / "frontier.md").write_text(frontier_markdown(table, paired))
    plot_frontier(frontiers, figures_dir / "frontier.png")
    return True
