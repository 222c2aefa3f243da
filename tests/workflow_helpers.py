"""Run the Snakemake workflow on a small config inside a temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / ".test" / "config" / "config.yaml"


def tiny_config(**overrides) -> dict:
    """The CI config, with top-level keys replaced."""
    config = yaml.safe_load(TINY.read_text())
    config.update(overrides)
    return config


def population_config(
    size: int = 4, held_out: int = 1, train_budget: int = 8, budget: int = 8
) -> dict:
    """The CI config running only U1: a population `mix` of mixture2d users (family
    `mixture2d-modes`; the first ``size - held_out`` train the prior with fkc-al), its held-out
    users' campaigns with fkc-al and with fkc-al-prior (learner `population`)."""
    config = tiny_config(run=["U1"])
    methods = config["methods"]
    methods["fkc-al-prior"] = {**methods["fkc-al"], "learner": "population"}
    config["populations"] = {
        "mix": {
            "domain": "mixture2d",
            "family": "mixture2d-modes",
            "size": size,
            "held_out": held_out,
            "seed": 0,
            "noise_std": [0.0, 0.1],
            "train_method": "fkc-al",
            "train_seed": 0,
            "train_budget": train_budget,
            "budget": budget,
        }
    }
    config["experiments"]["U1"] = {
        "title": "U1: a tiny population",
        "population": "mix",
        "methods": ["fkc-al", "fkc-al-prior"],
        "seeds": [0],
        "reference": "fkc-al",
    }
    return config


def workdir(tmp: Path, config: dict) -> Path:
    """A copy of the workflow (Snakefile, workflow/, profiles/, and models/: the shipped digits
    model, with its files' times) with ``config`` as its config."""
    for name in ("Snakefile", "workflow", "profiles", "models"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp / name)
    (tmp / "config").mkdir()
    (tmp / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp


def env() -> dict[str, str]:
    """This interpreter's bin directory first on PATH, so rules find `prefalign`."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def snakemake_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "2", "--rerun-incomplete", *args]


def run_snakemake(wd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        snakemake_cmd(*args), cwd=wd, env=env(), capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@contextmanager
def snakemake_in_background(wd: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Snakemake started in its own session with its output in ``log``; on leaving the block,
    if it still runs, it is killed together with its jobs (SIGKILL to the session)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            snakemake_cmd(*args),
            cwd=wd,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def observation_files(wd: Path) -> dict[str, bytes]:
    """Every observation dataset of a run, by relative path."""
    root = wd / "results" / "observations"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}
