"""Workflow overhead: the share of a Snakemake run's wall time spent outside the rules' own work,
in the workflow's two job layouts side by side.

Runs the tiny CI config (``.test/config/config.yaml``, its budget raised to four rounds of
``k``) with Snakemake (``--cores 2``) in a temporary copy of the workflow (as
``tests/workflow_helpers.py`` does), once per layout and run, alternating: ``fuse_steps: true``
(the default: one ``propose`` job per round fits, samples and selects; the last fit runs inside
``evaluate``) and ``fuse_steps: false`` (``fit``, ``sample``, ``select``, ``fit_final`` as jobs of
their own). The ratio of the wall times (medians) is the fix's effect. Per layout it compares

- the run's wall time ``W`` with the sum ``S`` of the jobs' own wall times (``s`` in
  ``results/benchmarks/**.tsv``) divided by the cores ``C``: ``1 - S / (C W)`` is the share of the
  cores' time not inside any job (Snakemake's start-up, DAG and scheduling, job spawning, and
  cores left idle where the DAG has only one job ready);
- the Python start-up inside each job: ``python -c pass``, ``prefalign select --help``, the
  imports of a light step (select, observe, oracle, spec: numpy, pandas, no torch) and of a torch
  step (cold_start, propose, sample, fit, fit_final, evaluate), timed side by side; with them (an ``oracle`` job starts two
  processes: ``prefalign query`` and the oracle command), the share of ``C W`` that is neither
  Snakemake nor start-up: the rules' own work;
- Snakemake's own start-up: a dry run of the finished workflow (nothing to do) and, once, the
  import of ``snakemake.api`` (which imports every installed executor plugin).

Usage: python benchmarks/workflow_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, interleaved, median, section  # noqa: E402

CORES = 2  # what tests/workflow_helpers.snakemake_cmd passes
# the rules that import torch, in either layout
TORCH_RULES = frozenset({"cold_start", "propose", "sample", "fit", "fit_final", "evaluate"})
LAYOUTS = {"fused": True, "split": False}  # the config's fuse_steps
TWO_PROCESS_RULES = frozenset({"oracle"})  # `prefalign query` starts the oracle command
TORCH_IMPORTS = "import prefalign.cli, prefalign.loop.steps, prefalign.sampling, prefalign.learning.surrogate"
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
        start = time.perf_counter()
        wh.run_snakemake(wd)
        wall = time.perf_counter() - start
        jobs = job_times(wd)
        start = time.perf_counter()
        wh.run_snakemake(wd, "-n")
        dry = time.perf_counter() - start
    return {"wall_s": wall, "jobs": jobs, "dry_s": dry}


def benchmark_config(wh: ModuleType, *, quick: bool, fuse_steps: bool) -> dict:
    """The tiny config with four rounds per campaign (quick: one method, one round)."""
    config = wh.tiny_config()
    experiments = config["experiments"]
    rounds = 1 if quick else 4
    if quick:
        for e in experiments.values():
            e["methods"] = e["methods"][:1]
    return wh.tiny_config(
        experiments=experiments, budget=rounds * config["k"], fuse_steps=fuse_steps
    )


def layout_numbers(results: list[dict], startup: dict[str, float]) -> dict:
    """The shares of one layout's runs (medians over the runs)."""
    jobs = results[0]["jobs"]
    n_torch = sum(rule in TORCH_RULES for rule, _ in jobs)
    n_light = len(jobs) - n_torch + sum(rule in TWO_PROCESS_RULES for rule, _ in jobs)
    light = startup["light step imports"]
    heavy = max(startup["torch step imports"], light)
    startup_total = n_light * light + n_torch * heavy
    shares: dict[str, list[float]] = {"outside_jobs": [], "startup": [], "outside_work": []}
    for r in results:
        busy = sum(s for _, s in r["jobs"])
        capacity = CORES * r["wall_s"]
        shares["outside_jobs"].append(1.0 - busy / capacity)
        shares["startup"].append(startup_total / capacity)
        shares["outside_work"].append(1.0 - (busy - startup_total) / capacity)
    return {
        "wall_s": [r["wall_s"] for r in results],
        "jobs": len(jobs),
        "torch_jobs": n_torch,
        "light_starts": n_light,
        "sum_job_s": [sum(s for _, s in r["jobs"]) for r in results],
        "snakemake_dry_run_s": [r["dry_s"] for r in results],
        "snakemake_startup_share": median([r["dry_s"] / r["wall_s"] for r in results]),
        "startup_total_s": startup_total,
        "outside_jobs_share": median(shares["outside_jobs"]),
        "startup_share": median(shares["startup"]),
        "outside_work_share": median(shares["outside_work"]),
        "outside_work_share_per_run": shares["outside_work"],
    }


def measure(*, quick: bool, repeats: int, runs: int) -> dict:
    """Run the workflow ``runs`` times per layout (alternating, the order reversed every other
    run) and time the start-ups; returns every number."""
    wh = workflow_helpers()
    configs = {
        name: benchmark_config(wh, quick=quick, fuse_steps=fused) for name, fused in LAYOUTS.items()
    }
    results: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
    # `interleaved` alternates the layouts (reversed every other run); one_run times itself
    interleaved(
        {
            name: lambda name=name: results[name].append(one_run(wh, configs[name]))
            for name in LAYOUTS
        },
        runs,
        warmup=False,
    )
    startup = startup_times(repeats)
    snakemake_import = float("nan")
    if not quick:  # once: Snakemake's own import, executor plugins included
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import snakemake.api"], check=True)
        snakemake_import = time.perf_counter() - start
    layouts = {name: layout_numbers(rs, startup) for name, rs in results.items()}
    return {
        "runs": runs,
        "rounds": configs["fused"]["budget"] // configs["fused"]["k"],
        "campaigns": sum(
            len(e["domains"]) * len(e["methods"]) * len(e["seeds"])
            for e in configs["fused"]["experiments"].values()
        ),
        "cores": CORES,
        "layouts": layouts,
        "wall_ratio_fused_split": median(layouts["fused"]["wall_s"])
        / median(layouts["split"]["wall_s"]),
        "snakemake_import_s": snakemake_import,
        "startup_s": startup,
        # the default layout's numbers, under the keys run_all.py summarises
        **{
            k: layouts["fused"][k]
            for k in ("outside_work_share", "outside_jobs_share", "startup_share",
                      "snakemake_startup_share")
        },
    }  # fmt: skip


def report(r: dict) -> None:
    """Print the numbers and the shares, per layout, and the fused / split ratio."""
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
    for name, n in r["layouts"].items():
        per_run = ", ".join(f"{v:.0%}" for v in n["outside_work_share_per_run"])
        print(
            f"{name:5s} (fuse_steps: {str(LAYOUTS[name]).lower()}), {r['runs']} run(s) of "
            f"{r['campaigns']} campaign(s) x {r['rounds']} rounds: {n['jobs']} jobs ({n['torch_jobs']} import torch); "
            f"wall {seconds(n['wall_s'])} on {r['cores']} cores; sum of jobs' s "
            f"{seconds(n['sum_job_s'])}; snakemake -n with nothing to do "
            f"{seconds(n['snakemake_dry_run_s'])}"
        )
        print(
            f"      outside any job (Snakemake, spawning, idle cores) {n['outside_jobs_share']:.0%}"
            f" of cores x wall; Python start-up inside jobs ({n['torch_jobs']} torch + "
            f"{n['light_starts']} light process starts, {n['startup_total_s']:.1f} s) "
            f"{n['startup_share']:.0%}; => outside the rules' own work "
            f"{n['outside_work_share']:.0%} (per run {per_run})",
            flush=True,
        )
    print(f"wall time fused / split = {r['wall_ratio_fused_split']:.2f}", flush=True)


def run_section(*, quick: bool, repeats: int = 5, runs: int = 2) -> dict:
    """Section 4 of ``run_all.py``."""
    section("4. Workflow overhead (tiny config, snakemake --cores 2, temp copy; two layouts)")
    result = measure(quick=quick, repeats=2 if quick else repeats, runs=1 if quick else runs)
    report(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one method, one round (smoke test)")
    parser.add_argument("--repeats", type=int, default=5, help="start-up timings per command")
    parser.add_argument("--runs", type=int, default=2, help="Snakemake runs per layout (medians)")
    args = parser.parse_args()
    run_section(quick=args.quick, repeats=args.repeats, runs=args.runs)


if __name__ == "__main__":
    main()
