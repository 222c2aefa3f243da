"""benchmarks/reproducibility.py: two runs agree bit for bit, within the seeds' confidence
intervals, or not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "reproducibility", REPO / "benchmarks" / "reproducibility.py"
)
assert _spec is not None and _spec.loader is not None
reproducibility = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reproducibility)


def _run(root: Path, rewards: list[float], observation: bytes) -> Path:
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
    obs = root / "results/observations/mixture2d/fkc-al/seed0"
    obs.mkdir(parents=True)
    (obs / "round0.parquet").write_bytes(observation)
    return root


def test_identical_agreeing_and_disagreeing_runs(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "a", [0.50, 0.60, 0.70], b"same")
    same = _run(tmp_path / "same", [0.50, 0.60, 0.70], b"same")
    drifted = _run(tmp_path / "drifted", [0.55, 0.52, 0.74], b"other")  # noise across seeds
    shifted = _run(tmp_path / "shifted", [0.80, 0.91, 1.00], b"other")  # +0.30 on every seed

    assert reproducibility.main([str(a), str(same)]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 datasets identical" in out and "2 identical, 0 agree" in out

    assert reproducibility.main([str(a), str(drifted)]) == 0
    out = capsys.readouterr().out
    assert "0 of 1 datasets identical" in out
    assert "mean_reward: A 0.6000, B 0.6033" in out and "agree within the 95% CI" in out

    assert reproducibility.main([str(a), str(shifted)]) == 1
    assert "DISAGREE" in capsys.readouterr().out
