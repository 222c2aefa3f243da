"""Smoke test of ``benchmarks/run_all.py``: at tiny sizes it runs every section and prints every
ratio. No wall time is asserted: the numbers of a smoke run mean nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"(-?\d+(\.\d+)?|nan|inf)"
DOMAINS = ("mixture2d", "digits")


def expected_lines() -> list[str]:
    """A regex for every ratio line of the summary."""
    lines = [rf"\[1\] fkc/base wall time, {d} N=\d+ steps=\d+: {NUMBER}" for d in DOMAINS]
    for d in DOMAINS:
        for criterion in ("best", "top10"):
            for baseline in ("random", "best-of-n"):
                lines.append(
                    rf"\[2\] queries to threshold \({criterion}\), fkc-al/{baseline}, {d}: {NUMBER}"
                )
        for arm in ("warm", "warm-1/3"):
            for what in ("fit time", "eval reward", "held-out RMSE"):
                lines.append(rf"\[3\] {what} {arm}/scratch, {d}: {NUMBER}")
        lines.append(rf"\[5\] {d} chunk \d+, N \d+ -> \d+: time/N ratio {NUMBER}")
    lines.append(rf"\[4\] share of wall x cores outside the rules' own work \(\d+ jobs\): {NUMBER}")
    lines.append(rf"\[4\] start-up prefalign select --help / python -c pass: {NUMBER}")
    lines.append(rf"\[6\] one round / base round, digits, fkc-al, CNN \(former default\): {NUMBER}")
    lines.append(
        rf"\[6\] one round / base round, digits, fkc-al, GP surrogate \(config default\): {NUMBER}"
    )
    lines.append(
        rf"\[6\] one round / base round, digits, fkc-info, GP surrogate \(explore by information\): "
        rf"{NUMBER}"
    )
    lines.append(rf"\[6\] one round / base round, digits, fkc-al, reward at xhat0: {NUMBER}")
    return lines


@pytest.mark.slow
def test_run_all_quick_prints_every_ratio(tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = tmp_path / "results.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick"]
    cmd += ["--out", str(out), "--json", str(results)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "== Summary: every ratio of this run ==" in proc.stdout
    summary = proc.stdout.split("== Summary: every ratio of this run ==", 1)[1]
    missing = [p for p in expected_lines() if not re.search(p, summary)]
    assert not missing, f"ratios missing from the summary: {missing}\n{summary}"
    data = json.loads(results.read_text())
    assert set(data) >= {
        "overhead",
        "feedback",
        "refit",
        "workflow",
        "scaling",
        "levers",
        "machine",
    }
