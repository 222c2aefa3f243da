"""Progress in log files is a few lines (issue 13): a tqdm bar redrawn with carriage returns
into a job's log became one line of megabytes (``logs/models/train_digits.log``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefalign.io.progress import LOG_LINES, tqdm

SRC = Path(__file__).resolve().parents[1] / "src"


def _check_log(text: str) -> None:
    assert "\r" not in text, "a bar redrawn with carriage returns"
    lines = text.splitlines()
    bar_lines = [line for line in lines if "|" in line]
    assert 2 <= len(bar_lines) <= 2 * LOG_LINES + 4, len(bar_lines)
    assert max(len(line) for line in lines) < 300


def test_bar_to_a_stream_that_is_not_a_terminal_writes_a_few_lines() -> None:
    stream = io.StringIO()
    for _ in tqdm(range(20_000), desc="steps", file=stream):
        pass
    _check_log(stream.getvalue())
    assert "20000/20000" in stream.getvalue()


def _run(args: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with log.open("w") as err:
        subprocess.run(
            [sys.executable, "-m", "prefalign.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            check=True,
            timeout=600,
        )


def test_sampling_log_is_a_few_lines(tmp_path: Path) -> None:
    log = tmp_path / "sample.log"
    out = tmp_path / "s.npz"
    _run(["sample", "--domain", "mixture2d", "--variant", "base", "--n-particles", "20",
          "--n-steps", "2000", "--out", str(out)], log)  # fmt: skip
    _check_log(log.read_bytes().decode())


@pytest.mark.slow
def test_digits_training_log_is_a_few_lines(tmp_path: Path) -> None:
    log = tmp_path / "train_digits.log"
    _run(["train-digits", "--out", str(tmp_path / "model"), "--steps", "60",
          "--batch-size", "8", "--threads", "1"], log)  # fmt: skip
    _check_log(log.read_bytes().decode())
    assert "loss=" in log.read_bytes().decode()
