"""The tilt frontier: the final evaluation at a grid of tilts, the trusted tilt picked without the
user's reward, and its aggregation over seeds into a table, paired differences and a figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefalign.loop.campaign import run_campaign
from prefalign.loop.evaluation import evaluate_campaign, trusted_tilt
from prefalign.loop.spec import campaign_spec
from prefalign.oracles.builtin import answer_in_process
from prefalign.reporting import frontier
from prefalign.settings import FinalTilt

LAMS = [0.0, 4.0, 16.0]


def _config(**final_tilt) -> dict:
    return {
        "budget": 16,
        "k": 8,
        "n_particles": 64,
        "eval_particles": 32,
        "final_tilt": {"lams": LAMS, "pessimism": 1.0, **final_tilt},
        "domains": {
            "mixture2d": {
                "oracle": ["prefalign", "oracle", "builtin", "mixture2d", "one-mode"],
                "true_reward": "one-mode",
                "sampler": {"n_steps": 20, "lam_max": 8.0},
                "surrogate": {"arch": "gp"},
            }
        },
        "methods": {
            "fkc-al": {"sampler": {"variant": "fkc"}, "explore_from": "base", "batch": "lineage"},
            "best-of-n": {
                "sampler": {"variant": "base"},
                "selection": "greedy",
                "score": "surrogate",
            },
            "true-reward": {"sampler": {"variant": "fkc"}, "true_reward": True},
        },
    }


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """Two seeds of three methods, each run and evaluated on the grid; -> evaluation files."""
    root = tmp_path_factory.mktemp("frontier")
    config = _config()
    files = {}
    for method in ("fkc-al", "best-of-n", "true-reward"):
        for seed in (0, 1):
            spec = campaign_spec(config, "mixture2d", method, seed)
            work = root / "campaigns" / method / f"seed{seed}"
            run = run_campaign(spec, work, runner=answer_in_process, fit_last=True)
            out = root / "evaluation" / method / f"seed{seed}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            samples = out.with_suffix("") / "samples.npz"
            samples.parent.mkdir(parents=True, exist_ok=True)
            evaluate_campaign(spec, run.surrogate, out, samples, runner=answer_in_process)
            files[(method, seed)] = out
    return files


def test_each_tilt_of_the_grid_is_a_row_and_the_record_is_the_trusted_one(
    evaluated: dict[tuple[str, int], Path],
) -> None:
    for (method, _seed), path in evaluated.items():
        table = pd.read_csv(frontier.frontier_path(path))
        assert table["lam"].tolist() == LAMS
        assert table["trusted"].sum() == 1
        record = json.loads(path.read_text())
        row = table[table["trusted"]].iloc[0]
        assert record["lam"] == row["lam"] and record["trusted"] is True
        assert record["mean_reward"] == pytest.approx(row["mean_reward"])
        if method == "true-reward":  # no surrogate to doubt: the domain's tilt (8) or below
            assert record["lam"] == 4.0
            # the user's exact reward: a stronger tilt gives more of what the user likes
            assert table["mean_reward"].is_monotonic_increasing
            continue
        bound = FinalTilt().max_std
        allowed = table[(table["surrogate_std"] <= bound) | (table["lam"] <= 8.0)]["lam"]
        assert record["lam"] == allowed.max()


def test_the_trusted_rule_reads_the_surrogate_not_the_reward() -> None:
    spec = campaign_spec(_config(max_std=0.05), "mixture2d", "fkc-al", 0)
    records = [
        {"lam": 0.0, "surrogate_std": 0.2, "mean_reward": 0.0},
        {"lam": 4.0, "surrogate_std": 0.04, "mean_reward": 0.1},
        {"lam": 16.0, "surrogate_std": 0.05, "mean_reward": 0.9},
        {"lam": 64.0, "surrogate_std": 0.3, "mean_reward": 1.0},
    ]
    assert trusted_tilt(spec, records) == 2
    for r in records:
        r["surrogate_std"] = 1.0  # nothing within the bound: the configured tilt (lam_max 8)
    assert trusted_tilt(spec, records) == 1
    # a grid with nothing at or below the configured tilt and nothing trusted: its weakest
    above = [dict(r, lam=r["lam"] + 10.0) for r in records]
    assert trusted_tilt(spec, above) == 0


def test_the_configured_tilt_is_the_evaluation_samplers() -> None:
    """best-of-n samples the base model in its rounds: its final sampler's tilt is FKC's."""
    spec = campaign_spec(_config(), "mixture2d", "best-of-n", 0)
    records = [{"lam": lam, "surrogate_std": 1.0, "mean_reward": 0.0} for lam in (0, 8, 16)]
    assert spec.method.sampler.variant == "base"
    assert trusted_tilt(spec, records) == 1


def test_frontier_table_figure_and_paired_differences(
    evaluated: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    tables.mkdir()
    figures.mkdir()
    assert frontier.write_frontier(list(evaluated.values()), "best-of-n", tables, figures)
    table = pd.read_csv(tables / "frontier.csv")
    assert len(table) == 3 * len(LAMS) and set(table["n_seeds"]) == {2}
    assert table.groupby("method")["trusted_seeds"].sum().to_dict() == {
        "best-of-n": 2,
        "fkc-al": 2,
        "true-reward": 2,
    }
    paired = pd.read_csv(tables / "frontier_paired.csv")
    one = paired[(paired["method"] == "fkc-al") & (paired["metric"] == "mean_reward")]
    assert len(one) == len(LAMS) and set(one["n_pairs"]) == {2}
    # the paired difference is the mean of the seeds' differences
    rows = frontier.load_frontiers(list(evaluated.values()))
    at = rows[rows["lam"] == 16.0].set_index(["method", "seed"])["mean_reward"]
    want = np.mean([at["fkc-al", s] - at["best-of-n", s] for s in (0, 1)])
    assert one[one["lam"] == 16.0]["mean_difference"].iloc[0] == pytest.approx(want)
    assert (figures / "frontier.png").stat().st_size > 10_000
    md = (tables / "frontier.md").read_text()
    assert "fkc-al − best-of-n: reward" in md and "**mixture2d**" in md


def test_the_figure_draws_only_domains_with_a_grid(
    evaluated: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """A domain evaluated at one tilt (no grid) has no frontier: the figure leaves it out
    instead of drawing a row of lone dots; the tables still hold it."""
    rows = frontier.load_frontiers(list(evaluated.values()))
    single = rows[rows["lam"] == 4.0].assign(domain="one-tilt")
    summary = frontier.plot_frontier(pd.concat([rows, single]), tmp_path / "frontier.png")
    assert set(summary["domain"]) == {"mixture2d"}
    assert (tmp_path / "frontier.png").stat().st_size > 10_000
    assert set(frontier.frontier_table(pd.concat([rows, single]))["domain"]) == {
        "mixture2d",
        "one-tilt",
    }


def test_one_tilt_writes_no_frontier(tmp_path: Path) -> None:
    """Without a grid each campaign's frontier.csv has the one tilt, and no figure is drawn."""
    config = _config()
    config["final_tilt"] = {}
    spec = campaign_spec(config, "mixture2d", "fkc-al", 0)
    run = run_campaign(spec, tmp_path / "c", runner=answer_in_process, fit_last=True)
    out = tmp_path / "e" / "seed0.json"
    (tmp_path / "e" / "seed0").mkdir(parents=True)
    record = evaluate_campaign(
        spec, run.surrogate, out, tmp_path / "e" / "seed0" / "samples.npz", runner=answer_in_process
    )
    assert "lam" not in record
    table = pd.read_csv(frontier.frontier_path(out))
    assert table["lam"].tolist() == [8.0] and bool(table["trusted"].iloc[0])
    assert not frontier.write_frontier([out], "best-of-n", tmp_path, tmp_path)


@pytest.mark.slow
def test_the_workflow_leads_the_page_with_the_frontier(tmp_path: Path) -> None:
    """A tiny run with a grid of tilts: every evaluate job writes its frontier, the experiment's
    aggregate draws the figure and tables, the page's section starts with them, and a second
    dry run has nothing to do."""
    from workflow_helpers import run_snakemake, tiny_config, workdir

    config = tiny_config(
        final_tilt={"lams": [0.0, 8.0, 32.0], "pessimism": 1.0, "max_std": 0.1},
        experiments={
            "E1": {
                "title": "E1: frontier",
                "domains": ["mixture2d"],
                "methods": ["fkc-al", "random", "true-reward"],
                "seeds": [0, 1],
                "reference": "random",
            }
        },
    )
    config["domains"]["mixture2d"]["surrogate"] = {"arch": "gp"}
    config["domains"]["mixture2d"]["true_reward"] = "one-mode"
    config["methods"]["true-reward"] = {"sampler": {"variant": "fkc"}, "true_reward": True}
    wd = workdir(tmp_path, config)
    run_snakemake(wd)
    for method in ("fkc-al", "random", "true-reward"):
        table = pd.read_csv(wd / f"results/evaluation/mixture2d/{method}/seed0/frontier.csv")
        assert table["lam"].tolist() == [0.0, 8.0, 32.0] and table["trusted"].sum() == 1
    exp = wd / "results/experiments/E1"
    assert (exp / "figures/frontier.png").is_file()
    paired = pd.read_csv(exp / "tables/frontier_paired.csv")
    assert set(paired["method"]) == {"fkc-al", "true-reward"} and set(paired["n_pairs"]) == {2}
    section = (exp / "section.md").read_text()
    assert section.index("tilt frontier") < section.index("| domain")
    assert "figures/frontier.png" in (wd / "results/README.md").read_text()
    again = run_snakemake(wd, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
