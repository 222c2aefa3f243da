"""benchmarks/reproducibility.py: two runs agree bit for bit, within the seeds' confidence
intervals, or not; and where two campaigns' datasets differ, from which round, query and step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.observations import append_round, new_round_frame, write_observations

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "reproducibility", REPO / "benchmarks" / "reproducibility.py"
)
assert _spec is not None and _spec.loader is not None
reproducibility = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = reproducibility  # its dataclass looks its module up
_spec.loader.exec_module(reproducibility)

CAMPAIGN = "mixture2d/fkc-al/seed0"
K = 4


def _observations(root: Path, *, nudge: tuple[int, int, str] | None = None) -> None:
    """Three cumulative rounds of one campaign; ``nudge = (round, query, column)`` changes one
    value (and, as a real run would, every round after it)."""
    folder = root / "results/observations" / CAMPAIGN
    folder.mkdir(parents=True)
    obs = None
    for r in range(3):
        x = np.arange(2 * K, dtype=np.float32).reshape(K, 2) + 10 * r
        rewards = np.linspace(0.1, 0.4, K) + 0.1 * r
        if nudge is not None and r >= nudge[0]:
            i = nudge[1] if r == nudge[0] else 0
            if nudge[2] == "x":
                x[i, 0] += 1e-6
            else:
                rewards[i] += 0.25
        frame = new_round_frame(
            CAMPAIGN, 0, r, ids=[f"{r}-{i}" for i in range(K)], x=x, rewards=rewards,
            selected_by=["random"] * K, fk_log_weight=np.nan, surrogate_pred=None,
        )  # fmt: skip
        obs = append_round(obs, frame)
        write_observations(obs, folder / f"round{r}.parquet", (2,))


def _run(root: Path, rewards: list[float], nudge: tuple[int, int, str] | None = None) -> Path:
    tables = root / "results/experiments/E1/tables"
    tables.mkdir(parents=True)
    pd.DataFrame(
        {
            "domain": "mixture2d",
            "method": "fkc-al",
            "seed": range(len(rewards)),
            "mean_reward": rewards,
            "validity_rate": 1.0,
        }
    ).to_csv(tables / "evaluations.csv", index=False)
    _observations(root, nudge=nudge)
    return root


def test_identical_agreeing_and_disagreeing_runs(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "a", [0.50, 0.60, 0.70])
    same = _run(tmp_path / "same", [0.50, 0.60, 0.70])
    drifted = _run(tmp_path / "drifted", [0.55, 0.52, 0.74], nudge=(1, 2, "x"))  # seeds' noise
    shifted = _run(tmp_path / "shifted", [0.80, 0.91, 1.00], nudge=(2, 0, "reward"))  # +0.30

    assert reproducibility.main([str(a), str(same)]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 datasets identical" in out and "2 identical, 0 agree" in out
    assert "campaigns: 1 of 1 identical in every round, 0 differ" in out

    assert reproducibility.main([str(a), str(drifted)]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 datasets identical" in out
    assert "mean_reward: A 0.6000, B 0.6033" in out and "agree within the 95% CI" in out
    assert (
        f"{CAMPAIGN}: differs from round 1 on: query 2 of the round: sample (the query's x)" in out
    )
    assert "earliest step: sample" in out

    assert reproducibility.main([str(a), str(shifted)]) == 1
    out = capsys.readouterr().out
    assert "DISAGREE" in out
    assert f"{CAMPAIGN}: differs from round 2 on: query 0 of the round: answer (the reward)" in out
    assert "(largest difference 0.25)" in out


def test_first_divergence_names_the_round_query_and_step(tmp_path: Path) -> None:
    _observations(tmp_path / "a")
    _observations(tmp_path / "b", nudge=(0, 3, "x"))
    where = reproducibility.first_divergence(
        tmp_path / "a/results/observations" / CAMPAIGN,
        tmp_path / "b/results/observations" / CAMPAIGN,
    )
    assert where is not None and (where.round, where.row) == (0, 3)
    assert where.steps == ("sample (the query's x)",)
    assert 0 < where.largest < 1e-5
    same = reproducibility.first_divergence(
        tmp_path / "a/results/observations" / CAMPAIGN,
        tmp_path / "a/results/observations" / CAMPAIGN,
    )
    assert same is None
