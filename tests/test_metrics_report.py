"""Metrics and report on synthetic campaigns with known rewards: 2 methods × 3 seeds × 4 rounds × k=5.

Expected numbers are computed by hand from the reward formula (plain Python, not the code under
test); confidence intervals with ``scipy.stats.t.interval``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prefalign.io.observations import append_round, new_round_frame, write_observations
from prefalign.reporting.comparison import final_table, load_evaluations
from prefalign.reporting.figures import (
    METHOD_COLORS,
    method_palette,
    plot_final_metrics,
    plot_learning_curves,
    plot_reward_vs_queries,
)
from prefalign.reporting.metrics import (
    MetricsError,
    campaign_round_metrics,
    ci95,
    queries_to_threshold,
    round_metrics,
)
from prefalign.reporting.tables import write_tables

DOMAIN = "mixture2d"
METHODS = ("fkc-al", "random")
SEEDS = (0, 1, 2)
ROUNDS = 4
K = 5
#: Mean reward of fresh samples, per method and seed (the evaluation JSON).
MEAN_REWARD = {"fkc-al": (0.6, 0.7, 0.8), "random": (0.3, 0.35, 0.5)}
VALIDITY = {"fkc-al": (0.9, 0.95, 1.0), "random": (1.0, 1.0, 0.98)}
MODES = {"fkc-al": (2.0, 2.0, 1.0), "random": (4.0, 3.0, 4.0)}


def reward(method: str, seed: int, round: int, i: int) -> float:
    """fkc-al improves with a dip in round 2; random gets worse after round 0."""
    if method == "fkc-al":
        return 0.2 + 0.15 * round + 0.02 * i + 0.01 * seed - (0.4 if round == 2 else 0.0)
    return 0.5 - 0.05 * round + 0.03 * i + 0.01 * seed


def rewards_of(method: str, seed: int, round: int) -> list[float]:
    return [reward(method, seed, round, i) for i in range(K)]


def selected_by(round: int) -> list[str]:
    return ["random"] * K if round == 0 else ["top"] * 3 + ["random"] * 2


def write_campaign(directory: Path, method: str, seed: int) -> Path:
    campaign = f"{DOMAIN}/{method}/{seed}"
    obs = None
    for r in range(ROUNDS):
        frame = new_round_frame(
            campaign,
            seed,
            r,
            ids=[f"{method}-{seed}-{r}-{i}" for i in range(K)],
            x=np.arange(2 * K, dtype=np.float32).reshape(K, 2) + 10 * r,
            rewards=rewards_of(method, seed, r),
            selected_by=selected_by(r),
            fk_log_weight=0.0 if r else np.nan,
            surrogate_pred=None if r == 0 else 0.5,
        )
        obs = append_round(obs, frame)
    path = directory / f"{method}-{seed}.parquet"
    write_observations(obs, path, (2,))
    return path


def evaluation(method: str, seed: int) -> dict:
    return {
        "campaign": f"{DOMAIN}/{method}/{seed}",
        "domain": DOMAIN,
        "method": method,
        "seed": seed,
        "n_queries": ROUNDS * K,
        "n_samples": 64,
        "mean_reward": MEAN_REWARD[method][seed],
        "reward_std": 0.1,
        "frac_above_threshold": 0.5,
        "validity_rate": VALIDITY[method][seed],
        "diversity": {"modes_covered": MODES[method][seed], "mean_pairwise_distance": 1.0 + seed},
        "eval_mean_reward": MEAN_REWARD[method][seed] - 0.1,
        "eval_oracle": "one-mode",
        "seconds": 1.5,
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    directory = tmp_path_factory.mktemp("campaigns")
    obs_paths, eval_paths = [], []
    for method in METHODS:
        for seed in SEEDS:
            obs_paths.append(write_campaign(directory, method, seed))
            path = directory / f"{method}-{seed}.json"
            path.write_text(json.dumps(evaluation(method, seed)))
            eval_paths.append(path)
    return obs_paths, eval_paths


@pytest.fixture(scope="module")
def rounds(files: tuple[list[Path], list[Path]]) -> pd.DataFrame:
    return campaign_round_metrics(files[0], k=K)


@pytest.fixture(scope="module")
def evals(files: tuple[list[Path], list[Path]]) -> pd.DataFrame:
    return load_evaluations(files[1])


def t_halfwidth(values: list[float]) -> float:
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return (hi - lo) / 2


# ----------------------------------------------------------------------------------------------
# round metrics


def test_round_metrics_match_hand_computation(rounds: pd.DataFrame) -> None:
    assert len(rounds) == len(METHODS) * len(SEEDS) * ROUNDS
    for method in METHODS:
        for seed in SEEDS:
            got = rounds[(rounds["method"] == method) & (rounds["seed"] == seed)]
            assert got["domain"].eq(DOMAIN).all()
            assert got["campaign"].eq(f"{DOMAIN}/{method}/{seed}").all()
            assert got["round"].tolist() == list(range(ROUNDS))
            seen: list[float] = []
            for r, row in zip(range(ROUNDS), got.itertuples(), strict=True):
                this = rewards_of(method, seed, r)
                seen += this
                top = sorted(seen, reverse=True)[:10]
                assert row.n_queries == K * (r + 1)
                assert row.round_mean_reward == pytest.approx(sum(this) / K)
                assert row.best_so_far == pytest.approx(max(seen))
                assert row.top10_mean == pytest.approx(sum(top) / len(top))
                assert (row.n_top, row.n_random) == ((0, K) if r == 0 else (3, 2))
            assert got["best_so_far"].is_monotonic_increasing
            # with 10 or more rewards the top 10 can only improve
            assert got.loc[got["n_queries"] >= 10, "top10_mean"].is_monotonic_increasing


def test_top10_mean_averages_all_rewards_when_fewer_than_ten(rounds: pd.DataFrame) -> None:
    first = rounds[(rounds["method"] == "random") & (rounds["round"] == 0)]
    for row in first.itertuples():
        assert row.top10_mean == pytest.approx(np.mean(rewards_of("random", row.seed, 0)))


def test_round_metrics_checks_k_and_seed(files: tuple[list[Path], list[Path]]) -> None:
    with pytest.raises(MetricsError, match="expected k=4"):
        campaign_round_metrics(files[0][:1], k=4)
    obs = pd.DataFrame(
        {"campaign": "d/m/3", "seed": 1, "round": 0, "reward": [1.0], "selected_by": "random"}
    )
    with pytest.raises(MetricsError, match="names seed 3 but its seed is 1"):
        round_metrics(obs)
    with pytest.raises(MetricsError, match="lack column"):
        round_metrics(obs.drop(columns="reward"))


def test_campaign_name_without_seed_takes_the_seed_column() -> None:
    obs = pd.DataFrame(
        {"campaign": "d/m", "seed": 7, "round": [0, 1], "reward": [1.0, 2.0], "selected_by": "top"}
    )
    got = round_metrics(obs)
    assert got[["domain", "method", "seed"]].drop_duplicates().values.tolist() == [["d", "m", 7]]
    assert got["n_random"].tolist() == [0, 0] and got["n_top"].tolist() == [1, 1]


def test_the_same_campaign_twice_is_an_error(files: tuple[list[Path], list[Path]]) -> None:
    with pytest.raises(MetricsError, match="in both"):
        campaign_round_metrics([files[0][0], files[0][0]])


# ----------------------------------------------------------------------------------------------
# final table


def test_ci95_is_student_t() -> None:
    values = [0.6, 0.7, 0.8]
    mean, half = ci95(values)
    assert mean == pytest.approx(0.7)
    assert half == pytest.approx(t_halfwidth(values))
    assert ci95([1.0, math.nan, 3.0]) == pytest.approx((2.0, t_halfwidth([1.0, 3.0])))
    one = ci95([2.5])
    assert one[0] == 2.5 and math.isnan(one[1])
    assert all(math.isnan(v) for v in ci95([]))


def test_final_table_means_and_cis(evals: pd.DataFrame, rounds: pd.DataFrame) -> None:
    table = final_table(evals, rounds).set_index("method")
    assert list(table["domain"]) == [DOMAIN, DOMAIN]
    for method in METHODS:
        row = table.loc[method]
        assert row["n_seeds"] == len(SEEDS)
        expected = {
            "mean_reward": list(MEAN_REWARD[method]),
            "validity_rate": list(VALIDITY[method]),
            "diversity_modes_covered": list(MODES[method]),
            "diversity_mean_pairwise_distance": [1.0, 2.0, 3.0],
            "eval_mean_reward": [v - 0.1 for v in MEAN_REWARD[method]],
            "round_mean_reward": [
                np.mean([np.mean(rewards_of(method, s, r)) for r in range(1, ROUNDS)])
                for s in SEEDS
            ],
            "final_best_so_far": [
                max(max(rewards_of(method, s, r)) for r in range(ROUNDS)) for s in SEEDS
            ],
            "final_top10_mean": [
                np.mean(sorted(sum((rewards_of(method, s, r) for r in range(ROUNDS)), []))[-10:])
                for s in SEEDS
            ],
        }
        for name, values in expected.items():
            assert row[name] == pytest.approx(np.mean(values)), name
            assert row[f"{name}_ci95"] == pytest.approx(t_halfwidth(values), abs=1e-12), name
    assert "seconds" not in table.columns and "n_samples" not in table.columns
    assert "queries_to_threshold" not in table.columns  # no threshold given


def test_final_table_with_one_seed_has_nan_ci(evals: pd.DataFrame, rounds: pd.DataFrame) -> None:
    table = final_table(evals[evals["seed"] == 0], rounds[rounds["seed"] == 0])
    assert (table["n_seeds"] == 1).all()
    assert table["mean_reward"].tolist() == [0.6, 0.3]
    assert table["mean_reward_ci95"].isna().all()


def test_queries_to_threshold(evals: pd.DataFrame, rounds: pd.DataFrame) -> None:
    # best so far of fkc-al by round: 0.28, 0.43, 0.43, 0.73 (+0.01 seed); random: 0.62 (+0.01 seed)
    hits = queries_to_threshold(rounds, 0.435, metric="best_so_far").set_index(["method", "seed"])[
        "queries_to_threshold"
    ]
    assert hits.loc["fkc-al"].tolist() == [20.0, 10.0, 10.0]
    assert hits.loc["random"].tolist() == [5.0, 5.0, 5.0]
    never = queries_to_threshold(rounds, 0.7, metric="best_so_far").set_index(["method", "seed"])[
        "queries_to_threshold"
    ]
    assert never.loc["fkc-al"].tolist() == [20.0, 20.0, 20.0]
    assert never.loc["random"].isna().all()

    def by_hand(method: str, seed: int, threshold: float) -> float:
        seen: list[float] = []
        for r in range(ROUNDS):
            seen += rewards_of(method, seed, r)
            top = sorted(seen)[-10:]
            if sum(top) / len(top) >= threshold:
                return float(len(seen))
        return math.nan

    top10 = queries_to_threshold(rounds, 0.5, metric="top10_mean")
    for row in top10.itertuples():
        expected = by_hand(row.method, row.seed, 0.5)
        assert row.queries_to_threshold == pytest.approx(expected, nan_ok=True)

    # the default curve: the mean reward of each round's queries, all questions counted
    by_round = queries_to_threshold(rounds, 0.3)
    for row in by_round.itertuples():
        seen, expected = 0, math.nan
        for r in range(ROUNDS):
            batch = rewards_of(row.method, row.seed, r)
            seen += len(batch)
            if sum(batch) / len(batch) >= 0.3:
                expected = float(seen)
                break
        assert row.queries_to_threshold == pytest.approx(expected, nan_ok=True)

    table = final_table(evals, rounds, threshold=0.435, threshold_metric="best_so_far").set_index(
        "method"
    )
    assert table.loc["fkc-al", "queries_to_threshold"] == pytest.approx(40 / 3)
    assert table.loc["fkc-al", "queries_to_threshold_ci95"] == pytest.approx(
        t_halfwidth([20, 10, 10])
    )
    table = final_table(evals, rounds, threshold=0.7).set_index("method")
    assert table.loc["random", "queries_to_threshold_n_reached"] == 0
    assert math.isnan(table.loc["random", "queries_to_threshold"])


def test_final_table_rejects_mismatched_inputs(evals: pd.DataFrame, rounds: pd.DataFrame) -> None:
    with pytest.raises(MetricsError, match="only evaluated mixture2d/fkc-al/0"):
        final_table(evals, rounds[~((rounds["method"] == "fkc-al") & (rounds["seed"] == 0))])
    stale = evals.assign(n_queries=np.where(evals["seed"] == 1, 15, evals["n_queries"]))
    with pytest.raises(MetricsError, match="stale"):
        final_table(stale, rounds)


# ----------------------------------------------------------------------------------------------
# evaluation files


def test_load_evaluations_flattens_diversity(evals: pd.DataFrame) -> None:
    assert len(evals) == 6
    assert {"diversity_modes_covered", "diversity_mean_pairwise_distance"} <= set(evals.columns)
    assert "diversity" not in evals.columns
    assert evals["eval_oracle"].eq("one-mode").all()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (json.dumps({k: v for k, v in evaluation("fkc-al", 0).items() if k != "diversity"}), "lacks key"),
        (json.dumps({**evaluation("fkc-al", 0), "mean_reward": "high"}), "'mean_reward' must be a number"),
        (json.dumps({**evaluation("fkc-al", 0), "seed": 1}), "names seed 0 but its seed is 1"),
        (json.dumps({**evaluation("fkc-al", 0), "diversity": {"modes": "two"}}), "diversity.modes"),
    ],
)  # fmt: skip
def test_malformed_evaluation_names_the_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "broken-eval.json"
    path.write_text(content)
    with pytest.raises(MetricsError, match=match) as info:
        load_evaluations([path])
    assert str(path) in str(info.value)


def test_missing_evaluation_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="nope.json"):
        load_evaluations([tmp_path / "nope.json"])


# ----------------------------------------------------------------------------------------------
# figures and tables


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert path.with_suffix(".csv").stat().st_size > 0


def test_figures_are_written(tmp_path: Path, evals: pd.DataFrame, rounds: pd.DataFrame) -> None:
    # two domains, so the panels and the shared legend are exercised
    other = rounds.assign(domain="digits")
    both = pd.concat([rounds, other], ignore_index=True)
    curve = plot_reward_vs_queries(both, tmp_path / "curves" / "round_mean.png")
    assert_png(tmp_path / "curves" / "round_mean.png")
    point = curve[(curve["method"] == "fkc-al") & (curve["n_queries"] == 10)].iloc[0]
    values = [np.mean(rewards_of("fkc-al", s, 1)) for s in SEEDS]
    assert point["mean"] == pytest.approx(np.mean(values))
    assert point["ci95"] == pytest.approx(t_halfwidth(values))

    summary = plot_learning_curves(both, tmp_path / "learning_curves.png")
    assert_png(tmp_path / "learning_curves.png")
    assert set(summary["metric"]) == {"round_mean_reward", "best_so_far", "top10_mean"}

    from_evals = plot_final_metrics(evals, tmp_path / "final_from_evals.png")
    assert_png(tmp_path / "final_from_evals.png")
    table = final_table(evals, rounds)
    from_table = plot_final_metrics(table, tmp_path / "final_from_table.png")
    assert_png(tmp_path / "final_from_table.png")
    pd.testing.assert_frame_equal(from_evals, from_table, check_dtype=False)
    assert set(from_evals["metric"]) == {"mean_reward", "validity_rate", "diversity_modes_covered"}


def test_final_metrics_draw_a_panel_only_where_a_metric_exists(
    tmp_path: Path, evals: pd.DataFrame
) -> None:
    """A domain without modes (digits: classes) gets its own diversity panel, not an empty
    "modes covered" one, and a method evaluated on one domain only has no row in the other."""
    digits = evals[evals["method"] == "fkc-al"].assign(
        domain="digits", diversity_modes_covered=np.nan, diversity_n_classes=[9.0, 10.0, 10.0]
    )
    mixture = evals.assign(diversity_n_classes=np.nan)
    summary = plot_final_metrics(pd.concat([mixture, digits]), tmp_path / "final.png")
    assert_png(tmp_path / "final.png")
    panels = summary.groupby("domain")["metric"].agg(set).to_dict()
    assert panels == {
        "digits": {"mean_reward", "validity_rate", "diversity_n_classes"},
        DOMAIN: {"mean_reward", "validity_rate", "diversity_modes_covered"},
    }
    assert summary.groupby("domain")["method"].agg(set).to_dict() == {
        "digits": {"fkc-al"},
        DOMAIN: set(METHODS),
    }
    assert summary["mean"].notna().all()
    row = summary[(summary["domain"] == "digits") & (summary["metric"] == "diversity_n_classes")]
    assert row["mean"].item() == pytest.approx(29 / 3)


def test_tables_are_written(tmp_path: Path, evals: pd.DataFrame, rounds: pd.DataFrame) -> None:
    table = final_table(evals, rounds, threshold=0.7)
    paths = write_tables(table, tmp_path / "tables" / "final")
    assert {p.name for p in paths.values()} == {"final.csv", "final.md", "final.tex"}
    assert all(p.stat().st_size > 0 for p in paths.values())

    back = pd.read_csv(paths["csv"])
    assert back["mean_reward"].tolist() == pytest.approx(table["mean_reward"].tolist())

    md = paths["md"].read_text()
    lines = md.splitlines()
    assert len(lines) == 2 + len(METHODS)
    assert "±" in md and "reward (fresh samples)" in lines[0]
    assert "0.700 ± " in next(line for line in lines if "fkc-al" in line)
    assert "not reached" in next(line for line in lines if "| random |" in line)

    tex = paths["tex"].read_text()
    assert "\\toprule" in tex and "$\\pm$" in tex and "\\bottomrule" in tex
    assert "domain & method & seeds" in tex and "queries to threshold" in tex


def test_method_colours_are_fixed() -> None:
    assert method_palette(["fkc-al", "random"])["fkc-al"] == METHOD_COLORS["fkc-al"]
    alone = method_palette(["my-new-method"])["my-new-method"]
    with_others = method_palette(["my-new-method", "fkc-al", "base", "random"])
    assert with_others["my-new-method"] == alone
    many = method_palette([f"m{i}" for i in range(8)])
    assert len(set(many.values())) == 8


def test_paired_differences_pair_by_seed_with_t_intervals(tmp_path) -> None:
    from scipy import stats

    from prefalign.reporting.comparison import paired_differences
    from prefalign.reporting.tables import write_paired_table

    rows = []
    for seed, (ref, new) in enumerate([(0.5, 0.7), (0.3, 0.4), (0.6, 0.55), (0.2, 0.5)]):
        rows.append({"domain": "d", "method": "best-of-n", "seed": seed, "mean_reward": ref})
        rows.append({"domain": "d", "method": "fkc-al", "seed": seed, "mean_reward": new})
    rows.append({"domain": "d", "method": "fkc-al", "seed": 9, "mean_reward": 5.0})  # unpaired
    paired = paired_differences(pd.DataFrame(rows), "best-of-n", metrics=["mean_reward", "nope"])
    assert len(paired) == 1
    row = paired.iloc[0]
    d = np.array([0.2, 0.1, -0.05, 0.3])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert row["n_pairs"] == 4 and row["wins"] == 3
    assert row["mean_difference"] == pytest.approx(d.mean())
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    md = write_paired_table(paired, tmp_path / "paired")["md"].read_text()
    assert "fkc-al" in md and "(3/4)" in md and "− best-of-n" in md
    empty = paired_differences(pd.DataFrame(rows), "absent")
    assert empty.empty
    assert "no reference" in write_paired_table(empty, tmp_path / "e")["md"].read_text()
