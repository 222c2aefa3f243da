"""The population report (issue 30) on synthetic held-out users with known rewards: 4 users ×
2 arms (``fkc-al-prior`` with the prior, ``fkc-al`` without) × 1 seed × 3 rounds of k=4 questions.

The files are written where and as the workflow writes them: the final observation dataset of
each campaign (``results/observations/{user}/{method}/seed0/round2.parquet``, every answer of
rounds 0..2, :mod:`prefalign.io.observations`) and its evaluation JSON
(``results/evaluation/{user}/{method}/seed0.json``: the trusted tilt's record of the frontier,
with ``frontier.csv`` beside it, as :func:`prefalign.loop.evaluation.evaluate_campaign` writes
them). Expected numbers are computed by hand below (plain Python / scipy, not the code under
test).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prefalign.cli import run_command
from prefalign.io.observations import append_round, new_round_frame, write_observations
from prefalign.reporting.metrics import MetricsError
from prefalign.reporting.population import (
    Verdict,
    population_rows,
    read_prior_meta,
    write_population_report,
)

POPULATION = "toy-users"
USERS = [f"{POPULATION}-u{i:03d}" for i in range(8, 12)]  # the held-out ones
REF, PRIOR = "fkc-al", "fkc-al-prior"
K, ROUNDS = 4, 3
BUDGET = K * ROUNDS
THRESHOLD = 0.45
#: Offsets of a round's k rewards around its mean (symmetric: the round mean is the base).
OFFSETS = (-0.03, -0.01, 0.01, 0.03)
#: Mean reward of each round's queries, per arm and user. Threshold 0.45:
#: fkc-al reaches it at 12, 8, never (censored: 12 + 4 = 16), 12 questions;
#: fkc-al-prior at 4, 4, 8, 8.
QUERY_MEANS = {
    REF: ([0.1, 0.3, 0.6], [0.2, 0.5, 0.7], [0.1, 0.2, 0.3], [0.2, 0.4, 0.55]),
    PRIOR: ([0.55, 0.7, 0.8], [0.6, 0.7, 0.8], [0.3, 0.5, 0.6], [0.4, 0.52, 0.6]),
}
#: Fresh-sample reward, validity and diversity at the trusted tilt, per arm and user.
FRESH = {REF: (0.50, 0.60, 0.40, 0.55), PRIOR: (0.55, 0.62, 0.45, 0.60)}
VALIDITY = {REF: (0.9, 0.95, 1.0, 0.85), PRIOR: (0.92, 0.9, 0.97, 0.88)}
ENTROPY = {REF: (1.0, 1.2, 0.8, 1.1), PRIOR: (0.9, 1.3, 0.8, 1.0)}
#: The grid of tilts the frontier holds; index 1 (λ = 2) is the trusted one. The other rows
#: carry a different reward so that reading the wrong tilt would show.
LAMS = (1.0, 2.0, 4.0)
TRUSTED = 1


def t_half(values: list[float]) -> float:
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return (hi - lo) / 2


def write_campaign(root: Path, user: int, method: str, query_means, fresh) -> tuple[Path, Path]:
    domain = USERS[user]
    campaign = f"{domain}/{method}/0"
    obs = None
    for r, base in enumerate(query_means[method][user]):
        frame = new_round_frame(
            campaign,
            0,
            r,
            ids=[f"{method}-{user}-{r}-{i}" for i in range(K)],
            x=np.arange(2 * K, dtype=np.float32).reshape(K, 2) + 10 * r,
            rewards=[base + o for o in OFFSETS],
            selected_by=["random"] * K if r == 0 else ["top"] * K,
            fk_log_weight=0.0 if r else np.nan,
            surrogate_pred=None if r == 0 else 0.5,
        )
        obs = append_round(obs, frame)
    obs_path = root / "observations" / domain / method / "seed0" / f"round{ROUNDS - 1}.parquet"
    obs_path.parent.mkdir(parents=True, exist_ok=True)
    write_observations(obs, obs_path, (2,))
    frontier = []
    for i, lam in enumerate(LAMS):
        frontier.append(
            {
                "campaign": campaign,
                "domain": domain,
                "method": method,
                "seed": 0,
                "n_queries": BUDGET,
                "n_samples": 64,
                "mean_reward": fresh[method][user] if i == TRUSTED else 0.01 * i,
                "reward_std": 0.1,
                "frac_above_threshold": 0.5,
                "eval_mean_reward": fresh[method][user] - 0.1 if i == TRUSTED else 0.0,
                "validity_rate": VALIDITY[method][user] if i == TRUSTED else 0.1,
                "diversity": {"class_entropy": ENTROPY[method][user] if i == TRUSTED else 0.0},
                "weighted": False,
                "eval_ess": 64.0,
                "eval_oracle": "prefalign oracle builtin digits eval-thick-3",
                "oracle_in_evaluation": True,
                "seconds": 1.5,
                "seconds_per_sample": 1.5 / 64,
                "network_evals_per_sample": 40.0,
                "lam": lam,
                "surrogate_mean": 0.5,
                "surrogate_std": 0.1,
                "trusted": i == TRUSTED,
            }
        )
    eval_path = root / "evaluation" / domain / method / "seed0.json"
    eval_path.parent.mkdir(parents=True, exist_ok=True)
    eval_path.write_text(json.dumps(frontier[TRUSTED], indent=2) + "\n")
    (eval_path.with_suffix("")).mkdir()
    with open(eval_path.with_suffix("") / "frontier.csv", "w", newline="") as f:
        rows = [
            {**{k: v for k, v in r.items() if k != "diversity"}, "diversity_class_entropy": 0.0}
            for r in frontier
        ]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return eval_path, obs_path


def write_population(
    root: Path, query_means=QUERY_MEANS, fresh=FRESH, skip: tuple[int, str] | None = None
) -> tuple[list[Path], list[Path]]:
    evals, obs = [], []
    for user in range(len(USERS)):
        for method in (REF, PRIOR):
            if (user, method) == skip:
                continue
            e, o = write_campaign(root, user, method, query_means, fresh)
            evals.append(e)
            obs.append(o)
    return evals, obs


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pop") / "results"
    evals, obs = write_population(root)
    meta = root / "populations" / POPULATION / "prior" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"fit_seconds": 12.34, "n_users": 8, "other": [1]}))
    out = root / "experiments" / "U1"
    code = run_command(
        [
            "population-report",
            "--evaluations",
            *map(str, evals),
            "--observations",
            *map(str, obs),
            "--prior-meta",
            str(meta),
            "--reference",
            REF,
            "--threshold",
            str(THRESHOLD),
            "--title",
            "U1: many users at once",
            "--out",
            str(out),
            "--page-dir",
            str(root),
        ]
    )
    assert code == 0
    return out


# ----------------------------------------------------------------------------------------------
# numbers


def test_paired_csv_has_one_row_per_user_with_censoring(report: Path) -> None:
    paired = pd.read_csv(report / "tables" / "paired.csv")
    assert paired["domain"].tolist() == USERS
    assert paired["user"].tolist() == ["u008", "u009", "u010", "u011"]
    assert paired["population"].unique().tolist() == [POPULATION]
    assert paired[f"questions_{REF}"].tolist() == [12, 8, 16, 12]  # u010: budget + k
    assert paired[f"reached_{REF}"].tolist() == [True, True, False, True]
    assert paired[f"queries_to_threshold_{REF}"].isna().tolist() == [False, False, True, False]
    assert paired[f"questions_{PRIOR}"].tolist() == [4, 4, 8, 8]
    assert paired[f"questions_{PRIOR}_minus_{REF}"].tolist() == [-8, -4, -8, -4]
    # the trusted tilt's record, not the other tilts of the frontier
    assert paired[f"mean_reward_{PRIOR}"].tolist() == pytest.approx(FRESH[PRIOR])
    assert paired[f"lam_{REF}"].tolist() == [LAMS[TRUSTED]] * 4
    diff = [a - b for a, b in zip(FRESH[PRIOR], FRESH[REF], strict=True)]
    assert paired[f"mean_reward_{PRIOR}_minus_{REF}"].tolist() == pytest.approx(diff)
    finals = [m[-1] for m in QUERY_MEANS[PRIOR]]
    assert paired[f"final_query_reward_{PRIOR}"].tolist() == pytest.approx(finals)


def test_per_arm_table_matches_hand_computation(report: Path) -> None:
    table = pd.read_csv(report / "tables" / "population.csv").set_index("method")
    assert table.index.tolist() == [REF, PRIOR]  # reference first
    ref, prior = table.loc[REF], table.loc[PRIOR]
    assert ref["users"] == prior["users"] == 4
    # median over [8, 12, 12, never] is 12; over [4, 4, 8, 8] it is 6
    assert ref["questions_median"] == 12 and prior["questions_median"] == 6
    assert ref["n_reached"] == 3 and prior["n_reached"] == 4
    assert ref["questions_mean"] == pytest.approx((12 + 8 + 12) / 3)
    assert ref["questions_mean_ci95"] == pytest.approx(t_half([12, 8, 12]))
    for r, n in enumerate((4, 8, 12)):
        values = [m[r] for m in QUERY_MEANS[PRIOR]]
        assert prior[f"query_reward@{n}"] == pytest.approx(np.mean(values))
        assert prior[f"query_reward@{n}_ci95"] == pytest.approx(t_half(values))
    assert prior["mean_reward"] == pytest.approx(np.mean(FRESH[PRIOR]))
    assert prior["mean_reward_ci95"] == pytest.approx(t_half(list(FRESH[PRIOR])))
    assert ref["validity_rate"] == pytest.approx(np.mean(VALIDITY[REF]))
    assert ref["diversity_class_entropy"] == pytest.approx(np.mean(ENTROPY[REF]))
    assert ref["lam_median"] == LAMS[TRUSTED]


def test_paired_differences_are_t_intervals_over_users(report: Path) -> None:
    paired = pd.read_csv(report / "tables" / "paired_differences.csv").set_index("metric")
    q = paired.loc["questions"]
    d = [-8.0, -4.0, -8.0, -4.0]
    assert q["n_pairs"] == 4
    assert q["mean_difference"] == pytest.approx(-6.0)
    assert q["ci95_low"] == pytest.approx(-6.0 - t_half(d))
    assert q["better"] == 4  # fewer questions for every user
    r = paired.loc["mean_reward"]
    d = [a - b for a, b in zip(FRESH[PRIOR], FRESH[REF], strict=True)]
    assert r["mean_difference"] == pytest.approx(np.mean(d))
    assert r["ci95_low"] == pytest.approx(np.mean(d) - t_half(d))
    assert r["ci95_high"] == pytest.approx(np.mean(d) + t_half(d))
    assert r["better"] == 4
    assert paired.loc["diversity_class_entropy", "better"] == 1


def test_markdown_and_section(report: Path) -> None:
    md = (report / "tables" / "population.md").read_text()
    assert "> 12 (not reached)" not in md  # the reference's median is reached (12)
    assert "| `fkc-al` | 4 | 12 | 10.7 ± " in md
    assert "| 3/4 |" in md and "| 4/4 |" in md
    assert "budget + k" in md
    # 6 vs 12 questions: exactly half, which is "at most half"
    assert "**Done-when holds**" in md
    assert "6.0 questions with `fkc-al-prior` vs 12.0 with `fkc-al`" in md
    assert "ratio 0.50" in md
    section = (report / "section.md").read_text()
    assert section.startswith("## U1: many users at once\n")
    assert "![population](experiments/U1/figures/population.png)" in section
    assert md.strip() in section
    assert "fit time (s) 12.3, training users 8, training answers not recorded." in section
    png = report / "figures" / "population.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = pd.read_csv(png.with_suffix(".csv"))
    assert sorted(curve["n_queries"].unique()) == [4, 8, 12]
    at8 = curve[(curve["method"] == REF) & (curve["n_queries"] == 8)].iloc[0]
    values = [m[1] for m in QUERY_MEANS[REF]]
    assert at8["mean"] == pytest.approx(np.mean(values))
    assert at8["ci95"] == pytest.approx(t_half(values))


def test_verdict_fails_and_says_by_how_much(tmp_path: Path) -> None:
    # the prior helps only user u009 (4 questions instead of 8) and lowers the fresh reward
    means = {
        REF: QUERY_MEANS[REF],
        PRIOR: (*QUERY_MEANS[REF][:1], QUERY_MEANS[PRIOR][1], *QUERY_MEANS[REF][2:]),
    }
    fresh = {REF: FRESH[REF], PRIOR: (0.45, 0.50, 0.39, 0.50)}
    evals, obs = write_population(tmp_path / "results", means, fresh)
    write_population_report(evals, obs, tmp_path / "out", threshold=THRESHOLD, reference=REF)
    md = (tmp_path / "out" / "tables" / "population.md").read_text()
    assert "**Done-when does not hold** (the questions are not halved; the fresh-sample " in md
    # (12 + 4 + 16 + 12) / 4 = 11 vs 12: ratio 0.92, 11 - 6 = 5 questions too many
    assert "11.0 questions with `fkc-al-prior` vs 12.0 with `fkc-al`" in md
    assert "ratio 0.92, above 0.5: 5.0 questions more than allowed" in md
    d = [a - b for a, b in zip(fresh[PRIOR], fresh[REF], strict=True)]
    low = np.mean(d) - t_half(d)
    assert f"lower bound {low:+.3f} below 0" in md
    paired = pd.read_csv(tmp_path / "out" / "tables" / "paired.csv")
    assert paired[f"reached_{PRIOR}"].tolist() == [True, True, False, True]


# ----------------------------------------------------------------------------------------------
# bad input


def test_no_reference_arm_is_an_error(tmp_path: Path) -> None:
    evals, obs = write_population(tmp_path)
    with pytest.raises(MetricsError, match="no campaign of the reference method 'base'"):
        population_rows(evals, obs, threshold=THRESHOLD, reference="base")


def test_a_user_missing_an_arm_is_an_error(tmp_path: Path) -> None:
    evals, obs = write_population(tmp_path, skip=(2, PRIOR))
    with pytest.raises(MetricsError, match=r"toy-users-u010 seed 0 lacks fkc-al-prior"):
        population_rows(evals, obs, threshold=THRESHOLD, reference=REF)


def test_evaluations_without_observations_are_an_error(tmp_path: Path) -> None:
    evals, obs = write_population(tmp_path)
    with pytest.raises(MetricsError, match="cover different campaigns"):
        population_rows(evals, obs[:-1], threshold=THRESHOLD, reference=REF)


def test_the_cli_reports_bad_input_clearly(tmp_path: Path, capsys) -> None:
    evals, obs = write_population(tmp_path, skip=(0, REF))
    args = ["population-report", "--evaluations", *map(str, evals), "--observations"]
    args += [*map(str, obs), "--threshold", "0.45", "--out", str(tmp_path / "o")]
    code = run_command([*args, "--page-dir", str(tmp_path)])
    assert code != 0
    assert "toy-users-u008 seed 0 lacks fkc-al" in capsys.readouterr().err


def test_prior_meta_tolerates_missing_keys_not_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"n_observations": 96, "seed": 0}))
    assert read_prior_meta(path) == {"n_observations": 96}
    assert read_prior_meta(None) == {}
    path.write_text("[1, 2]")
    with pytest.raises(MetricsError, match="must hold a JSON object"):
        read_prior_meta(path)
    with pytest.raises(MetricsError, match="cannot be read"):
        read_prior_meta(tmp_path / "absent.json")


def test_verdict_margin_and_too_few_pairs() -> None:
    reward = pd.Series(
        {"mean_difference": -0.01, "ci95_low": -0.03, "ci95_high": 0.01, "n_pairs": 4}
    )
    strict = Verdict(PRIOR, REF, (5.0, 12.0), reward)
    assert strict.fewer_questions and not strict.reward_no_lower and not strict.holds
    assert "lower bound -0.030 below 0" in strict.line()
    lenient = Verdict(PRIOR, REF, (5.0, 12.0), reward, margin=0.05)
    assert lenient.holds
    assert "lower bound ≥ -0.05" in lenient.line()
    one = pd.Series({"mean_difference": 0.1, "ci95_low": np.nan, "ci95_high": np.nan, "n_pairs": 1})
    alone = Verdict(PRIOR, REF, (5.0, 12.0), one)
    assert not alone.holds
    assert "too few pairs for an interval" in alone.line()
