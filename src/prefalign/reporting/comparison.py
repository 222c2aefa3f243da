"""The final comparison of methods: each campaign's evaluation (fresh samples of its aligned
sampler), the final table over seeds and the paired differences against a reference method.

:func:`load_evaluations` reads the evaluation JSON files; :func:`final_table` aggregates them with
each campaign's round summary (:func:`prefalign.reporting.metrics.campaign_summary`) over seeds:
per group the mean of each metric and the half-width of its 95% Student t interval;
:func:`paired_differences` compares methods seed by seed (they share the cold start).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.json_text import read_json_object
from prefalign.io.listing import show
from prefalign.reporting.metrics import (
    CAMPAIGN_KEYS,
    DEFAULT_THRESHOLD_METRIC,
    EVALUATION_KEYS,
    ROUND_SUMMARY_METRICS,
    MetricsError,
    ThresholdMetric,
    campaign_summary,
    ci95,
    parse_campaign,
)

StrPath = str | os.PathLike[str]

#: Numeric evaluation columns that describe the run rather than measure it: not aggregated.
_EVAL_NOT_METRICS = ("seed", "n_queries", "n_samples", "seconds", "eval_ess")
#: Order of the metrics in the final table; other numeric columns follow, sorted by name.
_METRIC_ORDER = (
    "mean_reward",
    "eval_mean_reward",
    "frac_above_threshold",
    "reward_std",
    "validity_rate",
)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _flatten_evaluation(record: dict, path: Path) -> dict[str, object]:
    """Check one evaluation record and flatten its nested dicts into ``<key>_<sub>`` columns."""
    where = f"evaluation file {path}"
    missing = [k for k in EVALUATION_KEYS if k not in record]
    if missing:
        raise MetricsError(f"{where} lacks key(s) {missing}")
    for name in ("mean_reward", "validity_rate", "seed", "n_queries", "n_samples"):
        if not _is_number(record[name]):
            raise MetricsError(f"{where}: {name!r} must be a number, got {record[name]!r}")
    for name in ("campaign", "domain", "method"):
        if not isinstance(record[name], str) or not record[name]:
            raise MetricsError(
                f"{where}: {name!r} must be a non-empty string, got {record[name]!r}"
            )
    if not isinstance(record["diversity"], dict):
        raise MetricsError(
            f"{where}: 'diversity' must be an object of numbers, got {record['diversity']!r}"
        )
    try:
        named = parse_campaign(record["campaign"], int(record["seed"]))
    except MetricsError as exc:
        raise MetricsError(f"{where}: {exc}") from None
    given = (record["domain"], record["method"], int(record["seed"]))
    if named != given:
        raise MetricsError(
            f"{where}: campaign {record['campaign']!r} does not match "
            f"domain/method/seed {given[0]}/{given[1]}/{given[2]}"
        )
    flat: dict[str, object] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if not _is_number(v):
                    raise MetricsError(f"{where}: '{key}.{sub}' must be a number, got {v!r}")
                flat[f"{key}_{sub}"] = float(v)
        elif isinstance(value, list):
            raise MetricsError(f"{where}: key {key!r} holds a list; expected a number or string")
        else:
            flat[key] = value
    flat["seed"] = int(record["seed"])
    return flat


def load_evaluations(paths: Sequence[StrPath]) -> pd.DataFrame:
    """Read evaluation JSON files, one per campaign, into one row each.

    Nested objects (``diversity``) become ``diversity_<key>`` columns; other top-level keys are
    kept as they are (numbers as float/int, strings as strings).

    Raises:
        MetricsError: naming the file: missing or unreadable, not JSON, not an object, a key of
            :data:`EVALUATION_KEYS` missing, a metric that is not a number, a campaign name that
            disagrees with domain/method/seed, or the same campaign in two files.
    """
    if len(paths) == 0:
        raise MetricsError("no evaluation files given")
    rows, origin = [], {}
    for p in paths:
        path = Path(p)
        record = read_json_object(path, MetricsError, "evaluation file")
        row = _flatten_evaluation(record, path)
        key = (row["domain"], row["method"], row["seed"])
        if key in origin:
            raise MetricsError(f"campaign {row['campaign']!r} is in both {origin[key]} and {path}")
        origin[key] = path
        rows.append(row)
    return pd.DataFrame(rows).sort_values(list(CAMPAIGN_KEYS), ignore_index=True)


# ----------------------------------------------------------------------------------------------
# the final table


def _metric_columns(evals: pd.DataFrame, group: Sequence[str]) -> list[str]:
    """Numeric evaluation columns that are metrics, in table order."""
    numeric = [
        c
        for c in evals.columns
        if c not in group
        and c not in _EVAL_NOT_METRICS
        and pd.api.types.is_numeric_dtype(evals[c])
        and not pd.api.types.is_bool_dtype(evals[c])
    ]
    first = [c for c in _METRIC_ORDER if c in numeric]
    diversity = sorted(c for c in numeric if c.startswith("diversity_"))
    rest = sorted(c for c in numeric if c not in first and c not in diversity)
    return first + diversity + rest


def _join(evals: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per-seed rows of evaluations and round summaries; every campaign must be in both."""
    keys = list(CAMPAIGN_KEYS)
    ev = set(map(tuple, evals[keys].itertuples(index=False)))
    rm = set(map(tuple, summary[keys].itertuples(index=False)))
    only_ev, only_rm = sorted(ev - rm), sorted(rm - ev)
    if only_ev or only_rm:
        fmt = ["/".join(map(str, k)) for k in only_ev], ["/".join(map(str, k)) for k in only_rm]
        raise MetricsError(
            "evaluations and observations cover different campaigns: "
            f"only evaluated {show(fmt[0], str) or 'none'}; only observed {show(fmt[1], str) or 'none'}"
        )
    per_seed = evals.merge(summary, on=keys, how="inner", suffixes=("", "_rounds"))
    stale = per_seed[per_seed["n_queries"] != per_seed["final_n_queries"]]
    if len(stale):
        shown = [
            f"{r.domain}/{r.method}/{r.seed}: {r.n_queries} vs {r.final_n_queries}"
            for r in stale.itertuples()
        ]
        raise MetricsError(
            "n_queries of the evaluation differs from the observations (a stale file?): "
            + show(shown, str)
        )
    return per_seed


def final_table(
    evals: pd.DataFrame,
    round_metrics: pd.DataFrame,
    *,
    group: Sequence[str] = ("domain", "method"),
    threshold: float | None = None,
    threshold_metric: ThresholdMetric = DEFAULT_THRESHOLD_METRIC,
) -> pd.DataFrame:
    """Mean and 95% CI half-width over seeds of every metric, per group.

    Metrics: each numeric evaluation column (``mean_reward`` — fresh samples, the primary metric —
    ``validity_rate``, every ``diversity_<key>``, and extra keys such as ``eval_mean_reward``;
    not seed, n_queries, n_samples, seconds), and from the rounds (:func:`campaign_summary`)
    ``round_mean_reward`` (averaged over rounds ≥ 1), ``final_top10_mean``, ``final_best_so_far``
    and, when ``threshold`` is given, ``queries_to_threshold``.

    Args:
        evals: from :func:`load_evaluations`, one row per campaign.
        round_metrics: from :func:`round_metrics` / :func:`campaign_round_metrics`.
        group: columns to group seeds by (must be in ``evals`` or be domain/method).
        threshold: reward threshold for ``queries_to_threshold``; None leaves that metric out.
        threshold_metric: which curve must reach the threshold.

    Returns:
        One row per group: the group columns, ``n_seeds``, then per metric ``<metric>`` (mean over
        seeds) and ``<metric>_ci95`` (Student t half-width, :func:`ci95`; NaN with one seed).
        ``queries_to_threshold`` averages the seeds that reached the threshold only;
        ``queries_to_threshold_n_reached`` counts them (NaN mean when none did).

    Raises:
        MetricsError: evaluations and observations covering different campaigns, disagreeing
            ``n_queries``, or an unknown group column.
    """
    per_seed = per_seed_table(
        evals, round_metrics, threshold=threshold, threshold_metric=threshold_metric
    )
    group = list(group)
    unknown = [g for g in group if g not in per_seed.columns]
    if unknown:
        raise MetricsError(f"group column(s) {unknown} are not in the evaluations")
    metrics = _metric_columns(evals, group)
    metrics += [m for m in ROUND_SUMMARY_METRICS if m in per_seed.columns and m not in metrics]
    rows = []
    for key, g in per_seed.groupby(group, sort=True):
        row: dict[str, object] = dict(zip(group, key, strict=True))
        row["n_seeds"] = int(g["seed"].nunique())
        for m in metrics:
            row[m], row[f"{m}_ci95"] = ci95(g[m].to_numpy(np.float64))
        if "queries_to_threshold" in metrics:
            row["queries_to_threshold_n_reached"] = int(g["queries_to_threshold"].notna().sum())
        rows.append(row)
    return pd.DataFrame(rows)


#: Metrics of :func:`paired_differences`, in order: fresh-sample reward, the evaluation oracle's
#: reward, the reward of the queries, questions to threshold, validity and diversity.
PAIRED_METRICS = (
    "mean_reward",
    "eval_mean_reward",
    "round_mean_reward",
    "queries_to_threshold",
    "validity_rate",
    "diversity_class_entropy",
    "diversity_modes_covered",
)


def per_seed_table(
    evals: pd.DataFrame,
    round_metrics: pd.DataFrame,
    *,
    threshold: float | None = None,
    threshold_metric: ThresholdMetric = DEFAULT_THRESHOLD_METRIC,
) -> pd.DataFrame:
    """One row per campaign: its evaluation beside its round summary (:func:`campaign_summary`)."""
    summary = campaign_summary(
        round_metrics, threshold=threshold, threshold_metric=threshold_metric
    )
    return _join(evals, summary)


def paired_differences(
    per_seed: pd.DataFrame,
    reference: str,
    *,
    metrics: Sequence[str] = PAIRED_METRICS,
) -> pd.DataFrame:
    """Each method minus ``reference``, paired by seed (they share the cold start), per domain.

    Args:
        per_seed: one row per campaign (:func:`per_seed_table`), columns domain, method, seed and
            the metrics.
        reference: the method every other one is compared with (e.g. ``best-of-n``).
        metrics: columns to compare; missing ones are skipped.

    Returns:
        One row per (domain, method ≠ reference, metric): ``n_pairs`` (seeds both ran, with
        finite values), ``mean_difference``, ``ci95_low``, ``ci95_high`` (Student t over the
        pairs; NaN with fewer than two), ``wins`` (pairs where the method is higher). Empty when
        the reference is absent.
    """
    rows = []
    for domain, part in per_seed.groupby("domain", sort=True):
        ref = part[part["method"] == reference].set_index("seed")
        if ref.empty:
            continue
        for method, g in part.groupby("method", sort=True):
            if method == reference:
                continue
            g = g.set_index("seed")
            seeds = g.index.intersection(ref.index)
            for metric in metrics:
                if metric not in g.columns or metric not in ref.columns:
                    continue
                d = (g.loc[seeds, metric] - ref.loc[seeds, metric]).to_numpy(np.float64)
                d = d[np.isfinite(d)]
                mean, half = ci95(d) if d.size else (math.nan, math.nan)
                rows.append(
                    {
                        "domain": domain,
                        "method": method,
                        "reference": reference,
                        "metric": metric,
                        "n_pairs": int(d.size),
                        "mean_difference": mean,
                        "ci95_low": mean - half,
                        "ci95_high": mean + half,
                        "wins": int((d > 0).sum()),
                    }
                )
    columns = [
        "domain",
        "method",
        "reference",
        "metric",
        "n_pairs",
        "mean_difference",
        "ci95_low",
        "ci95_high",
        "wins",
    ]
    return pd.DataFrame(rows, columns=columns)
