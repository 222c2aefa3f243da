"""Tables from :mod:`prefalign.reporting.metrics`: Markdown, LaTeX and CSV of the final table
(mean ± 95% CI over seeds) and of the paired differences against a reference method."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.reporting.figures import metric_label

StrPath = str | os.PathLike[str]

#: Shorter headers for tables, where width is scarce; other metrics use :func:`metric_label`.
_TABLE_LABELS = {
    "mean_reward": "reward (fresh samples)",
    "eval_mean_reward": "reward (eval. oracle)",
    "frac_above_threshold": "frac. above threshold",
    "reward_std": "reward std.",
    "validity_rate": "validity",
    "round_mean_reward": "reward of queries (rounds 1+)",
    "final_top10_mean": "top-10 observed",
    "final_best_so_far": "best observed",
}


def _table_layout(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``(group columns, metrics)`` of a final table: metrics are the columns with a ``_ci95``."""
    metrics = [c for c in table.columns if f"{c}_ci95" in table.columns]
    derived = {f"{m}_ci95" for m in metrics} | {"n_seeds", "queries_to_threshold_n_reached"}
    group = [c for c in table.columns if c not in metrics and c not in derived]
    if not metrics:
        raise ValueError(
            "the table has no '<metric>' / '<metric>_ci95' column pairs; build it with "
            "prefalign.reporting.comparison.final_table"
        )
    return group, metrics


def _decimals(values: pd.Series) -> int:
    top = float(np.nanmax(np.abs(values.to_numpy(np.float64)))) if values.notna().any() else 0.0
    return 3 if top < 10 else 2 if top < 100 else 1


def _cell(mean: float, half: float, decimals: int, pm: str) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(half):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} {pm} {half:.{decimals}f}"


def _formatted(table: pd.DataFrame, pm: str) -> pd.DataFrame:
    """Strings ``mean ± ci`` per metric, indexed by the group columns, labelled headers."""
    group, metrics = _table_layout(table)
    out = pd.DataFrame(index=pd.MultiIndex.from_frame(table[group].astype(str)))
    if "n_seeds" in table.columns:
        out["seeds"] = table["n_seeds"].astype(int).astype(str).to_numpy()
    for m in metrics:
        d = 1 if m == "queries_to_threshold" else _decimals(table[m])
        cells = [_cell(a, b, d, pm) for a, b in zip(table[m], table[f"{m}_ci95"], strict=True)]
        if m == "queries_to_threshold" and "queries_to_threshold_n_reached" in table.columns:
            cells = [
                "not reached" if n == 0 else c if n == s else f"{c} ({n}/{s} reached)"
                for c, n, s in zip(
                    cells, table["queries_to_threshold_n_reached"], table["n_seeds"], strict=True
                )
            ]
        out[_TABLE_LABELS.get(m, metric_label(m))] = cells
    return out


def _markdown(table: pd.DataFrame) -> str:
    def esc(s: object) -> str:
        return str(s).replace("|", "\\|")

    header = [*table.index.names, *table.columns]
    lines = [
        "| " + " | ".join(map(esc, header)) + " |",
        "|" + "|".join(["---"] * len(table.index.names) + ["---:"] * len(table.columns)) + "|",
    ]
    for key, row in zip(table.index, table.itertuples(index=False), strict=True):
        keys = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join(map(esc, [*keys, *row])) + " |")
    return "\n".join(lines) + "\n"


def write_tables(table: pd.DataFrame, stem: StrPath) -> dict[str, Path]:
    """Write a final table as ``stem.csv``, ``stem.md`` and ``stem.tex``.

    - CSV: the raw numbers, every column of ``table``.
    - Markdown: one row per group (methods), ``mean ± ci`` strings (95% Student t over seeds;
      the mean alone with one seed), "not reached" / "(n/N reached)" for queries to threshold.
    - LaTeX: the same with ``$\\pm$``, a booktabs ``tabular`` (pandas ``Styler.to_latex``).

    Args:
        table: from :func:`prefalign.reporting.comparison.final_table`.
        stem: path without suffix.

    Returns:
        The written paths by format: ``{"csv": ..., "md": ..., "tex": ...}``.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in ("csv", "md", "tex")}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(_markdown(_formatted(table, "±")), encoding="utf-8")
    group, _ = _table_layout(table)
    latex = _formatted(table, "$\\pm$").reset_index()  # group columns first
    styler = (
        latex.style.hide(axis="index")
        .format(escape="latex", subset=group)
        .format_index(escape="latex", axis=1)
    )
    column_format = "l" * len(group) + "r" * (latex.shape[1] - len(group))
    paths["tex"].write_text(
        styler.to_latex(hrules=True, column_format=column_format), encoding="utf-8"
    )
    return paths


def write_paired_table(paired: pd.DataFrame, stem: StrPath) -> dict[str, Path]:
    """Paired differences (:func:`prefalign.reporting.comparison.paired_differences`) as ``stem.csv`` and a
    Markdown table ``stem.md``: one row per domain and method, one column per metric, each cell
    ``mean [low, high] (wins/pairs)``; an empty table says there is no reference method."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in ("csv", "md")}
    paired.to_csv(paths["csv"], index=False)
    if paired.empty:
        paths["md"].write_text("(no reference method in this experiment)\n", encoding="utf-8")
        return paths
    reference = str(paired["reference"].iloc[0])
    decimals = {"queries_to_threshold": 1}
    cells = pd.DataFrame(
        index=pd.MultiIndex.from_frame(paired[["domain", "method"]].drop_duplicates().astype(str))
    )
    for metric, g in paired.groupby("metric", sort=False):
        d = decimals.get(metric, 3)
        col = {}
        for r in g.itertuples(index=False):
            if not np.isfinite(r.mean_difference):
                text = "n/a"
            elif not np.isfinite(r.ci95_low):
                text = f"{r.mean_difference:+.{d}f} ({r.wins}/{r.n_pairs})"
            else:
                text = (
                    f"{r.mean_difference:+.{d}f} [{r.ci95_low:+.{d}f}, {r.ci95_high:+.{d}f}] "
                    f"({r.wins}/{r.n_pairs})"
                )
            col[(str(r.domain), str(r.method))] = text
        label = _TABLE_LABELS.get(metric, metric_label(metric))
        cells[f"{label} − {reference}"] = [col.get(k, "n/a") for k in cells.index]
    paths["md"].write_text(_markdown(cells), encoding="utf-8")
    return paths
