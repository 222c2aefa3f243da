"""Run the Snakemake workflow on a small config inside a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / ".test" / "config" / "config.yaml"


def tiny_config(**overrides) -> dict:
    """The CI config, with top-level keys replaced."""
    config = yaml.safe_load(TINY.read_text())
    config.update(overrides)
    return config


def workdir(tmp: Path, config: dict) -> Path:
    """A copy of the workflow (Snakefile, workflow/, profiles/) with ``config`` as its config."""
    for name in ("Snakefile", "workflow", "profiles"):
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


def observation_files(wd: Path) -> dict[str, bytes]:
    """Every observation dataset of a run, by relative path."""
    root = wd / "results" / "observations"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}
