"""Figures from :mod:`prefalign.reporting.metrics` (tables: :mod:`prefalign.reporting.tables`).

Every figure is written as a PNG (``dpi`` ≥ 120) with the numbers it shows as a CSV beside it
(same path, ``.csv``). Error bands and bars are 95% Student t confidence intervals of the mean over
seeds (:func:`prefalign.reporting.metrics.ci95`) — the same intervals as the tables, not bootstrap: with a
handful of seeds a bootstrap or ``1.96·SE`` interval is far too narrow. Each method keeps its
colour in every figure (:func:`method_palette`).

Figures are built on :class:`matplotlib.figure.Figure` objects, not ``pyplot``: nothing here touches
global state or needs a display, and seaborn styles apply only inside this module's functions.
"""

from __future__ import annotations

import math
import os
import textwrap
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from prefalign.reporting.metrics import LEARNING_CURVE_METRICS, ci95

__all__ = [
    "DPI",
    "METHOD_COLORS",
    "metric_label",
    "method_palette",
    "plot_final_metrics",
    "plot_learning_curves",
    "plot_reward_vs_queries",
]

StrPath = str | os.PathLike[str]

#: Resolution of every PNG.
DPI = 150
#: Colour-blind-safe colours (seaborn's ``colorblind`` palette).
_COLORS = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#d55e00",
    "#cc78bc",
    "#ca9161",
    "#fbafe4",
    "#949494",
    "#ece133",
    "#56b4e9",
)
#: Further distinct colours for methods not in :data:`METHOD_COLORS`.
_EXTRA_COLORS = ("#000000", "#6a3d9a", "#1b7837", "#8c510a", "#b2182b", "#35978f")
#: Fixed colours of the methods we know; add new method names here to pin their colour.
METHOD_COLORS: dict[str, str] = {
    "fkc-al": _COLORS[0],
    "draft-al": _COLORS[1],
    "guidance-al": _COLORS[2],
    "greedy-al": _COLORS[3],
    "ucb-al": _COLORS[4],
    "random": _COLORS[5],
    "base": _COLORS[7],
}
#: Axis labels and table headers of known metrics; others get their name with spaces.
_LABELS = {
    "mean_reward": "mean reward of fresh samples",
    "eval_mean_reward": "mean reward of fresh samples (eval. oracle)",
    "frac_above_threshold": "fraction of fresh samples above threshold",
    "reward_std": "reward std. of fresh samples",
    "validity_rate": "validity rate",
    "round_mean_reward": "mean reward of the round's queries",
    "best_so_far": "best reward so far",
    "top10_mean": "mean of the top-10 rewards so far",
    "final_top10_mean": "final mean of top-10 observed rewards",
    "final_best_so_far": "final best observed reward",
    "queries_to_threshold": "queries to threshold",
    "diversity_n_classes": "digit classes covered",
    "n_queries": "queries",
    "n_seeds": "seeds",
}
_STYLE = {"axes.spines.top": False, "axes.spines.right": False}


def metric_label(name: str) -> str:
    """Human-readable label of a metric column (``diversity_modes_covered`` → "modes covered")."""
    if name in _LABELS:
        return _LABELS[name]
    return name.removeprefix("diversity_").replace("_", " ")


def method_palette(
    methods: Iterable[str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A colour for each method: the same method gets the same colour in every figure.

    Known methods take :data:`METHOD_COLORS`; any other name takes the colour its CRC32 hash
    picks among the colours no known method owns (probing to the next free colour when another
    name of the figure already has it, names in sorted order), so its colour does not depend on
    which other methods a figure shows unless two names collide. ``overrides`` wins over both.
    Pass the same ``overrides`` (or add names to :data:`METHOD_COLORS`) for full control.
    """
    names = sorted(set(map(str, methods)))
    fixed = {**METHOD_COLORS, **(overrides or {})}
    palette = {m: fixed[m] for m in names if m in fixed}
    taken = set(palette.values())
    reserved = set(fixed.values())
    spare = [c for c in (*_COLORS, *_EXTRA_COLORS) if c not in reserved]
    for m in names:
        if m in palette:
            continue
        start = zlib.crc32(m.encode()) % len(spare)
        for c in [*spare[start:], *spare[:start], *_COLORS]:
            if c not in taken:
                palette[m] = c
                break
        else:  # more methods than colours
            palette[m] = spare[start]
        taken.add(palette[m])
    return palette


def _style() -> tuple[object, object]:
    return sns.axes_style("whitegrid", _STYLE), sns.plotting_context("notebook", font_scale=0.85)


def _t_interval(values: pd.Series) -> tuple[float, float]:
    """95% Student t interval of the mean (seaborn ``errorbar`` callable)."""
    mean, half = ci95(values)
    return mean - half, mean + half


def _summarise(df: pd.DataFrame, by: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Long table: ``by``, metric, mean, ci95 (half-width), ci_low, ci_high, n_seeds."""
    rows = []
    for key, g in df.groupby(by, sort=True):
        for m in metrics:
            mean, half = ci95(g[m].to_numpy(np.float64))
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "metric": m,
                    "mean": mean,
                    "ci95": half,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "n_seeds": int(g[m].notna().sum()),
                }
            )
    return pd.DataFrame(rows)


def _save(fig: Figure, path: Path, data: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    data.to_csv(path.with_suffix(".csv"), index=False)


def _legend(fig: Figure, palette: Mapping[str, str], title: str) -> None:
    handles = [Line2D([], [], color=c, lw=2.5, marker="o", ms=5) for c in palette.values()]
    fig.legend(handles, list(palette), title=title, loc="outside right upper", frameon=False)


def _caption(fig: Figure, text: str, *, left: bool = False) -> None:
    """A small grey line above the panels saying what the marks show."""
    x, ha = (0.01, "left") if left else (0.99, "right")
    fig.suptitle(text, fontsize="small", color="#555555", x=x, ha=ha)


def _check_columns(df: pd.DataFrame, needed: Iterable[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {list(df.columns)}")


# ----------------------------------------------------------------------------------------------
# learning curves


def plot_reward_vs_queries(
    round_metrics: pd.DataFrame,
    path: StrPath,
    *,
    metric: str | Sequence[str] = "round_mean_reward",
    hue: str = "method",
    col: str = "domain",
    palette: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Learning curves: mean over seeds of ``metric`` against the number of queries.

    One panel per value of ``col`` (domain), one row per metric when ``metric`` is a sequence,
    one line per value of ``hue`` (method) with a 95% Student t band over seeds.

    Args:
        round_metrics: from :func:`prefalign.reporting.metrics.round_metrics` (one row per seed and round).
        path: the PNG to write; the plotted numbers go to ``path.with_suffix('.csv')``.
        metric: a per-round column or several (rows of the figure).
        hue: column that tells the lines apart.
        col: column that tells the panels apart.
        palette: colours of the ``hue`` values; by default :func:`method_palette`.

    Returns:
        The plotted numbers (also written as CSV): col, hue, ``n_queries``, metric, mean, ci95
        (half-width), ci_low, ci_high, n_seeds.
    """
    path = Path(path)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    _check_columns(round_metrics, [hue, col, "n_queries", *metrics], "round_metrics")
    colors = dict(palette or method_palette(round_metrics[hue]))
    hue_order = sorted(round_metrics[hue].astype(str).unique())
    colors = {h: colors[h] for h in hue_order}
    panels = sorted(round_metrics[col].astype(str).unique())
    data = round_metrics.assign(**{hue: round_metrics[hue].astype(str)})

    axes_style, context = _style()
    with axes_style, context:
        fig = Figure(figsize=(3.9 * len(panels) + 1.4, 3.0 * len(metrics)), layout="constrained")
        axes = fig.subplots(len(metrics), len(panels), squeeze=False)
        for i, m in enumerate(metrics):
            for j, panel in enumerate(panels):
                _curve(axes[i, j], data[data[col].astype(str) == panel], m, hue, hue_order, colors)
                if i == 0:
                    axes[i, j].set_title(panel)
                axes[i, j].set_xlabel("questions asked" if i == len(metrics) - 1 else "")
                axes[i, j].set_ylabel(textwrap.fill(metric_label(m), 24) if j == 0 else "")
        _legend(fig, colors, hue)
        _caption(fig, "mean over seeds ± 95% CI (Student t), cut at the seeds' range", left=True)
        summary = _summarise(data, [col, hue, "n_queries"], metrics)
        _save(fig, path, summary)
    return summary


def _curve(
    ax: Axes, data: pd.DataFrame, metric: str, hue: str, order: list[str], colors: dict
) -> None:
    sns.lineplot(
        data=data,
        x="n_queries",
        y=metric,
        hue=hue,
        hue_order=[h for h in order if h in set(data[hue])],
        palette=colors,
        errorbar=_t_interval,
        marker="o",
        markersize=4,
        linewidth=1.8,
        err_kws={"alpha": 0.18, "linewidth": 0},
        legend=False,
        ax=ax,
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # With 2-3 seeds a t band reaches far past every seed's value (t = 12.7 for 2): the axis spans
    # the seeds' values, so the means stay readable; the band's numbers are in the CSV beside.
    values = data[metric].dropna()
    if len(values):
        low, high = float(values.min()), float(values.max())
        pad = 0.08 * (high - low) or 0.05
        ax.set_ylim(low - pad, high + pad)


def plot_learning_curves(
    round_metrics: pd.DataFrame,
    path: StrPath,
    *,
    metrics: Sequence[str] = LEARNING_CURVE_METRICS,
    palette: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The learning-curve figure: ``round_mean_reward``, ``best_so_far`` and ``top10_mean`` as
    rows, domains as columns (see :func:`plot_reward_vs_queries`)."""
    return plot_reward_vs_queries(round_metrics, path, metric=metrics, palette=palette)


# ----------------------------------------------------------------------------------------------
# final metrics


def _final_summary(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long summary (domain, method, metric, mean, ci95, ...) from per-seed or aggregated rows."""
    if "n_seeds" in frame.columns:  # a final table: already aggregated
        rows = []
        for r in frame.to_dict("records"):
            for m in metrics:
                mean, half = float(r[m]), float(r.get(f"{m}_ci95", math.nan))
                rows.append(
                    {
                        "domain": r["domain"],
                        "method": r["method"],
                        "metric": m,
                        "mean": mean,
                        "ci95": half,
                        "ci_low": mean - half,
                        "ci_high": mean + half,
                        "n_seeds": int(r["n_seeds"]),
                    }
                )
        return pd.DataFrame(rows)
    return _summarise(frame, ["domain", "method"], metrics)


#: Diversity metrics in order of preference for a domain's panel: the mixture's modes, the
#: digits' classes, then whichever the domain reports first.
DIVERSITY_PREFERENCE = ("diversity_modes_covered", "diversity_n_classes")


def _has_values(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def _diversity_key(frame: pd.DataFrame, key: str | None) -> str | None:
    """The diversity column of ``frame`` (one domain's rows) to draw: ``key`` when given (and
    then it must be a column), else the first of :data:`DIVERSITY_PREFERENCE` with a value,
    else the first diversity column with one; None when the domain reports no diversity."""
    if key is not None:
        name = key if key.startswith("diversity_") else f"diversity_{key}"
        _check_columns(frame, [name], "the final metrics")
        return name if _has_values(frame, name) else None
    keys = sorted(
        c for c in frame.columns if c.startswith("diversity_") and not c.endswith("_ci95")
    )
    for name in (*DIVERSITY_PREFERENCE, *keys):
        if name in keys and _has_values(frame, name):
            return name
    return None


def _domain_panels(
    frame: pd.DataFrame, domain: str, diversity_key: str | None
) -> tuple[list[str], list[str]]:
    """One domain's row of the final-metrics figure: its metrics with a value (reward,
    validity, its diversity measure) and its methods (those evaluated on it)."""
    part = frame[frame["domain"].astype(str) == domain]
    metrics = [m for m in ("mean_reward", "validity_rate") if _has_values(part, m)]
    key = _diversity_key(part, diversity_key)
    if key is not None:
        metrics.append(key)
    evaluated = part[part[metrics].notna().any(axis=1)] if metrics else part.iloc[:0]
    return metrics, sorted(evaluated["method"].astype(str).unique())


def plot_final_metrics(
    final_or_evals: pd.DataFrame,
    path: StrPath,
    *,
    diversity_key: str | None = None,
    palette: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Mean reward of fresh samples per method, beside validity and diversity.

    Horizontal bars with 95% CIs over seeds, one row of panels per domain; with per-seed
    evaluations the seeds are drawn as dots too. Validity and diversity beside the reward show a
    method that wins by leaving the data manifold or by collapsing onto one mode. Each domain's
    row holds only the metrics it has (its own diversity measure: modes covered on the mixture,
    digit classes on digits) and only the methods evaluated on it: no empty panel, no empty row.

    Args:
        final_or_evals: :func:`prefalign.reporting.comparison.final_table` (aggregated, with ``n_seeds`` and
            ``<metric>_ci95``) or :func:`prefalign.reporting.comparison.load_evaluations` (one row per seed).
        path: the PNG to write; the plotted numbers go to ``path.with_suffix('.csv')``.
        diversity_key: diversity column to show where a domain has it (``modes_covered`` or
            ``diversity_modes_covered``); by default each domain's first of
            :data:`DIVERSITY_PREFERENCE` with a value.
        palette: method colours; by default :func:`method_palette`.

    Returns:
        The plotted numbers (also written as CSV), one row per panel's bar: domain, method,
        metric, mean, ci95, ci_low, ci_high, n_seeds.
    """
    path = Path(path)
    frame = final_or_evals
    _check_columns(frame, ["domain", "method", "mean_reward", "validity_rate"], "final metrics")
    per_seed = None if "n_seeds" in frame.columns else frame
    colors = dict(palette or method_palette(frame["method"].astype(str).unique()))
    panels = {
        d: _domain_panels(frame, d, diversity_key)
        for d in sorted(frame["domain"].astype(str).unique())
    }
    panels = {d: (metrics, methods) for d, (metrics, methods) in panels.items() if methods}
    if not panels:
        raise ValueError("final metrics: no method of any domain has a metric to plot")
    parts = []
    for d, (metrics, methods) in panels.items():
        rows = frame[(frame["domain"].astype(str) == d) & frame["method"].astype(str).isin(methods)]
        parts.append(_final_summary(rows, metrics))
    summary = pd.concat(parts, ignore_index=True)

    axes_style, context = _style()
    with axes_style, context:
        heights = [0.9 + 0.42 * len(methods) for _, methods in panels.values()]
        width = 3.4 * max(len(metrics) for metrics, _ in panels.values())
        fig = Figure(figsize=(width, sum(heights)), layout="constrained")
        rows_of = fig.subfigures(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for row, (domain, (metrics, methods)) in zip(rows_of, panels.items(), strict=True):
            # every row as wide as the widest: a domain with fewer metrics has fewer panels
            # of the same width, not wider ones
            n_cols = max(len(m) for m, _ in panels.values())
            grid = row.add_gridspec(1, n_cols)
            axes = [row.add_subplot(grid[0, j]) for j in range(len(metrics))]
            for j, (ax, m) in enumerate(zip(axes, metrics, strict=True)):
                part = summary[(summary["domain"] == domain) & (summary["metric"] == m)]
                _bars(ax, part, methods, colors)
                if per_seed is not None:
                    seeds = per_seed[per_seed["domain"].astype(str) == domain]
                    _seed_dots(ax, seeds, m, methods)
                if m == "validity_rate":
                    ax.set_xlim(0, max(1.02, ax.get_xlim()[1]))
                if j:
                    ax.tick_params(labelleft=False)
                ax.set_xlabel(metric_label(m))
                ax.set_title(f"{domain}" if j == 0 else "", loc="left", fontweight="bold")
        dots = "; dots: seeds" if per_seed is not None else ""
        _caption(fig, f"bars: mean over seeds; whiskers: 95% CI (Student t){dots}")
        _save(fig, path, summary)
    return summary


def _bars(ax: Axes, part: pd.DataFrame, methods: list[str], colors: Mapping[str, str]) -> None:
    by = part.set_index("method")
    y = np.arange(len(methods))
    means = [float(by.loc[m, "mean"]) if m in by.index else math.nan for m in methods]
    half = [float(by.loc[m, "ci95"]) if m in by.index else math.nan for m in methods]
    ax.barh(y, means, color=[colors[m] for m in methods], alpha=0.85, height=0.65)
    ok = np.isfinite(half) & np.isfinite(means)
    if ok.any():
        ax.errorbar(
            np.asarray(means)[ok],
            y[ok],
            xerr=np.asarray(half)[ok],
            fmt="none",
            ecolor="#222222",
            elinewidth=1.2,
            capsize=3,
        )
    ax.set_yticks(y, methods)
    ax.set_ylim(len(methods) - 0.5, -0.5)  # every method's row, the first at the top
    ax.grid(axis="y", visible=False)


def _seed_dots(ax: Axes, seeds: pd.DataFrame, metric: str, methods: list[str]) -> None:
    """One dot per seed, on a line just below the bar's error bar."""
    for i, m in enumerate(methods):
        values = seeds.loc[seeds["method"].astype(str) == m, metric].to_numpy(np.float64)
        ax.scatter(
            values,
            np.full(values.shape, i + 0.18),
            s=14,
            color="#222222",
            edgecolor="white",
            linewidth=0.5,
            alpha=0.75,
            zorder=3,
        )


# ----------------------------------------------------------------------------------------------
# tables
