"""The default run's own cost, side by side: a reference commit against the working tree.

Runs the default config (``config/config.yaml``, ``snakemake --cores 2``, with the shipped
digits model, or its training for a commit from before it was shipped) from an empty
``results/`` for each side in turn, in temporary copies of the workflow:
the reference as a ``git worktree`` of ``--reference`` (its ``src/`` first on ``PYTHONPATH``, so
its jobs and its Snakefile import its own package), the working tree as it is. Each Snakemake
runs inside this script's wrapper (``_snakemake_wrapper.py``), which records its wall time and
its own CPU (``RUSAGE_SELF``) and its children's (``RUSAGE_CHILDREN``).

Every Python process of the run has ``PYTHONPROFILEIMPORTTIME`` set, so each job's log holds the
import times of the processes it ran (the job, an oracle command, a job server's child imports
nothing). Per side, of the cores' time ``C x W`` (``C = 2`` cores, ``W`` the wall time):

- Snakemake's own CPU;
- outside any job: ``1 - S / (C W)``, ``S`` the sum of the jobs' wall times (``s`` of the
  ``benchmark:`` files) times the cores each held (its ``threads``): Snakemake's start-up, DAG and scheduling, spawning, and cores left idle
  where the DAG has fewer ready jobs than cores;
- start-up inside the jobs: the imports their logs record, plus one ``python -c pass`` (timed
  here) per process started;
- outside the rules' own work: the two above together, ``1 - (S - start-up) / (C W)``.

Usage: python benchmarks/default_run.py [--reference REV] [--sides ref,new] [--json FILE]
(about 25 min on a 2-core machine: both default runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, interleaved, median  # noqa: E402

CORES = 2
WRAPPER = Path(__file__).resolve().parent / "_snakemake_wrapper.py"
# `import time: self [us] | cumulative | name`, a top-level import has no indent before name
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")
_IMPORT_HEADER = "import time: self [us] | cumulative | imported package"


def log_startup(log: Path) -> tuple[float, int]:
    """(seconds of top-level imports, processes that logged imports) in one job's log."""
    seconds, processes = 0.0, 0
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(_IMPORT_HEADER):
            processes += 1
            continue
        match = _IMPORT_LINE.match(line)
        if match:
            seconds += int(match.group(1)) / 1e6
    return seconds, processes


def job_threads(snakemake_log: Path) -> dict[str, int]:
    """Benchmark file (relative to results/benchmarks) -> the cores its job held, from the job
    blocks Snakemake prints (``threads: N`` when N > 1)."""
    threads: dict[str, int] = {}
    bench = None
    for line in snakemake_log.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("benchmark: results/benchmarks/"):
            bench = line.removeprefix("benchmark: results/benchmarks/")
            threads[bench] = 1
        elif line.startswith("threads: ") and bench is not None:
            threads[bench] = int(line.split()[1])
        elif not line:
            bench = None
    return threads


def job_times(workdir: Path) -> list[tuple[str, float]]:
    """(benchmark file relative to results/benchmarks, core-seconds) of every job: its wall
    time ``s`` times the cores it held (``threads``, from Snakemake's log in
    ``snakemake.err`` when there is one)."""
    log = workdir / "snakemake.err"
    threads = job_threads(log) if log.exists() else {}
    jobs = []
    root = workdir / "results" / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rel = str(path.relative_to(root))
        jobs.append((rel, float(row["s"]) * threads.get(rel, 1)))
    return jobs


def rule_of(benchmark: str) -> str:
    """The rule a benchmark file belongs to (its stem, or its folder for ``aggregate/E1.tsv``)."""
    path = Path(benchmark)
    return path.stem if path.stem.replace("_", "").isalpha() else path.parent.name


def workflow_copy(tree: Path, dest: Path) -> Path:
    """A fresh copy of ``tree``'s workflow, config and shipped models (``models/``, where the
    tree has one: a reference from before the digits model was shipped trains it) in ``dest``."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "profiles", "config", "models"):
        src = tree / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def run_side(name: str, tree: Path, workdir: Path, env: dict[str, str]) -> dict:
    """One default run from an empty results/ in ``workdir``; every number of one side."""
    record = workdir / "rusage.json"
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1", "PREFALIGN_BENCH_RUSAGE": str(record)}
    if tree != REPO:
        env["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(":")
    with (workdir / "snakemake.err").open("w") as err:
        proc = subprocess.run(
            [sys.executable, str(WRAPPER), "--cores", str(CORES)],
            cwd=workdir,
            env=env,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = (workdir / "snakemake.err").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name}: snakemake failed ({proc.returncode}):\n{tail}")
    usage = json.loads(record.read_text())
    jobs = job_times(workdir)
    startup_imports, processes = 0.0, 0
    for log in (workdir / "logs").rglob("*.log"):
        if log.name == "job_server.log":
            continue  # the server's one-off imports are outside every job: in 1 - S / (C W)
        s, n = log_startup(log)
        startup_imports += s
        processes += n
    per_rule: dict[str, list[float]] = {}
    for bench, seconds in jobs:
        per_rule.setdefault(rule_of(bench), []).append(seconds)
    server_log = workdir / "logs" / "job_server.log"
    served = (
        re.findall(r"served (\d+) commands", server_log.read_text()) if server_log.exists() else []
    )
    return {
        "side": name,
        "wall_s": usage["wall_s"],
        "snakemake_cpu_s": usage["self_cpu_s"],
        "children_cpu_s": usage["children_cpu_s"],
        "jobs": len(jobs),
        "sum_job_s": sum(s for _, s in jobs),
        "per_rule": {r: {"jobs": len(v), "total_s": sum(v)} for r, v in per_rule.items()},
        "startup_imports_s": startup_imports,
        "python_processes": processes,
        "served_by_job_server": int(served[-1]) if served else 0,
    }


def shares(side: dict, interpreter_s: float) -> dict:
    """The side's shares of the cores' time."""
    capacity = CORES * side["wall_s"]
    startup = side["startup_imports_s"] + side["python_processes"] * interpreter_s
    return {
        "snakemake": side["snakemake_cpu_s"] / capacity,
        "outside_jobs": 1.0 - side["sum_job_s"] / capacity,
        "startup": startup / capacity,
        "outside_work": 1.0 - (side["sum_job_s"] - startup) / capacity,
        "startup_s": startup,
    }


def interpreter_start(repeats: int = 20) -> float:
    """Median wall time of ``python -c pass`` (the interpreter's own start, without imports)."""
    cmd = [sys.executable, "-c", "pass"]
    times = interleaved({"pass": lambda: subprocess.run(cmd, check=True)}, repeats)
    return median(times["pass"])


def report(results: list[dict], interpreter_s: float) -> None:
    """Print each side and the ratios."""
    print(f"python -c pass: {interpreter_s * 1000:.0f} ms (one per Python process of a job)")
    for r in results:
        s = shares(r, interpreter_s)
        rules = ", ".join(
            f"{rule} {v['jobs']} x {v['total_s'] / v['jobs']:.2f} = {v['total_s']:.0f} s"
            for rule, v in sorted(r["per_rule"].items(), key=lambda kv: -kv[1]["total_s"])
        )
        print(
            f"{r['side']}: wall {r['wall_s']:.0f} s ({r['wall_s'] / 60:.1f} min) on {CORES} cores; "
            f"{r['jobs']} jobs, sum of their s {r['sum_job_s']:.0f} s; Snakemake's own CPU "
            f"{r['snakemake_cpu_s']:.1f} s, its children's {r['children_cpu_s']:.0f} s; "
            f"{r['python_processes']} Python processes logged imports "
            f"({r['startup_imports_s']:.0f} s); job server served {r['served_by_job_server']}"
        )
        print(f"  jobs' seconds per rule: {rules}")
        print(
            f"  of cores x wall: Snakemake's own CPU {s['snakemake']:.1%}; outside any job "
            f"{s['outside_jobs']:.1%}; start-up inside jobs {s['startup']:.1%} "
            f"({s['startup_s']:.0f} s) => outside the rules' own work {s['outside_work']:.1%}"
        )
    by_side = {r["side"]: r for r in results}
    if {"ref", "new"} <= set(by_side):
        ref, new = by_side["ref"], by_side["new"]
        print(
            f"new / ref: wall {new['wall_s'] / ref['wall_s']:.2f}, cores' time outside the "
            f"rules' work {shares(new, interpreter_s)['outside_work'] * new['wall_s'] / (shares(ref, interpreter_s)['outside_work'] * ref['wall_s']):.2f}, "
            f"Snakemake CPU {new['snakemake_cpu_s'] / ref['snakemake_cpu_s']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="HEAD", help="the commit to compare against")
    parser.add_argument("--sides", default="ref,new", help="which sides to run, in order")
    parser.add_argument("--json", help="also write every number to this file")
    parser.add_argument("--keep", help="keep the run folders under this directory")
    args = parser.parse_args()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PREFALIGN_JOB_SERVER", None)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown CPU",
    )
    print(f"machine: nproc {os.cpu_count()}, {cpu}; reference {args.reference}", flush=True)
    base = Path(args.keep or tempfile.mkdtemp(prefix="prefalign-default-run-"))
    results = []
    ref_tree = base / "reference-tree"
    try:
        for side in args.sides.split(","):
            if side == "ref":
                rev = subprocess.run(
                    ["git", "rev-parse", args.reference],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                subprocess.run(
                    ["git", "worktree", "add", "--detach", str(ref_tree), rev],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                )
                tree = ref_tree
            else:
                tree = REPO
            wd = workflow_copy(tree, base / side)
            started = time.perf_counter()
            results.append(run_side(side, tree, wd, env))
            print(f"{side} done in {time.perf_counter() - started:.0f} s", flush=True)
            if args.json:  # a side's numbers survive a failure of the next one
                Path(args.json).write_text(json.dumps({"sides": results}, indent=2) + "\n")
    finally:
        if ref_tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(ref_tree)], cwd=REPO)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    interpreter_s = interpreter_start()
    report(results, interpreter_s)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"interpreter_s": interpreter_s, "sides": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
