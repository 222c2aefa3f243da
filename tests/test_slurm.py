"""The tiny CI workflow (.test/config/config.yaml) on a real one-node SLURM cluster.

Runs ``profiles/slurm`` through snakemake-executor-plugin-slurm on the cluster that
``tests/slurm_cluster.py`` brings up (root only; skipped elsewhere), and checks that

- the grouped run completes with observation datasets byte-identical to a local run's;
- grouping submits fewer SLURM jobs for the whole workflow than one job per rule does for one
  of its campaigns (both counts and run times are printed: ``SLURM jobs: ...``);
- a group job cancelled by the scheduler in the middle of a round leaves no partial observation
  dataset, and running the same command again completes the campaign with the local observations;
- a small population (three training users, one held out) runs end to end: each user's campaign
  one SLURM job, the prior one job between them, the population's report on the results page.

Every run passes ``--workflow-profile none``: ``profiles/default`` would otherwise be applied as
Snakemake's implicit workflow profile on top of ``--profile`` (see profiles/README.md).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from processes import reap_strays
from slurm_cluster import SlurmCluster, slurm_cluster_fixture
from workflow_helpers import (
    env,
    observation_files,
    population_config,
    snakemake_cmd,
    tiny_config,
    workdir,
)

from prefalign.io.observations import read_observations

pytestmark = pytest.mark.slow

slurm_cluster = slurm_cluster_fixture(scope="module")

#: The campaign that the cancellation test runs alone (a target of the tiny workflow).
CAMPAIGN = "mixture2d/fkc-al/seed0"
#: A run of the SLURM profile may take this long before the test gives up on it.
RUN_TIMEOUT_S = 600
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
RUN_ID = re.compile(r"SLURM run ID: (\S+)")


@dataclass(frozen=True)
class SlurmRun:
    """One finished `snakemake --profile ...` run on the cluster."""

    wd: Path
    seconds: float  # wall time of the snakemake command
    job_ids: tuple[str, ...]  # SLURM job ids snakemake reported as submitted
    queued_job_ids: tuple[str, ...]  # the jobs squeue lists under the run's job name
    output: str


def slurm_cmd(profile: str, *args: str) -> list[str]:
    """The snakemake command of a SLURM run with ``profiles/<profile>``.

    Status queries start 2 s after a submission (the profile waits 20 s), as the SLURM doc
    advises for a test cluster, and follow every 2 s (``tests/slurm_snakemake.py``; the plugin
    would wait 10 s longer each time).
    """
    return [
        sys.executable,
        str(Path(__file__).with_name("slurm_snakemake.py")),  # status queries every 2 s
        "--workflow-profile",
        "none",
        "--profile",
        f"profiles/{profile}",
        "--slurm-init-seconds-before-status-checks",
        "2",
        *args,
    ]


def queued_jobs(run_id: str) -> tuple[str, ...]:
    """Jobs of one Snakemake run as the scheduler knows them (the plugin names jobs by run id)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "--name", run_id, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(sorted(out.split(), key=int))


def run_slurm(wd: Path, profile: str, *args: str, check: bool = True) -> SlurmRun:
    """Run the workflow in ``wd`` with a SLURM profile; fail with its output if it fails."""
    start = time.monotonic()
    proc = subprocess.run(
        slurm_cmd(profile, *args),
        cwd=wd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake --profile profiles/{profile} failed ({proc.returncode}):\n{output[-6000:]}"
        )
    run_ids = RUN_ID.findall(output)
    return SlurmRun(
        wd=wd,
        seconds=seconds,
        job_ids=tuple(dict.fromkeys(SUBMITTED.findall(output))),
        queued_job_ids=tuple(j for r in run_ids for j in queued_jobs(r)),
        output=output,
    )


def ungrouped_profile(wd: Path) -> str:
    """``profiles/slurm`` without grouping, as ``profiles/slurm-ungrouped`` in ``wd``."""
    src, dst = wd / "profiles" / "slurm", wd / "profiles" / "slurm-ungrouped"
    shutil.copytree(src, dst)
    settings = yaml.safe_load((dst / "config.yaml").read_text())
    for key in ("groups", "group-components"):
        settings.pop(key, None)
    (dst / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return "slurm-ungrouped"


@pytest.fixture(scope="module")
def slurm_plugin() -> None:
    """The executor plugin must be installed: root machines (CI) run these tests for real."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail(
            "snakemake-executor-plugin-slurm is not installed in this environment: "
            'pip install -e ".[slurm]" (scripts/test.sh installs it)'
        )


class LocalRun:
    """The tiny workflow run locally in the background, to compare the SLURM runs' datasets with.

    It starts when first asked for and overlaps the cancellation test, which mostly waits for the
    scheduler; the timed SLURM runs wait for it to finish first, so it does not slow them down.
    """

    def __init__(self, wd: Path) -> None:
        self.wd = wd
        self.log = wd / "local-run.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(
                snakemake_cmd(),
                cwd=wd,
                env=env(),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() ends its jobs and job server with it
            )

    def result(self) -> Path:
        """Wait for the run; its working directory, or an error with the end of its log."""
        returncode = self.proc.wait(timeout=RUN_TIMEOUT_S)
        if returncode != 0:
            raise AssertionError(
                f"local run failed ({returncode}):\n{self.log.read_text()[-4000:]}"
            )
        return self.wd

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """The local run of the tiny workflow (started, not yet finished)."""
    run = LocalRun(workdir(tmp_path_factory.mktemp("local"), tiny_config()))
    yield run
    run.stop()


@pytest.fixture(scope="module")
def grouped_run(
    slurm_cluster: SlurmCluster,
    slurm_plugin: None,
    local_reference: LocalRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> SlurmRun:
    """The tiny workflow through profiles/slurm as it is: one SLURM job per campaign."""
    local_reference.result()  # nothing else runs while a run is timed
    slurm_cluster.wait_until_idle()
    return run_slurm(workdir(tmp_path_factory.mktemp("grouped"), tiny_config()), "slurm")


@pytest.fixture(scope="module")
def ungrouped_run(
    slurm_cluster: SlurmCluster,
    slurm_plugin: None,
    local_reference: LocalRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> SlurmRun:
    """One campaign of the tiny workflow (CAMPAIGN, to its evaluation) through profiles/slurm
    without `groups`: one SLURM job per rule."""
    local_reference.result()
    slurm_cluster.wait_until_idle()
    wd = workdir(tmp_path_factory.mktemp("ungrouped"), tiny_config())
    return run_slurm(wd, ungrouped_profile(wd), f"results/evaluation/{CAMPAIGN}.json")


def test_jobs_find_the_virtual_environment(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """sbatch exports the submitting environment (the plugin passes --export=ALL): the venv's
    bin directory is on the jobs' PATH, so rules find `prefalign`."""
    out = tmp_path / "which.out"
    subprocess.run(
        ["sbatch", "--wait", "--export=ALL", "-o", str(out), "--wrap", "command -v prefalign"],
        env=env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    found = Path(out.read_text().strip())
    assert found.parent == Path(sys.executable).parent, found


def test_cancelled_job_leaves_no_partial_dataset_and_resumes(
    slurm_cluster: SlurmCluster,
    slurm_plugin: None,
    local_reference: LocalRun,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slurm_cluster.wait_until_idle()
    wd = workdir(tmp_path, tiny_config())
    target = f"results/evaluation/{CAMPAIGN}.json"
    marker = wd / f"results/campaigns/{CAMPAIGN}/round1/particles.npz"
    log = tmp_path / "killed-run.log"
    start = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            slurm_cmd("slurm", target), cwd=wd, env=env(), stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        # 1. wait until the campaign's group job is in the middle of round 1
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not marker.exists():
            assert proc.poll() is None, f"the run ended before round 1:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, "round 1 did not start in time"
            time.sleep(0.1)
        # 2. the scheduler kills the job (as scancel, a time limit or a node failure would)
        run_ids = RUN_ID.findall(log.read_text())
        assert run_ids, log.read_text()[-4000:]
        active = [j for j in queued_jobs(run_ids[0]) if j in slurm_cluster.active_job_ids()]
        assert active, "no job of the run is queued or running"
        slurm_cluster.scancel(*active)
        returncode = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_s = time.monotonic() - start
    assert returncode != 0, log.read_text()[-4000:]
    # 2b. the test cluster tracks a job's processes by their parents (proctrack/linuxproc, as
    # shared/docs/slurm-single-node.md sets it up): a process of the cancelled job whose parent
    # ended first escapes scancel and sleeps on (a cluster with cgroups kills it). End what the
    # cancelled job left running in the workflow's folder, as the scheduler should have.
    slurm_cluster.wait_until_idle()
    escaped = reap_strays(wd, settle_s=5.0)
    # 3. no partial observation dataset: whatever exists is a complete, valid dataset
    left = sorted((wd / "results").rglob("*.parquet"))
    for path in left:
        read_observations(path)
    # 4. the same command again completes the campaign, identical to the local run
    resumed = run_slurm(wd, "slurm", target)
    assert (wd / target).is_file()
    prefix = CAMPAIGN + "/"
    expected = {
        k: v for k, v in observation_files(local_reference.result()).items() if k.startswith(prefix)
    }
    assert len(expected) == 2
    assert observation_files(wd) == expected
    with capsys.disabled():
        print(
            f"\nSLURM cancel + resume: cancelled jobs {active}, killed run {killed_s:.0f} s "
            f"({len(left)} complete datasets left, {len(escaped)} process(es) escaped scancel "
            f"and were ended), resumed run {len(resumed.job_ids)} job(s) in "
            f"{resumed.seconds:.0f} s"
        )
        for line in escaped:
            print(f"  escaped scancel: {line}")


def test_grouped_run_matches_the_local_run(
    grouped_run: SlurmRun, local_reference: LocalRun
) -> None:
    wd = grouped_run.wd
    assert (wd / "results" / "README.md").is_file()
    for method in ("fkc-al", "random"):
        assert (wd / f"results/evaluation/mixture2d/{method}/seed0.json").is_file()
    local, slurm = observation_files(local_reference.result()), observation_files(wd)
    assert len(local) == 4 and slurm.keys() == local.keys()
    assert slurm == local  # byte-identical Parquet
    again = subprocess.run(
        slurm_cmd("slurm", "-n"), cwd=wd, env=env(), capture_output=True, text=True, timeout=120
    )
    assert "Nothing to be done" in again.stdout + again.stderr


def test_grouping_submits_fewer_jobs(
    grouped_run: SlurmRun,
    ungrouped_run: SlurmRun,
    local_reference: LocalRun,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for run in (grouped_run, ungrouped_run):
        assert run.job_ids, run.output[-3000:]
        assert set(run.job_ids) == set(run.queued_job_ids), (run.job_ids, run.queued_job_ids)
    with capsys.disabled():
        print(
            f"\nSLURM jobs: the whole tiny workflow grouped {len(grouped_run.job_ids)} in "
            f"{grouped_run.seconds:.0f} s; one of its campaigns ungrouped "
            f"{len(ungrouped_run.job_ids)} in {ungrouped_run.seconds:.0f} s "
            f"(.test/config/config.yaml)"
        )
    # one job per campaign and one for the report, against one per rule for a single campaign
    assert len(grouped_run.job_ids) < len(ungrouped_run.job_ids)
    prefix = CAMPAIGN + "/"
    local = observation_files(local_reference.result())
    expected = {k: v for k, v in local.items() if k.startswith(prefix)}
    assert len(expected) == 2
    assert observation_files(ungrouped_run.wd) == expected


def test_a_small_population_runs_end_to_end(
    slurm_cluster: SlurmCluster,
    slurm_plugin: None,
    local_reference: LocalRun,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three training users (one round of 4 questions each) fit the prior; the held-out user's
    campaigns with and without it (two rounds) and the population report follow, one DAG."""
    local_reference.result()
    slurm_cluster.wait_until_idle()
    wd = workdir(tmp_path, population_config(train_budget=4, budget=8))
    run = run_slurm(wd, "slurm")
    users = [f"mix-u{i:03d}" for i in range(4)]
    observed = observation_files(wd)
    for user in users[:3]:
        assert f"{user}/fkc-al/seed0/round0.parquet" in observed
    for method in ("fkc-al", "fkc-al-prior"):
        assert f"mix-u003/{method}/seed0/round1.parquet" in observed
        assert (wd / f"results/evaluation/mix-u003/{method}/seed0.json").is_file()
    assert (wd / "results/populations/mix/prior/meta.json").is_file()
    assert "U1: a tiny population" in (wd / "results/README.md").read_text()
    # one job per campaign (3 training, 2 held-out), the prior, the report group
    assert len(run.job_ids) == 7, run.output[-3000:]
    with capsys.disabled():
        print(
            f"\nSLURM population: 4 users (3 train the prior), {len(run.job_ids)} SLURM jobs "
            f"in {run.seconds:.0f} s"
        )
