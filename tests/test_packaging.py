"""environment.yml stays in step with pyproject.toml; the command line is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        name, sep, version = req.partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_environment_yml_matches_pyproject_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= _pins(extra)
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == wanted
    assert all("==" in dep for dep in project["dependencies"]), "every dependency is pinned"


def test_cli_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "prefalign.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for sub in (
        "sample",
        "sample-round",
        "select",
        "query",
        "observe",
        "fit",
        "propose",
        "evaluate",
        "oracle",
    ):
        assert sub in out
