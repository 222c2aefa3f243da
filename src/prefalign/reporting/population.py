"""The population experiment's report (issue 30, "many users at once"): the held-out users of a
population, each teaching the sampler twice — with the population prior fitted on the training
users (e.g. ``fkc-al-prior``) and without it (the reference, ``fkc-al``) — compared user by user.

Each held-out user is one config domain ``{population}-u{III}``; a campaign is (user, method,
seed). Per campaign (:func:`population_rows`): the questions it asked until the mean reward of a
round's queries first reached the threshold (:func:`prefalign.reporting.metrics.queries_to_threshold`;
censored when never reached within the budget), the mean reward of each round's queries (the
curve over questions), and the fresh samples of the final aligned sampler at the trusted tilt
(the evaluation JSON's record: with a tilt grid it is the trusted tilt's row of
``frontier.csv``, :func:`prefalign.loop.evaluation.evaluate_campaign`): their reward, validity
and diversity, the numbers E1's final table shows.

Pairing is by user (and seed): each method minus the reference, a 95 % Student t interval over
the pairs (:func:`prefalign.reporting.comparison.paired_differences`). A campaign that never
reached the threshold counts as ``budget + k`` questions in the paired difference and in the
ratio of the Done-when (k: the questions of its last round, the next round's size), which the
table says.

:func:`write_population_report` writes ``tables/population.md``, ``tables/paired.csv``,
``figures/population.png`` and ``section.md``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from prefalign.io.json_text import read_json_object
from prefalign.io.listing import show
from prefalign.reporting import comparison, metrics
from prefalign.reporting.aggregate import query_rewards_files
from prefalign.reporting.figures import _caption, _save, _style, method_palette, metric_label
from prefalign.reporting.metrics import MetricsError, ci95
from prefalign.reporting.results_page import _link

__all__ = [
    "PRIOR_COST_KEYS",
    "Verdict",
    "paired_by_user",
    "population_rows",
    "population_table",
    "read_prior_meta",
    "user_of",
    "verdict",
    "write_population_report",
]

StrPath = str | os.PathLike[str]

#: ``{population}-u{III}``: a user of a population (loop.population's generated domains).
_USER = re.compile(r"^(?P<population>.+)-u(?P<index>\d{3,})$")
#: Keys of the prior's ``meta.json`` shown as its cost, with their labels.
PRIOR_COST_KEYS = {
    "fit_seconds": "fit time (s)",
    "n_users": "training users",
    "n_observations": "training answers",
}
#: Per-campaign metrics compared user by user, in table order (missing ones are skipped).
PAIRED_METRICS = (
    "questions",
    "final_query_reward",
    "round_mean_reward",
    "mean_reward",
    "eval_mean_reward",
    "validity_rate",
)
#: Metrics where fewer is better.
_LOWER_IS_BETTER = {"questions"}
_LABELS = {
    "questions": "questions to threshold",
    "final_query_reward": "query reward at the budget",
    "round_mean_reward": "query reward (rounds 1+)",
    "mean_reward": "fresh-sample reward (trusted tilt)",
    "eval_mean_reward": "fresh-sample reward (eval. oracle)",
    "validity_rate": "validity",
}


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric_label(metric))


def user_of(domain: str) -> tuple[str, str]:
    """``(population, user)`` of a user's domain: ``digits-users-u007`` ->
    ``("digits-users", "u007")``; a domain of another form is its own population and user."""
    match = _USER.match(domain)
    if not match:
        return domain, domain
    return match["population"], f"u{match['index']}"


# ----------------------------------------------------------------------------------------------
# per campaign


def population_rows(
    evaluations: Sequence[StrPath],
    observations: Sequence[StrPath],
    *,
    threshold: float,
    reference: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every held-out campaign's numbers: ``(per_campaign, rounds)``.

    ``rounds``: :func:`prefalign.reporting.metrics.campaign_round_metrics` of the observations
    (one row per campaign and round). ``per_campaign``: one row per (domain, method, seed), the
    evaluation (at the trusted tilt) beside the round summary
    (:func:`prefalign.reporting.comparison.per_seed_table`), plus ``population``, ``user``,
    ``budget`` (questions asked), ``k`` (questions of the last round), ``reached`` (the threshold
    within the budget), ``questions`` (``queries_to_threshold``, or ``budget + k`` when never
    reached) and ``final_query_reward`` (the mean reward of the last round's queries).

    Raises:
        MetricsError: evaluations and observations that disagree (see ``per_seed_table``), no
            campaign of ``reference``, a user (and seed) without every method, or a user whose
            arms spent different budgets.
    """
    rounds = metrics.campaign_round_metrics(
        observations, query_rewards=query_rewards_files(evaluations)
    )
    evals = comparison.load_evaluations(evaluations)
    per = comparison.per_seed_table(evals, rounds, threshold=threshold)
    methods = sorted(per["method"].unique())
    if reference not in methods:
        raise MetricsError(
            f"no campaign of the reference method {reference!r}; the evaluations hold "
            f"{show(methods, str)}"
        )
    if len(methods) < 2:
        raise MetricsError(f"only the reference method {reference!r}: nothing to compare with")
    arms = per.groupby(["domain", "seed"])["method"].apply(set)
    missing = [
        f"{domain} seed {seed} lacks {show(sorted(set(methods) - have), str)}"
        for (domain, seed), have in arms.items()
        if have != set(methods)
    ]
    if missing:
        raise MetricsError(
            "every user must run every arm to be paired by user: " + show(missing, str)
        )
    last = rounds.sort_values("round").groupby(list(metrics.CAMPAIGN_KEYS)).tail(2)
    sizes = {}
    finals = {}
    for key, g in last.groupby(list(metrics.CAMPAIGN_KEYS)):
        n = g["n_queries"].to_numpy()
        sizes[key] = int(n[-1] - n[-2]) if len(n) == 2 else int(n[-1])
        finals[key] = float(g["round_mean_reward"].iloc[-1])
    keys = list(zip(per["domain"], per["method"], per["seed"], strict=True))
    per["budget"] = per["final_n_queries"].astype(int)
    per["k"] = [sizes[k] for k in keys]
    per["final_query_reward"] = [finals[k] for k in keys]
    per["reached"] = per["queries_to_threshold"].notna()
    per["questions"] = per["queries_to_threshold"].where(per["reached"], per["budget"] + per["k"])
    budgets = per.groupby(["domain", "seed"])["budget"].nunique()
    unequal = [f"{d} seed {s}" for (d, s), n in budgets.items() if n > 1]
    if unequal:
        raise MetricsError(
            f"the arms of {show(unequal, str)} spent different budgets: their questions to "
            "threshold cannot be paired"
        )
    names = [user_of(d) for d in per["domain"]]
    per.insert(0, "population", [p for p, _ in names])
    per.insert(1, "user", [u for _, u in names])
    return per.sort_values(["domain", "seed", "method"], ignore_index=True), rounds


def _pairs(per: pd.DataFrame) -> pd.DataFrame:
    """``per`` with one pairing key per user and seed (``seed`` = ``domain/seed``) under a single
    ``domain``, so that :func:`comparison.paired_differences` pairs by user."""
    return per.assign(
        seed=per["domain"] + "/" + per["seed"].astype(str),
        domain="+".join(sorted(per["population"].unique())),
    )


def paired_by_user(per: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each method minus ``reference``, paired by user (and seed), per metric of
    :data:`PAIRED_METRICS` and each ``diversity_*`` column: ``n_pairs``, ``mean_difference``,
    ``ci95_low``, ``ci95_high`` (Student t over the pairs), ``wins`` (pairs where the method is
    higher) and ``better`` (pairs where the method is better: fewer questions, else higher)."""
    diversity = sorted(c for c in per.columns if c.startswith("diversity_"))
    wanted = [m for m in (*PAIRED_METRICS, *diversity) if m in per.columns]
    paired = comparison.paired_differences(_pairs(per), reference, metrics=wanted)
    paired["better"] = [
        r.n_pairs - r.wins - _ties(per, r.method, reference, r.metric)
        if r.metric in _LOWER_IS_BETTER
        else r.wins
        for r in paired.itertuples()
    ]
    return paired


def _ties(per: pd.DataFrame, method: str, reference: str, metric: str) -> int:
    wide = _wide(per, metric)
    d = (wide[method] - wide[reference]).to_numpy(np.float64)
    return int((d[np.isfinite(d)] == 0).sum())


def _wide(per: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` with one row per (domain, seed), one column per method."""
    return per.pivot(index=["domain", "seed"], columns="method", values=metric)


def paired_rows(per: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per user (and seed): each arm's numbers side by side (``<metric>_<method>``)
    and each method minus the reference (``<metric>_<method>_minus_<reference>``)."""
    methods = [reference, *sorted(m for m in per["method"].unique() if m != reference)]
    metrics_ = [
        "reached",
        "queries_to_threshold",
        "questions",
        *[m for m in PAIRED_METRICS if m != "questions" and m in per.columns],
        *sorted(c for c in per.columns if c.startswith("diversity_")),
    ]
    if "lam" in per.columns:
        metrics_.append("lam")
    base = per[per["method"] == reference][["population", "user", "domain", "seed", "budget"]]
    out = base.set_index(["domain", "seed"])
    for metric in metrics_:
        wide = _wide(per, metric)
        for m in methods:
            out[f"{metric}_{m}"] = wide[m]
        if metric in ("reached", "lam"):
            continue
        for m in methods[1:]:
            out[f"{metric}_{m}_minus_{reference}"] = wide[m].astype(float) - wide[reference].astype(
                float
            )
    return out.reset_index()[["population", "user", "domain", "seed", *out.columns[2:]]]


# ----------------------------------------------------------------------------------------------
# per arm


def _checkpoints(budgets: Sequence[int], most: int = 6) -> list[int]:
    """The question counts the table shows the query reward at: all of them when few, else
    ``most`` evenly spaced ones, the last always included."""
    budgets = sorted(set(int(b) for b in budgets))
    if len(budgets) <= most:
        return budgets
    picks = np.linspace(0, len(budgets) - 1, most).round().astype(int)
    return [budgets[i] for i in sorted(set(picks))]


def population_table(per: pd.DataFrame, rounds: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per arm (reference first): ``users``, ``campaigns``, questions to threshold
    (``questions_median`` over all campaigns, unreached counted as never, so the median is
    ``inf`` when half or more never reached; ``questions_mean`` and its ``_ci95`` over the
    campaigns that reached; ``n_reached``), the mean reward of the queries at each checkpoint
    of questions (``query_reward@<n>`` and ``_ci95`` over users), and the fresh samples at the
    trusted tilt (``mean_reward``, ``eval_mean_reward``, ``validity_rate``, ``diversity_*``, each
    with ``_ci95``); ``lam_median``: the median trusted tilt."""
    methods = [reference, *sorted(m for m in per["method"].unique() if m != reference)]
    checkpoints = _checkpoints(rounds["n_queries"])
    fresh = [
        m
        for m in ("mean_reward", "eval_mean_reward", "validity_rate")
        if m in per.columns and per[m].notna().any()
    ]
    fresh += sorted(c for c in per.columns if c.startswith("diversity_"))
    rows = []
    for method in methods:
        g = per[per["method"] == method]
        r = rounds[rounds["method"] == method]
        counted = g["queries_to_threshold"].fillna(math.inf).to_numpy(np.float64)
        row: dict[str, object] = {
            "method": method,
            "users": int(g["domain"].nunique()),
            "campaigns": len(g),
            "budget": int(g["budget"].max()),
            "questions_median": float(np.median(counted)),
            "n_reached": int(g["reached"].sum()),
        }
        row["questions_mean"], row["questions_mean_ci95"] = ci95(g["queries_to_threshold"])
        for n in checkpoints:
            at = r.loc[r["n_queries"] == n, "round_mean_reward"]
            row[f"query_reward@{n}"], row[f"query_reward@{n}_ci95"] = ci95(at)
        for m in fresh:
            row[m], row[f"{m}_ci95"] = ci95(g[m])
        if "lam" in g.columns and g["lam"].notna().any():
            row["lam_median"] = float(np.nanmedian(g["lam"].to_numpy(np.float64)))
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# the Done-when


class Verdict:
    """Whether held-out users reach the threshold with at most half the questions with
    ``method`` than with the reference, at fresh-sample reward no lower (the 95 % interval of
    the paired difference not below ``-margin``)."""

    def __init__(
        self,
        method: str,
        reference: str,
        questions: tuple[float, float],
        reward: pd.Series,
        *,
        margin: float = 0.0,
        max_ratio: float = 0.5,
        pairs: str = "users",
    ) -> None:
        self.method, self.reference, self.margin, self.max_ratio = (
            method,
            reference,
            margin,
            max_ratio,
        )
        self.questions_method, self.questions_reference = questions
        self.ratio = self.questions_method / self.questions_reference
        self.reward_difference = float(reward["mean_difference"])
        self.reward_low = float(reward["ci95_low"])
        self.reward_high = float(reward["ci95_high"])
        self.n_pairs = int(reward["n_pairs"])
        self.pairs = pairs
        self.fewer_questions = bool(self.ratio <= max_ratio)
        self.reward_no_lower = bool(math.isfinite(self.reward_low) and self.reward_low >= -margin)

    @property
    def holds(self) -> bool:
        return self.fewer_questions and self.reward_no_lower

    def line(self) -> str:
        """The Done-when as one sentence, with the numbers and by how much it falls short."""
        q = (
            f"{self.questions_method:.1f} questions with `{self.method}` vs "
            f"{self.questions_reference:.1f} with `{self.reference}` on average "
            f"(ratio {self.ratio:.2f}"
        )
        q += (
            ")"
            if self.fewer_questions
            else (
                f", above {self.max_ratio:g}: "
                f"{self.questions_method - self.max_ratio * self.questions_reference:.1f} "
                "questions more than allowed)"
            )
        )
        bound = f"{-self.margin:g}" if self.margin else "0"
        if not math.isfinite(self.reward_low):
            r = (
                f"fresh-sample reward {self.reward_difference:+.3f} over {self.n_pairs} pair(s): "
                "too few pairs for an interval"
            )
        else:
            r = (
                f"fresh-sample reward {self.reward_difference:+.3f} "
                f"[{self.reward_low:+.3f}, {self.reward_high:+.3f}] (95 % CI over "
                f"{self.n_pairs} {self.pairs})"
            )
            r += (
                f", lower bound ≥ {bound}"
                if self.reward_no_lower
                else f", lower bound {self.reward_low - (-self.margin):+.3f} below {bound}"
            )
        claim = (
            "held-out users reach the threshold with at most half the questions with the prior, "
            "at fresh-sample reward no lower"
        )
        if self.holds:
            return f"**Done-when holds**: {claim}: {q}; {r}."
        failed = [
            part
            for part, ok in (
                ("the questions are not halved", self.fewer_questions),
                ("the fresh-sample reward is not shown to be no lower", self.reward_no_lower),
            )
            if not ok
        ]
        return f"**Done-when does not hold** ({'; '.join(failed)}): {claim}? {q}; {r}."


def verdict(
    per: pd.DataFrame,
    paired: pd.DataFrame,
    method: str,
    reference: str,
    *,
    margin: float = 0.0,
) -> Verdict:
    """The Done-when of ``method`` against ``reference``: the ratio of their mean questions to
    threshold over the users (unreached counted as ``budget + k``) and the paired fresh-sample
    reward's interval (``paired`` from :func:`paired_by_user`)."""
    mean_q = per.groupby("method")["questions"].mean()
    reward = paired[(paired["method"] == method) & (paired["metric"] == "mean_reward")]
    if reward.empty:
        raise MetricsError(f"no paired fresh-sample reward of {method!r} against {reference!r}")
    return Verdict(
        method,
        reference,
        (float(mean_q[method]), float(mean_q[reference])),
        reward.iloc[0],
        margin=margin,
        pairs="users" if per["seed"].nunique() == 1 else "pairs of user and seed",
    )


# ----------------------------------------------------------------------------------------------
# the prior's cost


def read_prior_meta(path: StrPath | None) -> dict[str, object]:
    """The prior's cost from its ``meta.json``: the keys of :data:`PRIOR_COST_KEYS` that it has
    (others are missing, not errors); empty without a path.

    Raises:
        MetricsError: a file that cannot be read or does not hold a JSON object.
    """
    if path is None:
        return {}
    record = read_json_object(path, MetricsError, "prior meta file")
    # a population checkpoint (prefalign.learning.checkpoint.save_population) keeps its fit's
    # record under "fit"; keys at the top level are read too
    fit = record.get("fit")
    merged = {**(fit if isinstance(fit, dict) else {}), **record}
    return {k: merged[k] for k in PRIOR_COST_KEYS if k in merged}


def prior_cost_line(cost: Mapping[str, object]) -> str:
    if not cost:
        return (
            "The prior's cost: not recorded (its meta.json has none of "
            + ", ".join(f"`{k}`" for k in PRIOR_COST_KEYS)
            + ")."
        )
    parts = []
    for key, label in PRIOR_COST_KEYS.items():
        if key in cost:
            value = cost[key]
            text = f"{value:.1f}" if key == "fit_seconds" and _number(value) else f"{value}"
            parts.append(f"{label} {text}")
        else:
            parts.append(f"{label} not recorded")
    return "The prior's cost (fitted once on the training users, before any held-out user): " + (
        ", ".join(parts) + "."
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------
# Markdown


def _cell(mean: float, half: float, decimals: int = 3) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(half):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {half:.{decimals}f}"


def _questions_cell(row: Mapping[str, object]) -> tuple[str, str, str]:
    median = float(row["questions_median"])  # type: ignore[arg-type]
    med = f"> {row['budget']} (not reached)" if math.isinf(median) else f"{median:g}"
    mean = _cell(float(row["questions_mean"]), float(row["questions_mean_ci95"]), 1)  # type: ignore[arg-type]
    return med, mean, f"{row['n_reached']}/{row['campaigns']}"


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def population_markdown(
    table: pd.DataFrame,
    paired: pd.DataFrame,
    verdicts: Sequence[Verdict],
    *,
    threshold: float,
    reference: str,
) -> str:
    """The per-arm table, the paired differences and the Done-when, in Markdown."""
    checkpoints = [
        c.removeprefix("query_reward@")
        for c in table.columns
        if c.startswith("query_reward@") and not c.endswith("_ci95")
    ]
    fresh = [c for c in ("mean_reward", "eval_mean_reward", "validity_rate") if c in table.columns]
    fresh += sorted(
        c for c in table.columns if c.startswith("diversity_") and not c.endswith("_ci95")
    )
    header = [
        "arm",
        "users",
        "questions to threshold: median",
        "mean (reached)",
        "reached",
        *[f"query reward @{n}" for n in checkpoints],
        *[_label(c) for c in fresh],
    ]
    if "lam_median" in table.columns:
        header.append("trusted λ (median)")
    lines = [_row(header), "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in table.to_dict(orient="records"):
        users = str(row["users"])
        if row["campaigns"] != row["users"]:
            users += f" ({row['campaigns']} campaigns)"
        cells = [f"`{row['method']}`", users, *_questions_cell(row)]
        cells += [
            _cell(row[f"query_reward@{n}"], row[f"query_reward@{n}_ci95"]) for n in checkpoints
        ]
        cells += [_cell(row[c], row[f"{c}_ci95"]) for c in fresh]
        if "lam_median" in table.columns:
            lam = row.get("lam_median", math.nan)
            cells.append("n/a" if lam != lam else f"{lam:g}")
        lines.append(_row(cells))
    budget = int(table["budget"].max())
    lines += [
        "",
        f"Mean ± 95 % CI (Student t over users). Questions to threshold: the questions asked up "
        f"to the first round whose queries' mean reward reaches {threshold:g}; the median counts "
        f"a campaign that never reached it within its budget ({budget} questions) as never, the "
        "mean is over the campaigns that reached it. Query reward @n: the mean reward of the "
        "queries of the round that ends at n questions. Fresh samples: the final aligned "
        "sampler at its trusted tilt (the final evaluation's record).",
        "",
    ]
    methods = list(dict.fromkeys(paired["method"]))
    header = ["", *[f"`{m}` − `{reference}`" for m in methods]]
    lines += [_row(header), "|---|" + "---:|" * len(methods)]
    for metric in dict.fromkeys(paired["metric"]):
        cells = [_label(metric)]
        for m in methods:
            r = paired[(paired["method"] == m) & (paired["metric"] == metric)]
            if r.empty or not math.isfinite(r["mean_difference"].iloc[0]):
                cells.append("n/a")
                continue
            r = r.iloc[0]
            d = 1 if metric == "questions" else 3
            interval = (
                f" [{r['ci95_low']:+.{d}f}, {r['ci95_high']:+.{d}f}]"
                if math.isfinite(r["ci95_low"])
                else ""
            )
            cells.append(
                f"{r['mean_difference']:+.{d}f}{interval} (better {r['better']}/{r['n_pairs']})"
            )
        lines.append(_row(cells))
    lines += [
        "",
        "Paired by user: each arm minus the reference, mean difference [95 % t interval over "
        "users] (users where the arm is better: fewer questions, else higher). In the questions' "
        "difference and the ratio below, a campaign that never reached the threshold counts as "
        "its budget plus one more round (budget + k questions): a lower bound on what it would "
        "have needed, so an unreached reference flatters it and an unreached prior arm flatters "
        "the prior.",
        "",
    ]
    lines += [v.line() for v in verdicts]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# the figure


def _paired_panel(
    ax,
    per: pd.DataFrame,
    metric: str,
    methods: Sequence[str],
    colors: Mapping[str, str],
    *,
    censored: str | None = None,
) -> None:
    """Each user's value per arm, a grey line joining a user's arms, the users spread a little
    sideways so that equal values stay apart; ``x`` marks the censored campaigns (column
    ``censored`` false)."""
    wide = _wide(per, metric)[list(methods)].to_numpy(np.float64)
    flags = (
        _wide(per, censored)[list(methods)].astype(bool).to_numpy()
        if censored
        else np.ones(wide.shape, dtype=bool)
    )
    n = len(wide)
    shifts = (np.arange(n) / (n - 1) - 0.5) * 0.16 if n > 1 else np.zeros(1)
    xs = np.arange(len(methods))
    for values, shift in zip(wide, shifts, strict=True):
        ax.plot(xs + shift, values, color="#bbbbbb", lw=1, zorder=1)
    for i, m in enumerate(methods):
        ok = flags[:, i]
        x = i + shifts
        ax.scatter(x[ok], wide[ok, i], color=colors[m], s=30, zorder=3)
        if (~ok).any():
            ax.scatter(
                x[~ok],
                wide[~ok, i],
                color=colors[m],
                marker="x",
                s=40,
                zorder=3,
                label="not reached",
            )
    ax.set_xticks(xs, list(methods))
    ax.set_xlim(-0.4, len(methods) - 0.6)


def plot_population(
    per: pd.DataFrame, rounds: pd.DataFrame, reference: str, path: StrPath, *, threshold: float
) -> pd.DataFrame:
    """Left: mean reward of each round's queries against the questions, a line per arm (mean
    over users, 95 % t band); middle: questions to threshold per user, paired across the arms
    (``x``: never reached, drawn at budget + k above the dashed budget line); right: the
    fresh-sample reward at the trusted tilt per user, paired. Returns the curve's numbers
    (also written as CSV beside the PNG)."""
    methods = [reference, *sorted(m for m in per["method"].unique() if m != reference)]
    colors = method_palette(methods)
    rows = []
    for (method, n), g in rounds.groupby(["method", "n_queries"], sort=True):
        mean, half = ci95(g["round_mean_reward"])
        rows.append(
            {"method": method, "n_queries": int(n), "mean": mean, "ci95": half, "n_users": len(g)}
        )
    curve = pd.DataFrame(rows)
    axes_style, context = _style()
    with axes_style, context:
        fig = Figure(figsize=(13.0, 3.8), layout="constrained")
        left, middle, right = fig.subplots(1, 3, width_ratios=[1.6, 1, 1])
        for method in methods:
            c = curve[curve["method"] == method]
            half = np.nan_to_num(c["ci95"].to_numpy(np.float64))
            mean = c["mean"].to_numpy(np.float64)
            left.plot(
                c["n_queries"], mean, color=colors[method], lw=2, marker="o", ms=4, label=method
            )
            left.fill_between(
                c["n_queries"], mean - half, mean + half, color=colors[method], alpha=0.15, lw=0
            )
        left.axhline(threshold, color="#555555", ls=":", lw=1, label=f"threshold {threshold:g}")
        asked = sorted(curve["n_queries"].unique())
        if len(asked) <= 12:
            left.set_xticks(asked)
        else:
            left.xaxis.set_major_locator(MaxNLocator(integer=True))
        left.set_xlabel("questions asked")
        left.set_ylabel("mean reward of the round's queries")
        left.legend(frameon=False, fontsize="small")
        _paired_panel(middle, per, "questions", methods, colors, censored="reached")
        middle.axhline(per["budget"].max(), color="#555555", ls="--", lw=1)
        middle.set_ylabel("questions to threshold")
        handles, labels = middle.get_legend_handles_labels()
        if handles:
            middle.legend(handles[:1], labels[:1], frameon=False, fontsize="small")
        _paired_panel(right, per, "mean_reward", methods, colors)
        right.set_ylabel("fresh-sample reward (trusted tilt)")
        _caption(
            fig,
            f"{per['domain'].nunique()} held-out users; left: mean over users, 95% t band; "
            "middle and right: one line per user joining its arms; x: threshold never reached "
            "(drawn at budget + k; dashed: the budget)",
            left=True,
        )
        _save(fig, Path(path), curve)
    return curve


# ----------------------------------------------------------------------------------------------
# everything


def write_population_report(
    evaluations: Sequence[StrPath],
    observations: Sequence[StrPath],
    out: StrPath,
    *,
    threshold: float,
    reference: str = "fkc-al",
    prior_meta: StrPath | None = None,
    title: str | None = None,
    page_dir: StrPath = "results",
    margin: float = 0.0,
) -> Path:
    """Write ``out/tables/population.md`` (per arm, paired differences, the Done-when),
    ``out/tables/paired.csv`` (one row per user), ``out/tables/population.csv`` (the per-arm
    numbers), ``out/tables/campaigns.csv`` (one row per campaign), ``out/figures/population.png``
    (and its CSV) and ``out/section.md`` (links relative to ``page_dir``); returns the section's
    path."""
    out = Path(out)
    tables_dir, figures_dir = out / "tables", out / "figures"
    tables_dir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    cost = read_prior_meta(prior_meta)
    per, rounds = population_rows(
        evaluations, observations, threshold=threshold, reference=reference
    )
    per.to_csv(tables_dir / "campaigns.csv", index=False)
    table = population_table(per, rounds, reference)
    table.to_csv(tables_dir / "population.csv", index=False)
    paired = paired_by_user(per, reference)
    paired.to_csv(tables_dir / "paired_differences.csv", index=False)
    paired_rows(per, reference).to_csv(tables_dir / "paired.csv", index=False)
    methods = sorted(m for m in per["method"].unique() if m != reference)
    verdicts = [verdict(per, paired, m, reference, margin=margin) for m in methods]
    markdown = population_markdown(
        table, paired, verdicts, threshold=threshold, reference=reference
    )
    (tables_dir / "population.md").write_text(markdown, encoding="utf-8")
    figure = figures_dir / "population.png"
    plot_population(per, rounds, reference, figure, threshold=threshold)
    populations = sorted(per["population"].unique())
    section = out / "section.md"
    lines = [
        f"## {title or out.name}",
        "",
        f"{per['domain'].nunique()} held-out users of {', '.join(f'`{p}`' for p in populations)}"
        f" (users the prior never saw), each teaching the sampler with the population prior "
        f"({', '.join(f'`{m}`' for m in methods)}) and without it (`{reference}`), "
        f"seeds {sorted(per['seed'].unique().tolist())}, {int(per['budget'].max())} questions "
        "each; paired by user.",
        "",
        markdown.rstrip(),
        "",
        f"![population]({_link(figure, Path(page_dir))})",
        "",
        prior_cost_line(cost),
        "",
    ]
    section.write_text("\n".join(lines), encoding="utf-8")
    return section
