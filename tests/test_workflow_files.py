"""The workflow's own files (Snakefile, workflow/rules/*.smk): every path pattern written once in
common.smk, `snakemake --lint` clean but for the one lint the project answers otherwise, and the
round-0 and later `propose` jobs built from one rule definition."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_helpers import REPO, env, tiny_config, workdir

RULES = REPO / "workflow" / "rules"
COMMON = RULES / "common.smk"


def _strings(text: str) -> list[str]:
    return re.findall(r'"([^"\n]*)"', text)


def test_path_patterns_are_written_once_in_common_smk() -> None:
    """`rounds.smk` used to spell results/campaigns/{domain}/{method}/seed{seed}/... twenty times
    beside the constants of common.smk. A rule names a constant (SPEC, QUERIES, ROUND_LOGS,
    ...); common.smk writes each campaign-level prefix once, as a module-level constant."""
    campaign = "{domain}/{method}/seed{seed}"
    for path in [REPO / "Snakefile", *sorted(RULES.glob("*.smk"))]:
        if path == COMMON:
            continue
        for s in _strings(path.read_text()):
            assert campaign not in s and "results/experiments/{experiment}" not in s, (
                f"{path.name}: {s!r}: use the path constants of common.smk"
            )
    lines = [line for line in COMMON.read_text().splitlines() if campaign in line]
    assert lines and all(re.match(r"[A-Z_]+ = \"", line) for line in lines), lines
    prefixes = [re.search(r'"([^"]*)"', line).group(1) for line in lines]
    assert len(prefixes) == len(set(prefixes)), prefixes


def _lints(*args: str, cwd: Path) -> dict[str, set[str]]:
    """`snakemake --lint`'s findings: {rule or snakefile: {lint title}}."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    found: dict[str, set[str]] = {}
    item = None
    for line in out.splitlines():
        if m := re.match(r"Lints for (rule \S+|snakefile \S+)", line):
            item = m.group(1)
        elif (m := re.match(r"    \* (.+?):?$", line)) and item:
            found.setdefault(item, set()).add(m.group(1))
    return found


@pytest.mark.parametrize("configfile", [None, "config/paper.yaml"], ids=["default", "paper"])
def test_snakemake_lint_finds_only_the_missing_conda_environment(
    tmp_path: Path, configfile: str | None
) -> None:
    """Every rule's job runs the project's own `prefalign` command in the environment the
    workflow itself runs in (common.smk imports prefalign at plan time): pyproject.toml and
    environment.yml pin it, so no rule names a conda environment of its own. Anything else the
    linter finds (a rule without a log, an absolute path, rules and functions mixed in one
    file, ...) is a finding to fix."""
    import yaml

    wd = workdir(tmp_path, yaml.safe_load((REPO / "config/config.yaml").read_text()))
    args = ["--configfile", str(REPO / configfile)] if configfile else []
    found = _lints(*args, cwd=wd)
    conda = "Specify a conda environment or container for each rule."
    assert {"rule propose", "rule cold_start", "rule answer"} <= set(found), found
    assert all(titles == {conda} for titles in found.values()), found


def _dry_run_commands(wd: Path) -> dict[str, list[list[str]]]:
    """The shell command of every job of `snakemake -n -p --forceall`, by rule."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "2"],
        cwd=wd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands: dict[str, list[list[str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", proc.stdout + proc.stderr)[1:]:
        rule = re.match(r"(?:local)?rule (\S+):", block).group(1)
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        if shell and shell.group(1) != "None":
            commands.setdefault(rule, []).append(shlex.split(shell.group(1)))
    return commands


def _options(argv: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(argv, argv[1:], strict=False) if a.startswith("--")}


def test_cold_start_and_propose_run_one_command(tmp_path: Path) -> None:
    """`cold_start` is `propose` less the surrogate (`use rule propose as cold_start`): round 0
    samples the base model; round r fits on the observations of round r-1, warm-started from the
    surrogate of round r-1 from round 2 on, and writes its own surrogate."""
    wd = workdir(tmp_path, tiny_config(budget=12))  # three rounds of four queries
    commands = _dry_run_commands(wd)
    rounds = {}
    for rule in ("cold_start", "propose"):
        for argv in commands[rule]:
            assert argv[:2] == ["prefalign", "propose"], argv
            opts = _options(argv)
            rounds[(opts["--spec"], int(opts["--round"]))] = (rule, opts)
    assert len(rounds) == 2 * 3  # two methods
    for (spec, r), (rule, opts) in rounds.items():
        campaign = spec.removesuffix("/spec.json")
        observations = campaign.replace("results/campaigns", "results/observations")
        assert rule == ("cold_start" if r == 0 else "propose")
        assert opts["--particles"] == f"{campaign}/round{r}/particles.npz"
        assert opts["--queries"] == f"{campaign}/round{r}/queries.npz"
        assert opts["--selection"] == f"{campaign}/round{r}/selection.csv"
        if r == 0:
            assert not {"--observations", "--previous", "--surrogate"} & set(opts), opts
            continue
        assert opts["--observations"] == f"{observations}/round{r - 1}.parquet"
        assert opts["--surrogate"] == f"{campaign}/round{r}/surrogate"
        if r >= 2:
            assert opts["--previous"] == f"{campaign}/round{r - 1}/surrogate"
        else:
            assert "--previous" not in opts
