"""End-to-end runs of the Snakemake workflow on the tiny CI config (.test/config/config.yaml)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from workflow_helpers import (
    env,
    observation_files,
    run_snakemake,
    snakemake_cmd,
    tiny_config,
    workdir,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run of the tiny config."""
    wd = workdir(tmp_path_factory.mktemp("reference"), tiny_config())
    run_snakemake(wd)
    return wd


def test_end_to_end_outputs_and_nothing_left_to_do(reference_run: Path) -> None:
    wd = reference_run
    for method in ("fkc-al", "random"):
        assert (wd / f"results/observations/mixture2d/{method}/seed0/round1.parquet").is_file()
        assert (wd / f"results/evaluation/mixture2d/{method}/seed0.json").is_file()
        for surrogate in (  # the one round 1 sampled with, and the one the evaluation used
            f"results/campaigns/mixture2d/{method}/seed0/round1/surrogate",
            f"results/evaluation/mixture2d/{method}/seed0/surrogate",
        ):
            assert (wd / surrogate / "model.safetensors").is_file()
        # one torch job per round; the built-in user answers and is observed in one job
        for step in ("propose", "answer"):
            assert (wd / f"logs/mixture2d/{method}/seed0/round1/{step}.log").is_file()
            assert (wd / f"results/benchmarks/mixture2d/{method}/seed0/round1/{step}.tsv").is_file()
    for out in ("figures/reward_vs_queries.png", "figures/final_metrics.png", "tables/final.md"):
        assert (wd / "results/experiments/E1" / out).stat().st_size > 0
    page = (wd / "results/README.md").read_text()
    assert "E1: main comparison" in page and "fkc-al" in page
    again = run_snakemake(wd, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_fresh_clone_with_committed_figures_recomputes_every_campaign(
    reference_run: Path, tmp_path: Path
) -> None:
    """The figures, tables and results page are committed; a clone has them but no observations
    and no Snakemake records. The default target must still run every campaign."""
    wd = workdir(tmp_path, tiny_config())
    shutil.copytree(reference_run / "results/experiments", wd / "results/experiments")
    shutil.copy(reference_run / "results/README.md", wd / "results/README.md")
    plan = run_snakemake(wd, "-n")
    out = plan.stdout + plan.stderr
    assert "Nothing to be done" not in out
    for rule in ("spec", "cold_start", "propose", "answer", "evaluate", "aggregate"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule


def test_same_config_and_seed_give_identical_observations(
    reference_run: Path, tmp_path: Path
) -> None:
    wd = workdir(tmp_path, tiny_config())
    run_snakemake(wd)
    first, second = observation_files(reference_run), observation_files(wd)
    assert first.keys() == second.keys() and len(first) == 4
    assert first == second


def test_the_job_server_changes_no_byte_of_what_a_run_writes(
    reference_run: Path, tmp_path: Path
) -> None:
    """The reference run forks its jobs from the job server (logs/job_server.log counts them);
    a run that starts a fresh process per job writes the same observations and final samples."""
    log = (reference_run / "logs/job_server.log").read_text()
    served = re.findall(r"served (\d+) commands", log)
    assert served and int(served[0]) > 0, log
    wd = workdir(tmp_path, tiny_config(job_server=False))
    run_snakemake(wd)
    assert not (wd / "logs/job_server.log").exists()
    assert observation_files(wd) == observation_files(reference_run)
    for samples in sorted((reference_run / "results/evaluation").rglob("samples.npz")):
        assert (wd / samples.relative_to(reference_run)).read_bytes() == samples.read_bytes()


def test_each_surrogate_is_fitted_on_the_rounds_before_it(reference_run: Path) -> None:
    """The fits happen inside other jobs: `propose` of round r fits the surrogate it samples
    with on the observations of rounds 0..r-1 (warm-started from round r-1's, from round 2 on),
    and `evaluate` fits the last one on every round, warm-started from the last round's. Each
    checkpoint's training-set hash names the dataset it was fitted on."""
    from prefalign.io.observations import observations_xy, read_observations
    from prefalign.learning.surrogate import training_set_hash

    def dataset_hash(parquet: Path) -> str:
        df, shape = read_observations(parquet)
        return training_set_hash(*observations_xy(df, shape))

    for method in ("fkc-al", "random"):
        observations = reference_run / f"results/observations/mixture2d/{method}/seed0"
        for surrogate, last_round_seen, warm_started in (
            (f"results/campaigns/mixture2d/{method}/seed0/round1/surrogate", 0, False),
            (f"results/evaluation/mixture2d/{method}/seed0/surrogate", 1, True),
        ):
            meta = json.loads((reference_run / surrogate / "meta.json").read_text())
            parquet = observations / f"round{last_round_seen}.parquet"
            assert meta["training_set_hash"] == dataset_hash(parquet), surrogate
            assert meta["fit"]["n_examples"] == 4 * (last_round_seen + 1), surrogate
            assert meta["fit"]["warm_started"] is warm_started, surrogate


def test_aggregate_declares_every_benchmark_file_it_reads(reference_run: Path) -> None:
    """`aggregate` reads every benchmark file under its campaigns' folders of
    results/benchmarks (E4: the cost tables); each must be one of its declared inputs, so that
    Snakemake runs it after the jobs that write them and reruns it when they change."""
    plan = run_snakemake(
        reference_run, "-n", "--forcerun", "aggregate", "results/experiments/E1/section.md"
    )
    job = (plan.stdout + plan.stderr).split("rule aggregate:", 1)[1]
    inputs = job.split("input: ", 1)[1].split("\n", 1)[0].split(", ")
    read = {
        str(p.relative_to(reference_run))
        for p in (reference_run / "results/benchmarks/mixture2d").rglob("*.tsv")
    }
    assert len(read) == 2 * (2 + 2 * 2)  # 2 campaigns: spec, evaluate; 2 rounds of 2 jobs
    assert {i for i in inputs if i.startswith("results/benchmarks/")} == read


def test_killed_run_resumes_to_identical_observations(reference_run: Path, tmp_path: Path) -> None:
    wd = workdir(tmp_path, tiny_config())
    proc = subprocess.Popen(
        snakemake_cmd("--cores", "1"),
        cwd=wd,
        env=env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = wd / "results/campaigns/mixture2d/fkc-al/seed0/round1/particles.npz"
    marker_random = wd / "results/campaigns/mixture2d/random/seed0/round1/particles.npz"
    deadline = time.monotonic() + 300
    while not (marker.exists() or marker_random.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # in the middle of round 1: a hard kill, no clean-up
    proc.wait()
    assert proc.returncode != 0
    partial = observation_files(wd)
    assert len(partial) < 4  # really stopped in the middle
    run_snakemake(wd, "--unlock")  # a killed Snakemake leaves its lock behind
    run_snakemake(wd)
    assert observation_files(wd) == observation_files(reference_run)


BAD_ORACLE = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    mode = open(sys.argv[1]).read().strip()
    queries, rewards = sys.argv[2], sys.argv[3]
    ids = [str(i) for i in np.load(queries)["id"]]
    rows = [(i, "0.5") for i in ids]
    if ids[0].startswith("r001"):  # round 0 answers well; round 1 misbehaves
        if mode == "exit":
            print("oracle exploded", file=sys.stderr); sys.exit(3)
        if mode == "hang":
            time.sleep(600)
        if mode == "omit":
            rows = rows[1:]
        if mode == "repeat":
            rows = rows + rows[:1]
        if mode == "unknown":
            rows = rows + [("r001-p99999", "0.1")]
        if mode == "nan":
            rows[0] = (rows[0][0], "nan")
        if mode == "text":
            rows[0] = (rows[0][0], "very good")
    with open(rewards, "w") as fh:
        fh.write("id,reward\\n" + "".join(f"{i},{r}\\n" for i, r in rows))
    """
)

FAILURES = {
    "exit": "exited with code 3",
    "hang": "timed out",
    "omit": "missing ids",
    "repeat": "duplicate ids",
    "unknown": "unknown ids",
    "nan": "non-finite",
    "text": "non-numeric",
}


def test_failing_oracles_fail_the_round_and_leave_observations_unchanged(tmp_path: Path) -> None:
    script, mode = tmp_path / "oracle.py", tmp_path / "mode.txt"
    script.write_text(BAD_ORACLE)
    mode.write_text("good")
    domain = tiny_config()["domains"]["mixture2d"]
    domain.update(oracle=[sys.executable, str(script), str(mode)], oracle_timeout_s=3)
    config = tiny_config(domains={"mixture2d": domain})
    config["experiments"]["E1"]["methods"] = ["fkc-al"]
    (tmp_path / "wd").mkdir()
    wd = workdir(tmp_path / "wd", config)
    campaign = "mixture2d/fkc-al/seed0"
    round0 = wd / f"results/observations/{campaign}/round0.parquet"
    run_snakemake(wd, f"results/observations/{campaign}/round0.parquet")
    before = round0.read_bytes()
    for name, message in FAILURES.items():
        mode.write_text(name)
        proc = run_snakemake(wd, check=False)
        assert proc.returncode != 0, name
        log = (wd / f"logs/{campaign}/round1/query.log").read_text()
        assert message in log.lower(), (name, log[-2000:])
        assert round0.read_bytes() == before, name
        assert not (wd / f"results/observations/{campaign}/round1.parquet").exists(), name
        assert not (wd / f"results/campaigns/{campaign}/round1/rewards.csv").exists(), name
    mode.write_text("good")  # the oracle is fixed: rerunning completes the campaign
    run_snakemake(wd)
    assert round0.read_bytes() == before
    assert (wd / f"results/observations/{campaign}/round1.parquet").is_file()


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.update(budjet=8), "budjet"),
        (lambda c: c["domains"]["mixture2d"]["sampler"].update(lam_maxx=2.0), "lam_maxx"),
        (lambda c: c.update(k=0), "k"),
        (lambda c: c["methods"]["fkc-al"].update(selection="best"), "selection"),
        # plan-time errors of the resolved campaigns (the schema alone accepts these)
        (lambda c: c["domains"]["mixture2d"].update(budget=10), "must be a multiple of k"),
        (
            lambda c: c["methods"]["random"].update(selection="greedy", score="fk_weight"),
            "score 'fk_weight' needs a variant with FK weights",
        ),
    ],
)
def test_schema_violations_are_rejected_before_any_job(tmp_path: Path, mutate, key: str) -> None:
    config = tiny_config()
    mutate(config)
    wd = workdir(tmp_path, config)
    proc = run_snakemake(wd, check=False)
    assert proc.returncode != 0
    assert key in proc.stderr + proc.stdout
    assert not (wd / "results").exists()


def test_every_promised_figure_and_table_is_recomputed_from_the_observations(
    reference_run: Path,
) -> None:
    """The aggregation's numbers, recomputed here from the observation datasets directly."""
    import json

    import numpy as np
    import pandas as pd

    exp = reference_run / "results/experiments/E1"
    for name in (
        "figures/reward_vs_queries.png",
        "figures/final_metrics.png",
        "figures/cost.png",
        "tables/final.md",
        "tables/final.tex",
        "tables/final.csv",
        "tables/round_metrics.csv",
        "tables/final_metrics.json",
        "tables/cost_per_rule.csv",
        "tables/cost_per_round.csv",
        "section.md",
    ):
        assert (exp / name).stat().st_size > 0, name
    assert "![reward vs queries]" in (reference_run / "results/README.md").read_text()

    rounds = pd.read_csv(exp / "tables/round_metrics.csv")
    final = pd.read_csv(exp / "tables/final.csv").set_index("method")
    for method in ("fkc-al", "random"):
        path = reference_run / f"results/observations/mixture2d/{method}/seed0/round1.parquet"
        obs = pd.read_parquet(path)
        rewards_by_round = [obs[obs["round"] == r]["reward"].to_numpy() for r in (0, 1)]
        seen = np.concatenate(rewards_by_round)
        mine = rounds[rounds["method"] == method].sort_values("round")
        assert np.allclose(mine["round_mean_reward"], [r.mean() for r in rewards_by_round])
        assert np.allclose(mine["best_so_far"], [rewards_by_round[0].max(), seen.max()])
        assert mine["n_queries"].tolist() == [4, 8]
        top10 = np.sort(seen)[::-1][:10].mean()
        assert np.isclose(final.loc[method, "final_top10_mean"], top10)
        assert np.isclose(final.loc[method, "final_best_so_far"], seen.max())
        assert np.isclose(final.loc[method, "round_mean_reward"], rewards_by_round[1].mean())
        evaluation = json.loads(
            (reference_run / f"results/evaluation/mixture2d/{method}/seed0.json").read_text()
        )
        assert np.isclose(final.loc[method, "mean_reward"], evaluation["mean_reward"])
        assert np.isclose(final.loc[method, "validity_rate"], evaluation["validity_rate"])


def test_snakemake_report_collects_the_figures(reference_run: Path) -> None:
    run_snakemake(reference_run, "--report", "report.html")
    html = (reference_run / "report.html").read_text(errors="ignore")
    assert len(html) > 10_000 and "reward_vs_queries" in html


# A round-1 oracle that hangs (mode "hang") after starting a grandchild in a new session that
# would write a stray temporary rewards file 4 s later; otherwise the built-in simulated user of
# the tiny config, exactly.
HANGING_ORACLE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    import numpy as np
    mode, pids = open(sys.argv[1]).read().strip(), sys.argv[2]
    queries, rewards = sys.argv[-2], sys.argv[-1]
    ids = [str(i) for i in np.load(queries)["id"]]
    if mode == "hang" and ids[0].startswith("r001"):
        stray = "import sys, time; time.sleep(4); open(sys.argv[1], 'w').write('stray')"
        grandchild = subprocess.Popen([sys.executable, "-c", stray, rewards], start_new_session=True)
        with open(pids, "w") as f:
            f.write(f"{os.path.abspath(queries)} {os.getppid()} {os.getpid()} {grandchild.pid}")
        time.sleep(600)
    os.execvp("prefalign", ["prefalign", "oracle", "builtin", "mixture2d", "one-mode", queries, rewards])
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_sigterm_to_a_round_job_kills_the_hanging_oracle_and_resumes_identically(
    reference_run: Path, tmp_path: Path
) -> None:
    """SIGTERM to a round's `prefalign query` job (Snakemake stopping it, scancel, a CI time-out)
    while its oracle hangs with a setsid grandchild: no process of the oracle survives, no file
    of the round is left, and the rerun completes with the observations of an uninterrupted
    run."""
    script, mode, pids = tmp_path / "oracle.py", tmp_path / "mode.txt", tmp_path / "pids.txt"
    script.write_text(HANGING_ORACLE)
    mode.write_text("hang")
    domain = tiny_config()["domains"]["mixture2d"]
    domain["oracle"] = [sys.executable, str(script), str(mode), str(pids)]
    (tmp_path / "wd").mkdir()
    wd = workdir(tmp_path / "wd", tiny_config(domains={"mixture2d": domain}))
    proc = subprocess.Popen(
        snakemake_cmd("--cores", "1"),
        cwd=wd,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not (pids.exists() and len(pids.read_text().split()) == 4):
            assert proc.poll() is None and time.monotonic() < deadline, "round 1 never ran"
            time.sleep(0.05)
        queries, *job_pids = pids.read_text().split()
        job, oracle, grandchild = (int(p) for p in job_pids)
        # the campaign whose oracle hangs (either method's round 1 may come first)
        round_dir = Path(queries).parent
        os.kill(job, signal.SIGTERM)
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, (job, oracle, grandchild))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in (job, oracle, grandchild) if _alive(p)] == [], "a process outlived its job"
    time.sleep(5)  # the grandchild would have written its stray file by now
    campaign = round_dir.relative_to(wd / "results/campaigns").parent
    assert sorted(p.name for p in round_dir.iterdir() if "rewards" in p.name) == []
    assert not (wd / "results/observations" / campaign / "round1.parquet").exists()
    log = (wd / "logs" / campaign / "round1/query.log").read_text()
    assert "SIGTERM: the oracle and every process it started were killed" in log
    mode.write_text("good")
    run_snakemake(wd)
    assert observation_files(wd) == observation_files(reference_run)
