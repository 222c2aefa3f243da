"""Numbers for the paper: learning curves per round and each campaign's summary (the final
table over seeds and the paired differences: :mod:`prefalign.reporting.comparison`).

Two sources feed the metrics of a campaign (domain × method × seed):

- its final observation dataset (:mod:`prefalign.io.observations`), from which :func:`round_metrics`
  derives one row per round: what the user saw while teaching (``round_mean_reward``) and the best
  rewards found so far (``best_so_far``, ``top10_mean``);
- its evaluation JSON, written after the last round from ``M`` fresh samples of the final
  surrogate, read by :func:`load_evaluations`. Its ``mean_reward`` is the primary metric;
  ``validity_rate`` and the ``diversity`` keys show a method that wins by leaving the data
  manifold or collapsing onto one mode.

:func:`final_table` aggregates both over seeds: per group (default ``domain``, ``method``) the
mean of each metric and the half-width of its 95% confidence interval, Student t over seeds
(:func:`ci95`). Everything here is pure pandas/numpy; figures and files live in
:mod:`prefalign.reporting.figures`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from prefalign.io.listing import show
from prefalign.io.observations import read_observations

__all__ = [
    "EVALUATION_KEYS",
    "LEARNING_CURVE_METRICS",
    "TOP_N",
    "MetricsError",
    "campaign_round_metrics",
    "campaign_summary",
    "ci95",
    "parse_campaign",
    "queries_to_threshold",
    "round_metrics",
]

StrPath = str | os.PathLike[str]

#: How many of the best observed rewards ``top10_mean`` averages.
TOP_N = 10
#: Per-round metrics :mod:`prefalign.reporting.figures` draws as learning curves, in this order.
LEARNING_CURVE_METRICS = ("round_mean_reward", "best_so_far", "top10_mean")
#: Keys every evaluation JSON must have.
EVALUATION_KEYS = (
    "campaign",
    "domain",
    "method",
    "seed",
    "n_queries",
    "n_samples",
    "mean_reward",
    "validity_rate",
    "diversity",
)
ROUND_SUMMARY_METRICS = (
    "round_mean_reward",
    "final_top10_mean",
    "final_best_so_far",
    "queries_to_threshold",
)
_OBS_COLUMNS = ("campaign", "seed", "round", "reward", "selected_by")
CAMPAIGN_KEYS = ("domain", "method", "seed")


class MetricsError(ValueError):
    """Inputs to the metrics are missing, malformed or inconsistent with each other."""


# ----------------------------------------------------------------------------------------------
# confidence intervals


def ci95(values: Iterable[float] | np.ndarray | pd.Series) -> tuple[float, float]:
    """Mean and half-width of the 95% Student t confidence interval of the mean.

    ``halfwidth = t_{0.975, n-1} · s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof=1``) of the ``n`` values, e.g. over seeds. NaN values are dropped first.

    Returns:
        ``(mean, halfwidth)``; the half-width is NaN for fewer than two values, both are NaN for
        none.
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    arr = arr[~np.isnan(arr)]
    n = arr.size
    if n == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    if n == 1:
        return mean, math.nan
    sem = float(arr.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.975, n - 1)) * sem


# ----------------------------------------------------------------------------------------------
# per-round metrics


def parse_campaign(campaign: str, seed: int | None = None) -> tuple[str, str, int]:
    """Split a campaign name into ``(domain, method, seed)``.

    Accepts ``domain/method/seed`` and ``domain/method`` (then ``seed`` must be given). When both
    name and ``seed`` carry a seed they must agree.

    Raises:
        MetricsError: another form, a non-integer seed, or disagreeing seeds.
    """
    parts = str(campaign).split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise MetricsError(
            f"campaign {campaign!r} must look like 'domain/method/seed' or 'domain/method'"
        )
    if len(parts) == 2:
        if seed is None:
            raise MetricsError(f"campaign {campaign!r} names no seed and none was given")
        return parts[0], parts[1], int(seed)
    try:
        named = int(parts[2])
    except ValueError:
        raise MetricsError(
            f"campaign {campaign!r}: seed part {parts[2]!r} is not an integer"
        ) from None
    if seed is not None and int(seed) != named:
        raise MetricsError(f"campaign {campaign!r} names seed {named} but its seed is {seed}")
    return parts[0], parts[1], named


def _top_mean(values: np.ndarray, n: int) -> float:
    """Mean of the ``n`` largest values (of all of them when there are fewer)."""
    return float(np.sort(values)[-n:].mean())


def _one_campaign(obs: pd.DataFrame, k: int | None) -> pd.DataFrame:
    """:func:`round_metrics` for the rows of one (campaign, seed)."""
    campaign, seed = str(obs["campaign"].iloc[0]), int(obs["seed"].iloc[0])
    domain, method, seed = parse_campaign(campaign, seed)
    rounds = np.sort(pd.unique(obs["round"].to_numpy(np.int64)))
    if rounds[0] != 0 or (np.diff(rounds) != 1).any():
        raise MetricsError(
            f"campaign {campaign!r} seed {seed}: rounds must be 0..R without gaps, "
            f"got {show(rounds.tolist(), str)}"
        )
    # a question is one unit of budget; without a question column each row is one
    questions = obs["question"] if "question" in obs.columns else pd.Series(range(len(obs)))
    sizes = pd.Series(questions.to_numpy()).groupby(obs["round"].to_numpy()).nunique()
    if k is not None and (sizes != k).any():
        bad = [f"round {r}: {n}" for r, n in sizes.items() if n != k]
        raise MetricsError(
            f"campaign {campaign!r} seed {seed}: expected k={k} queries per round, got {show(bad, str)}"
        )
    rows = []
    seen = np.empty(0)
    asked = 0
    for r in rounds:
        this = obs[obs["round"] == r]
        rewards = this["reward"].to_numpy(np.float64)
        seen = np.concatenate([seen, rewards])
        asked += int(sizes.loc[r])
        labels = this["selected_by"].astype(str).value_counts()
        rows.append(
            {
                "campaign": campaign,
                "domain": domain,
                "method": method,
                "seed": seed,
                "round": int(r),
                "n_queries": asked,
                "round_mean_reward": float(rewards.mean()),
                "best_so_far": float(seen.max()),
                "top10_mean": _top_mean(seen, TOP_N),
                **{f"n_{label}": int(n) for label, n in labels.items()},
            }
        )
    return pd.DataFrame(rows)


def round_metrics(obs: pd.DataFrame, *, k: int | None = None) -> pd.DataFrame:
    """One row per round of each campaign in an observation dataset.

    Args:
        obs: observations (:func:`prefalign.io.observations.read_observations`), of one campaign or
            several concatenated; needs columns campaign, seed, round, reward, selected_by.
        k: when given, every round must hold exactly ``k`` queries.

    Returns:
        Columns campaign, domain, method, seed (parsed from ``campaign``, see
        :func:`parse_campaign`), round, ``n_queries`` (cumulative questions up to and including
        the round: units of budget, whatever a question shows), ``round_mean_reward`` (mean
        reward of the items the round's questions showed: what the user saw),
        ``best_so_far`` (largest reward observed so far), ``top10_mean`` (mean of the
        :data:`TOP_N` largest rewards so far; of all when fewer), and ``n_top``, ``n_random``
        (plus ``n_<label>`` for any other ``selected_by`` label): the round's queries per
        selection rule. Sorted by campaign, seed, round.

    Raises:
        MetricsError: missing columns, no rows, non-finite rewards, gaps in the rounds, a round
            without ``k`` queries, a malformed campaign name.
    """
    missing = [c for c in _OBS_COLUMNS if c not in obs.columns]
    if missing:
        raise MetricsError(f"observations lack column(s) {missing}; have {list(obs.columns)}")
    if len(obs) == 0:
        raise MetricsError("observations are empty: no rounds to summarise")
    if not np.isfinite(obs["reward"].to_numpy(np.float64)).all():
        raise MetricsError("observations hold non-finite rewards")
    if k is not None and k < 1:
        raise MetricsError(f"k must be a positive int, got {k!r}")
    parts = [_one_campaign(g, k) for _, g in obs.groupby(["campaign", "seed"], sort=True)]
    return _tidy_counts(pd.concat(parts, ignore_index=True))


def _tidy_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Give every frame ``n_top`` and ``n_random``; zero-fill count columns; order columns."""
    for name in ("n_top", "n_random"):
        if name not in df.columns:
            df[name] = 0
    counts = ["n_top", "n_random"] + sorted(
        c for c in df.columns if c.startswith("n_") and c not in ("n_top", "n_random", "n_queries")
    )
    df[counts] = df[counts].fillna(0).astype(np.int64)
    front = ["campaign", "domain", "method", "seed", "round", "n_queries"]
    front += list(LEARNING_CURVE_METRICS)
    return df[front + counts].reset_index(drop=True)


def campaign_round_metrics(
    paths: Sequence[StrPath],
    *,
    k: int | None = None,
    query_rewards: Mapping[tuple[str, int], StrPath] | None = None,
) -> pd.DataFrame:
    """:func:`round_metrics` of many campaigns, one final observation file each, concatenated.

    ``query_rewards``: per (campaign, seed), the evaluation's ``query_rewards.csv``
    (:func:`prefalign.loop.evaluation.rate_queries`); the rewards of the shown items in the
    campaigns whose questions answer no number (``binary``, ``pairwise``, ``best-of-K``) come
    from there, not from the answers.

    Raises:
        MetricsError: no paths, two files holding the same campaign and seed, a campaign of
            another form than ``rate`` without its query rewards (or with ids that differ).
        prefalign.io.observations.ObservationError: an unreadable or invalid file (names it).
    """
    if len(paths) == 0:
        raise MetricsError("no observation files given")
    frames, origin = [], {}
    for path in paths:
        obs, _ = read_observations(path)
        obs = _rated(obs, query_rewards or {}, path)
        metrics = round_metrics(obs, k=k)
        for key in metrics[["campaign", "seed"]].drop_duplicates().itertuples(index=False):
            if tuple(key) in origin:
                raise MetricsError(
                    f"campaign {key[0]!r} seed {key[1]} is in both {origin[tuple(key)]} and {path}"
                )
            origin[tuple(key)] = path
        frames.append(metrics)
    return _tidy_counts(pd.concat(frames, ignore_index=True))


def _rated(
    obs: pd.DataFrame, query_rewards: Mapping[tuple[str, int], StrPath], path: StrPath
) -> pd.DataFrame:
    """The observations with each shown item's reward in ``reward``: the answers themselves for
    ratings, the evaluator's ratings for the other forms."""
    form = str(obs["form"].iloc[0]) if len(obs) else "rate"
    if form == "rate":
        return obs
    key = (str(obs["campaign"].iloc[0]), int(obs["seed"].iloc[0]))
    if key not in query_rewards:
        raise MetricsError(
            f"{path}: campaign {key[0]!r} seed {key[1]} asks {form!r} questions, whose answers "
            "are no rewards; its evaluation's query_rewards.csv is needed for the learning curves"
        )
    rated = pd.read_csv(query_rewards[key], dtype={"id": str}).set_index("id")["reward"]
    missing = sorted(set(obs["id"]) - set(rated.index))
    if missing:
        raise MetricsError(f"{query_rewards[key]} lacks the rewards of ids {show(missing, str)}")
    out = obs.copy()
    out["reward"] = rated.loc[obs["id"].tolist()].to_numpy(np.float64)
    return out


# ----------------------------------------------------------------------------------------------
# per-campaign summaries


ThresholdMetric = Literal["round_mean_reward", "best_so_far", "top10_mean"]
#: The curve that "queries to threshold" follows by default: the mean reward of a round's
#: questions (what the user sees), counting every question asked up to that round.
DEFAULT_THRESHOLD_METRIC: ThresholdMetric = "round_mean_reward"


def queries_to_threshold(
    round_metrics: pd.DataFrame,
    threshold: float,
    *,
    metric: ThresholdMetric = DEFAULT_THRESHOLD_METRIC,
) -> pd.DataFrame:
    """Queries each campaign needed until ``metric`` first reached ``threshold``.

    Returns:
        Columns domain, method, seed, ``queries_to_threshold``: the ``n_queries`` of the first
        round with ``metric >= threshold``; NaN when never reached.
    """
    if metric not in ("round_mean_reward", "best_so_far", "top10_mean"):
        raise MetricsError(
            "metric must be one of 'round_mean_reward', 'best_so_far', 'top10_mean', "
            f"got {metric!r}"
        )
    rows = []
    for key, g in round_metrics.groupby(list(CAMPAIGN_KEYS), sort=True):
        g = g.sort_values("round")
        hit = g.loc[g[metric] >= threshold, "n_queries"]
        rows.append((*key, float(hit.iloc[0]) if len(hit) else math.nan))
    return pd.DataFrame(rows, columns=[*CAMPAIGN_KEYS, "queries_to_threshold"])


def campaign_summary(
    round_metrics: pd.DataFrame,
    *,
    threshold: float | None = None,
    threshold_metric: ThresholdMetric = DEFAULT_THRESHOLD_METRIC,
) -> pd.DataFrame:
    """One row per campaign summarising its rounds.

    Returns:
        Columns domain, method, seed, ``final_n_queries``, ``round_mean_reward`` (mean over rounds
        ≥ 1 of the round means, i.e. after the cold start; NaN with only round 0),
        ``final_top10_mean``, ``final_best_so_far`` (at the last round) and, when ``threshold`` is
        given, ``queries_to_threshold`` (see :func:`queries_to_threshold`).
    """
    missing = [
        c
        for c in (*CAMPAIGN_KEYS, "round", "n_queries", *LEARNING_CURVE_METRICS)
        if c not in round_metrics
    ]
    if missing:
        raise MetricsError(f"round metrics lack column(s) {missing}; build them with round_metrics")
    rows = []
    for key, g in round_metrics.groupby(list(CAMPAIGN_KEYS), sort=True):
        g = g.sort_values("round")
        last = g.iloc[-1]
        after_cold_start = g.loc[g["round"] >= 1, "round_mean_reward"]
        rows.append(
            {
                **dict(zip(CAMPAIGN_KEYS, key, strict=True)),
                "final_n_queries": int(last["n_queries"]),
                "round_mean_reward": float(after_cold_start.mean())
                if len(after_cold_start)
                else math.nan,
                "final_top10_mean": float(last["top10_mean"]),
                "final_best_so_far": float(last["best_so_far"]),
            }
        )
    out = pd.DataFrame(rows)
    if threshold is not None:
        hits = queries_to_threshold(round_metrics, threshold, metric=threshold_metric)
        out = out.merge(hits, on=list(CAMPAIGN_KEYS), how="left")
    return out
