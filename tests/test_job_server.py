"""The job server (prefalign.cli.job_server): commands forked from one warm process behave as
fresh processes (working directory, environment, streams, exit status, signals), and a command
that cannot reach a server runs by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefalign.cli import job_server
from prefalign.loop import steps
from prefalign.loop.spec import CampaignSpec, campaign_spec, write_spec

# runs one command through the server from a process of its own (the command's side installs
# signal handlers) and prints what run_via_server returned
CLIENT = (
    "import sys; from prefalign.cli.job_server import run_via_server; "
    "code = run_via_server(sys.argv[1:]); print('returned', code, flush=True); sys.exit(code or 0)"
)
HANGING_ORACLE = textwrap.dedent(
    """
    import os, sys, time
    with open(sys.argv[1], "w") as fh:
        fh.write(f"{os.getpid()} {os.getppid()}")
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # gone between the lookup and the read
        return False
    return state not in ("Z", "X")


def _wait(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[job_server.JobServer]:
    log = tmp_path_factory.mktemp("server") / "job_server.log"
    before = os.environ.get(job_server.ENV)
    started = job_server.start(log)
    assert started is not None
    try:
        _wait(lambda: os.path.exists(started.path), what="the server's socket")
        yield started
    finally:
        started.stop()
        if before is not None:
            os.environ[job_server.ENV] = before
    assert "served" in log.read_text()


def _client(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    full = {**os.environ, **env}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _spec_json(oracle: list[str]) -> dict:
    config = {
        "budget": 8,
        "k": 4,
        "n_particles": 16,
        "eval_particles": 16,
        "domains": {"mixture2d": {"oracle": oracle, "sampler": {"n_steps": 5}}},
        "methods": {"m": {"sampler": {"variant": "fkc"}}},
    }
    return campaign_spec(config, "mixture2d", "m", 0).to_dict()


def test_a_command_runs_in_the_server_with_its_cwd_env_streams_and_status(
    server: job_server.JobServer, tmp_path: Path
) -> None:
    spec = json.dumps(_spec_json(["prefalign", "oracle", "builtin", "mixture2d", "one-mode"]))
    proc = _client(["spec", "--json", spec, "--out", "sub/spec.json"], tmp_path)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "returned 0\n"), err
    assert json.loads((tmp_path / "sub/spec.json").read_text())["seed"] == 0  # relative to cwd

    proc = _client(["select", "--help"], tmp_path)
    out, err = proc.communicate(timeout=60)
    assert "usage: prefalign select" in out and out.endswith("returned 0\n"), err

    proc = _client(["spec", "--json", "{}", "--out", "x.json"], tmp_path)
    out, err = proc.communicate(timeout=60)
    assert (
        (proc.returncode, out) == (1, "returned 1\n")
        and "KeyError" in err
        and not (tmp_path / "x.json").exists()
    )


def test_without_a_reachable_server_the_command_runs_by_itself(tmp_path: Path) -> None:
    for env in (
        {job_server.ENV: str(tmp_path / "no-socket")},
        {job_server.ENV: "off"},
        {job_server.ENV: "", "SLURM_JOB_ID": "1"},
    ):
        proc = _client(["select", "--help"], tmp_path, **env)
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out) == (0, "returned None\n"), (env, err)


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_command_takes_its_child_and_the_oracle_with_it(
    server: job_server.JobServer, tmp_path: Path, kill: signal.Signals
) -> None:
    """SIGTERM to the command is forwarded to its child; after SIGKILL the server sees the
    connection close and terminates the child. Either way `prefalign query` kills its hanging
    oracle and writes no rewards file."""
    script, pids = tmp_path / "oracle.py", tmp_path / "pids.txt"
    script.write_text(HANGING_ORACLE)
    spec = _spec_json([sys.executable, str(script), str(pids)])
    spec_path = tmp_path / "spec.json"
    write_spec(CampaignSpec.from_dict(spec), spec_path)
    campaign = CampaignSpec.from_dict(spec)
    steps.sample_round(campaign, 0, None, tmp_path / "p.npz")
    steps.select_round(campaign, 0, tmp_path / "p.npz", tmp_path / "q.npz", tmp_path / "s.csv")
    rewards = tmp_path / "rewards.csv"
    args = ["query", "--spec", str(spec_path), "--round", "0", "--queries", str(tmp_path / "q.npz")]
    proc = _client([*args, "--rewards", str(rewards), "--log", str(tmp_path / "q.log")], tmp_path)
    try:
        _wait(lambda: pids.exists() and pids.read_text().count(" ") == 1, what="the oracle")
        oracle, child = (int(p) for p in pids.read_text().split())
        assert child != proc.pid  # the job ran in a child of the server, not in the command
        assert Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(
            server.process.pid
        )
        proc.send_signal(kill)
        _, err = proc.communicate(timeout=60)  # the child shares the pipe: it ended too
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    _wait(lambda: not _alive(child) and not _alive(oracle), timeout=30, what="the child to end")
    assert not rewards.exists()
    assert "SIGTERM: the oracle and every process it started were killed" in err
