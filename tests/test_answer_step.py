"""`prefalign answer` (the workflow's `answer` job): a built-in user's answers and their
observation, in one process, give the files of the `query` and `observe` steps apart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prefalign.io.oracle_command import run_oracle
from prefalign.io.queries import OracleError
from prefalign.loop import steps
from prefalign.loop.spec import CampaignSpec, campaign_spec

BUILTIN = ["prefalign", "oracle", "builtin", "mixture2d", "one-mode", "--noise-std", "0.1"]


def _spec(oracle: list[str]) -> CampaignSpec:
    config = {
        "budget": 16,
        "k": 8,
        "n_particles": 32,
        "eval_particles": 16,
        "domains": {"mixture2d": {"oracle": oracle, "sampler": {"n_steps": 10}}},
        "methods": {"m": {"sampler": {"variant": "fkc"}}},
    }
    return campaign_spec(config, "mixture2d", "m", 0)


def _proposed(spec: CampaignSpec, tmp: Path) -> tuple[Path, Path]:
    steps.sample_round(spec, 0, None, tmp / "p.npz")
    steps.select_round(spec, 0, tmp / "p.npz", tmp / "q.npz", tmp / "s.csv")
    return tmp / "q.npz", tmp / "s.csv"


def test_answer_writes_the_bytes_of_the_oracle_command_then_observe(tmp_path: Path) -> None:
    """In process (`answer`) against the real command (`prefalign oracle builtin`, a process of
    its own, run by `query`'s runner) followed by `observe`."""
    spec = _spec(BUILTIN)
    queries, selection = _proposed(spec, tmp_path)
    steps.answer_round(
        spec,
        0,
        None,
        queries,
        selection,
        tmp_path / "a.csv",
        tmp_path / "a.parquet",
        tmp_path / "a.log",
        plot=tmp_path / "a.png",
    )
    steps.oracle_round(spec, 0, queries, tmp_path / "b.csv", tmp_path / "b.log", runner=run_oracle)
    steps.observe_round(
        spec, 0, None, queries, selection, tmp_path / "b.csv", tmp_path / "b.parquet"
    )
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert (tmp_path / "a.png").stat().st_size > 0


def test_a_failing_oracle_command_leaves_no_file_of_the_round(tmp_path: Path) -> None:
    script = tmp_path / "oracle.py"
    script.write_text("import sys\nprint('oracle exploded', file=sys.stderr)\nsys.exit(3)\n")
    spec = _spec([sys.executable, str(script)])
    queries, selection = _proposed(spec, tmp_path)
    rewards, out = tmp_path / "r.csv", tmp_path / "o.parquet"
    with pytest.raises(OracleError, match="exited with code 3"):
        steps.answer_round(spec, 0, None, queries, selection, rewards, out, tmp_path / "a.log")
    assert not rewards.exists() and not out.exists()
    assert "oracle exploded" in (tmp_path / "a.log").read_text()
