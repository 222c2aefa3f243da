"""Documented commands do what they say (issue 13): the README's DVC and Snakemake overrides
change the campaigns of the default config, and `scripts/env.sh` installs once whichever of the
README's two commands comes first."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, env

from prefalign.loop.spec import campaign_spec

DEFAULT = REPO / "config" / "config.yaml"
DOCS = [REPO / "README.md", REPO / "config" / "README.md", REPO / "dvc.yaml"]


def _documented_dvc_overrides() -> list[str]:
    """Every `-S ...` of a `dvc exp run` command in the README, config/README and dvc.yaml."""
    found = []
    for path in DOCS:
        for line in path.read_text().splitlines():
            for command in re.findall(r"dvc exp run((?: -S (?:'[^']*'|\S+))+)", line):
                found += [o.strip("'") for o in re.findall(r"-S ('[^']*'|\S+)", command)]
    return found


def _rounds(config: dict, domain: str, method: str) -> int | None:
    """Rounds of a campaign of ``config``; None where the pair is not a valid campaign (not all
    domain x method pairs of the config are run)."""
    try:
        return campaign_spec(config, domain, method, 0).rounds
    except ValueError:
        return None


def test_documented_dvc_overrides_change_the_default_campaigns(tmp_path: Path) -> None:
    """README's `dvc exp run -S budget=80` changed no campaign: every domain sets its own
    budget. Applied the way `dvc exp run -S` applies it (DVC's hydra overrides), each documented
    override must change the rounds of some campaign."""
    from dvc.utils.hydra import apply_overrides

    overrides = _documented_dvc_overrides()
    assert overrides, "no `dvc exp run -S` example found"
    before = yaml.safe_load(DEFAULT.read_text())
    for override in overrides:
        copy = tmp_path / "config.yaml"
        shutil.copyfile(DEFAULT, copy)
        apply_overrides(copy, [override])
        after = yaml.safe_load(copy.read_text())
        changed = [
            (d, m)
            for d in before["domains"]
            for m in before["methods"]
            if _rounds(after, d, m) != _rounds(before, d, m)
        ]
        assert changed, f"`dvc exp run -S {override}` changes no campaign of {DEFAULT.name}"


def test_docs_do_not_promise_a_top_level_budget_override() -> None:
    for path in DOCS:
        for line in path.read_text().splitlines():
            if re.search(r"(--config|-S) budget=", line):
                assert "no campaign" in line or "changes no" in line or "change no" in line, (
                    f"{path.name}: {line.strip()!r}"
                )


def _planned(wd: Path, *args: str) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args],
        cwd=wd, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M)}


@pytest.mark.slow
def test_snakemake_configfile_override_reaches_a_domain(tmp_path: Path) -> None:
    """`snakemake --config budget=80` plans the same jobs as no override; the documented
    `--configfile` holding `domains: {mixture2d: {budget: 80}}` plans more rounds."""
    for name in ("Snakefile", "workflow", "profiles", "config"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "over.yaml").write_text("domains:\n  mixture2d:\n    budget: 80\n")
    base = _planned(tmp_path)
    assert _planned(tmp_path, "--config", "budget=80") == base  # what the docs now say
    over = _planned(tmp_path, "--configfile", "over.yaml")
    assert over["propose"] > base["propose"]


# -- scripts/env.sh --------------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/../calls.log"
"""


def _source_env(venv: Path, extras: str) -> None:
    subprocess.run(
        ["bash", "-c", f"source {REPO / 'scripts/env.sh'}"],
        env={**os.environ, "PREFALIGN_VENV": str(venv), "PREFALIGN_EXTRAS": extras},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _installs(venv: Path) -> list[str]:
    log = venv / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return [c for c in calls if "-e " in c]


@pytest.mark.parametrize(
    "order",
    [("dev,browser,slurm", "dev"), ("dev", "dev,browser,slurm")],
    ids=["test.sh-then-run-main.sh", "run-main.sh-then-test.sh"],
)
def test_env_sh_installs_only_what_is_missing(tmp_path: Path, order: tuple[str, str]) -> None:
    """The stamp stored the extras unsorted the first time (`dev,browser,slurm`), so the other
    command's sorted union never matched it and the venv was reinstalled."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    first, second = order
    _source_env(venv, first)
    assert len(_installs(venv)) == 1
    _source_env(venv, second)
    wanted = 1 if set(second.split(",")) <= set(first.split(",")) else 2
    assert len(_installs(venv)) == wanted, _installs(venv)
    for extras in (first, second, "slurm,dev,browser"):  # nothing is missing any more
        _source_env(venv, extras)
    assert len(_installs(venv)) == wanted, _installs(venv)
    assert (venv / ".prefalign-installed").read_text().split()[1] == "browser,dev,slurm"
