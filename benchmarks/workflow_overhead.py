"""Workflow overhead: the share of a Snakemake run's wall time spent outside the rules' own work.

Runs the tiny CI config (``.test/config/config.yaml``, its budget raised to four rounds of
``k``) with Snakemake (``--cores 2``) in a temporary copy of the workflow (as
``tests/workflow_helpers.py`` does), ``--runs`` times. A round is two jobs (``propose``: fit,
sample, select in one torch process; ``answer``: the simulated user answers, the answers are
observed), round 0 is ``cold_start``, the last fit runs inside ``evaluate``, and the jobs' commands
are forked from the job server where it is up (``job_server: true``, the default). It compares

- the run's wall time ``W`` with the sum ``S`` of the jobs' own wall times (``s`` in
  ``results/benchmarks/**.tsv``, also given per rule) divided by the cores ``C``:
  ``1 - S / (C W)`` is the share of the cores' time not inside any job (Snakemake's start-up, DAG
  and scheduling, job spawning, the job server's one-off imports, and cores left idle where the
  DAG has only one job ready);
- the Python start-up inside the jobs, read from their logs: the run has
  ``PYTHONPROFILEIMPORTTIME`` set, so every job's log holds the import times of each Python
  process it ran (``default_run.log_startup``), plus one ``python -c pass`` per process; with
  it, the share of ``C W`` that is neither: the rules' own work;
- start-ups timed side by side (``python -c pass``, ``prefalign select --help``, the imports of
  a light and of a torch step in a fresh process) and Snakemake's own: a dry run of the finished
  workflow (nothing to do) and, once, the import of ``snakemake.api``.

``default_run.py`` measures the same shares on the default config, side by side with a
reference commit.

Usage: python benchmarks/workflow_overhead.py [--quick] [--runs N] [--repeats N]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, interleaved, median, section  # noqa: E402
from default_run import log_startup  # noqa: E402

from prefalign.reporting.cost import RULE_ORDER  # noqa: E402

CORES = 2  # what tests/workflow_helpers.snakemake_cmd passes
TORCH_IMPORTS = (
    "import prefalign.cli, prefalign.loop.steps, prefalign.sampling, prefalign.learning.surrogate"
)
LIGHT_IMPORTS = (
    "import prefalign.cli, prefalign.loop.steps, prefalign.io.observations, prefalign.io.oracle_command, "
    "prefalign.acquisition"
)


def workflow_helpers() -> ModuleType:
    """``tests/workflow_helpers.py``, loaded by path (the tests' way to run the workflow)."""
    spec = importlib.util.spec_from_file_location(
        "workflow_helpers", REPO / "tests" / "workflow_helpers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_times(workdir: Path) -> list[tuple[str, float]]:
    """(rule, seconds) of every job, from the ``benchmark:`` files; the rule is the file's
    stem, or its folder's name where the file is named after a wildcard (``aggregate/E1.tsv``)."""
    jobs = []
    for path in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        with path.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rule = path.stem if path.stem.replace("_", "").isalpha() else path.parent.name
        jobs.append((rule, float(row["s"])))
    return jobs


def startup_times(repeats: int) -> dict[str, float]:
    """Median wall time of four process start-ups, measured side by side."""
    bindir = Path(sys.executable).parent
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "prefalign select --help": [str(bindir / "prefalign"), "select", "--help"],
        "light step imports": [sys.executable, "-c", LIGHT_IMPORTS],
        "torch step imports": [sys.executable, "-c", TORCH_IMPORTS],
    }

    def runner(cmd: list[str]):
        return lambda: subprocess.run(cmd, check=True, capture_output=True)

    times = interleaved({k: runner(c) for k, c in commands.items()}, repeats)
    return {k: median(v) for k, v in times.items()}


def one_run(wh: ModuleType, config: dict) -> dict:
    """One Snakemake run of ``config`` in a fresh temporary copy, then a dry run of the finished
    workflow (nothing to do: parse, DAG, exit)."""
    with tempfile.TemporaryDirectory(prefix="prefalign-wf-") as tmp:
        wd = wh.workdir(Path(tmp), config)
        os.environ["PYTHONPROFILEIMPORTTIME"] = "1"  # each job's log: its processes' imports
        try:
            start = time.perf_counter()
            wh.run_snakemake(wd)
            wall = time.perf_counter() - start
        finally:
            del os.environ["PYTHONPROFILEIMPORTTIME"]
        jobs = job_times(wd)
        imports, processes = 0.0, 0
        for log in (wd / "logs").rglob("*.log"):
            if log.name != "job_server.log":  # its one-off imports are outside every job
                seconds, n = log_startup(log)
                imports, processes = imports + seconds, processes + n
        start = time.perf_counter()
        wh.run_snakemake(wd, "-n")
        dry = time.perf_counter() - start
    return {
        "wall_s": wall,
        "jobs": jobs,
        "dry_s": dry,
        "imports_s": imports,
        "processes": processes,
    }


def benchmark_config(wh: ModuleType, *, quick: bool) -> dict:
    """The tiny config with four rounds per campaign (quick: one method, one round)."""
    config = wh.tiny_config()
    experiments = config["experiments"]
    rounds = 1 if quick else 4
    if quick:
        for e in experiments.values():
            e["methods"] = e["methods"][:1]
    return wh.tiny_config(experiments=experiments, budget=rounds * config["k"])


def run_numbers(results: list[dict], startup: dict[str, float]) -> dict:
    """The shares of the runs (medians over the runs) and the jobs' seconds per rule."""
    jobs = results[0]["jobs"]
    interpreter = startup["python -c pass"]
    shares: dict[str, list[float]] = {"outside_jobs": [], "startup": [], "outside_work": []}
    startups = []
    for r in results:
        busy = sum(s for _, s in r["jobs"])
        capacity = CORES * r["wall_s"]
        startup_total = r["imports_s"] + r["processes"] * interpreter
        startups.append(startup_total)
        shares["outside_jobs"].append(1.0 - busy / capacity)
        shares["startup"].append(startup_total / capacity)
        shares["outside_work"].append(1.0 - (busy - startup_total) / capacity)
    per_rule: dict[str, dict[str, float]] = {}
    order = [*RULE_ORDER, "aggregate", "results_page"]
    rules = sorted({rule for rule, _ in jobs}, key=lambda r: (order + [r]).index(r))
    for rule in rules:  # in the order a run has them
        seconds = [median([s for name, s in r["jobs"] if name == rule]) for r in results]
        count = sum(name == rule for name, _ in jobs)
        total = median([sum(s for name, s in r["jobs"] if name == rule) for r in results])
        per_rule[rule] = {"jobs": count, "median_job_s": median(seconds), "total_s": total}
    return {
        "wall_s": [r["wall_s"] for r in results],
        "jobs": len(jobs),
        "processes": results[0]["processes"],
        "sum_job_s": [sum(s for _, s in r["jobs"]) for r in results],
        "per_rule": per_rule,
        "snakemake_dry_run_s": [r["dry_s"] for r in results],
        "snakemake_startup_share": median([r["dry_s"] / r["wall_s"] for r in results]),
        "startup_total_s": median(startups),
        "outside_jobs_share": median(shares["outside_jobs"]),
        "startup_share": median(shares["startup"]),
        "outside_work_share": median(shares["outside_work"]),
        "outside_work_share_per_run": shares["outside_work"],
    }


def measure(*, quick: bool, repeats: int, runs: int) -> dict:
    """Run the workflow ``runs`` times and time the start-ups; returns every number."""
    wh = workflow_helpers()
    config = benchmark_config(wh, quick=quick)
    results = [one_run(wh, config) for _ in range(runs)]
    startup = startup_times(repeats)
    snakemake_import = float("nan")
    if not quick:  # once: Snakemake's own import, executor plugins included
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import snakemake.api"], check=True)
        snakemake_import = time.perf_counter() - start
    return {
        "runs": runs,
        "rounds": config["budget"] // config["k"],
        "campaigns": sum(
            len(e["domains"]) * len(e["methods"]) * len(e["seeds"])
            for e in config["experiments"].values()
        ),
        "cores": CORES,
        **run_numbers(results, startup),
        "snakemake_import_s": snakemake_import,
        "startup_s": startup,
    }


def report(r: dict) -> None:
    """Print the numbers and the shares."""
    s = r["startup_s"]
    base = s["python -c pass"]

    def seconds(values: list[float]) -> str:
        return "/".join(f"{v:.1f}" for v in values) + " s"

    print(
        "start-up (medians, and / python -c pass): "
        + ", ".join(f"{k} {v:.3f} s (x{v / base:.0f})" for k, v in s.items())
    )
    print(
        f"importing snakemake.api (executor plugins included) takes {r['snakemake_import_s']:.1f} s"
    )
    per_run = ", ".join(f"{v:.0%}" for v in r["outside_work_share_per_run"])
    print(
        f"{r['runs']} run(s) of {r['campaigns']} campaign(s) x {r['rounds']} rounds: {r['jobs']} "
        f"jobs; wall {seconds(r['wall_s'])} on {r['cores']} "
        f"cores; sum of jobs' s {seconds(r['sum_job_s'])}; snakemake -n with nothing to do "
        f"{seconds(r['snakemake_dry_run_s'])}"
    )
    print(
        "jobs' own seconds per rule (jobs x median s = total): "
        + ", ".join(
            f"{rule} {n['jobs']} x {n['median_job_s']:.2f} = {n['total_s']:.1f} s"
            for rule, n in r["per_rule"].items()
        )
    )
    print(
        f"outside any job (Snakemake, spawning, idle cores) {r['outside_jobs_share']:.0%} of "
        f"cores x wall; Python start-up inside jobs ({r['processes']} processes logged "
        f"imports, {r['startup_total_s']:.1f} s) "
        f"{r['startup_share']:.0%}; => outside the rules' own work "
        f"{r['outside_work_share']:.0%} (per run {per_run})",
        flush=True,
    )


def run_section(*, quick: bool, repeats: int = 5, runs: int = 2) -> dict:
    """Section 4 of ``run_all.py``."""
    section("4. Workflow overhead (tiny config, snakemake --cores 2, temp copy)")
    result = measure(quick=quick, repeats=2 if quick else repeats, runs=1 if quick else runs)
    report(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one method, one round (smoke test)")
    parser.add_argument("--repeats", type=int, default=5, help="start-up timings per command")
    parser.add_argument("--runs", type=int, default=2, help="Snakemake runs (medians)")
    args = parser.parse_args()
    run_section(quick=args.quick, repeats=args.repeats, runs=args.runs)


if __name__ == "__main__":
    main()
