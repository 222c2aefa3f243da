"""Every benchmark of the "Performance" issue in one command, each comparison measured side by
side in this run and printed as a ratio:

1. FKC overhead (``fkc_overhead.py``): one fkc round / one base round, mixture2d and digits.
2. Feedback efficiency (``feedback.py``): queries fkc-al needs to reach the reward threshold,
   against random and best-of-n, both domains, 5 seeds.
3. Surrogate refit (``refit.py``): warm start against from scratch: fit time, held-out RMSE,
   final evaluation reward.
4. Workflow overhead (``workflow_overhead.py``): share of a small Snakemake run's wall time
   outside the rules' own work, one torch job per round (default) against one job per step;
   Python start-up of one step.
5. Scaling (``scaling.py``): time/N and peak memory of one fkc round as N grows, with chunking.
6. Lever cost (``lever_cost.py``): one round (fit, sample, select) of the default method and of
   each lever against one base round (best-of-n) on digits.

Usage: python benchmarks/run_all.py [--quick] [--sections 1 2 ...] [--out benchmarks/out]
The last lines list every ratio and which goals are met; ``--json`` also writes them all.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import feedback  # noqa: E402
import fkc_overhead  # noqa: E402
import lever_cost  # noqa: E402
import refit  # noqa: E402
import scaling  # noqa: E402
import workflow_overhead  # noqa: E402
from _common import DEFAULT_OUT, digits_model, goal_text, section  # noqa: E402


def machine() -> str:
    """``nproc``, the CPU model and the torch version, for the record."""
    import torch

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return (
        f"nproc {nproc}, {model}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )


def summary_lines(results: dict) -> list[str]:
    """Every ratio of the run, one line each, with its goal where the issue sets one."""
    lines = []
    for r in results.get("overhead", []):
        lines.append(
            f"[1] fkc/base wall time, {r['domain']} N={r['n']} steps={r['steps']}: "
            f"{r['ratio']:.2f} (goal <= {fkc_overhead.GOAL}: "
            f"{goal_text(r['ratio'], fkc_overhead.GOAL)})"
        )
        if "ratio_exact_reward" in r:
            lines.append(
                f"[1] fkc (exact user reward, no surrogate)/base wall time, {r['domain']}: "
                f"{r['ratio_exact_reward']:.2f}"
            )
    for s in results.get("feedback", []):
        for name, value in s["ratios"].items():
            criterion, ratio = name.split(":")
            goal = ""
            if ratio.endswith("/random"):
                goal = f" (goal <= 0.33: {goal_text(value, feedback.GOAL)})"
            lines.append(
                f"[2] queries to threshold ({criterion}), {ratio}, {s['domain']}: {value:.2f}{goal}"
            )
    for s in results.get("refit", []):
        for name, value in s["ratios"].items():
            lines.append(f"[3] {name}, {s['domain']}: {value:.2f}")
    w = results.get("workflow")
    if w:
        st = w["startup_s"]
        lines.append(
            f"[4] share of wall x cores outside the rules' own work ({w['jobs']} jobs): "
            f"{w['outside_work_share']:.2f} (outside any job {w['outside_jobs_share']:.2f}, "
            f"start-up {w['startup_share']:.2f}; Snakemake's own start-up "
            f"{w['snakemake_startup_share']:.2f})"
        )
        base = st["python -c pass"]
        lines.append(
            f"[4] start-up prefalign select --help / python -c pass: "
            f"{st['prefalign select --help'] / base:.1f}; light step imports / python -c pass: "
            f"{st['light step imports'] / base:.1f}; torch step imports / python -c pass: "
            f"{st['torch step imports'] / base:.1f}"
        )
    sc = results.get("scaling")
    if sc:
        for s in sc["summary"]:
            chunk = f"chunk {s['chunk']}" if s["chunk"] else "unchunked"
            lines.append(
                f"[5] {s['domain']} {chunk}, N {s['n_lo']} -> {s['n_hi']}: time/N ratio "
                f"{s['time_per_n_ratio']:.2f} (1 = linear), round's extra memory "
                f"{s['extra_mib_lo']:.1f} -> {s['extra_mib_hi']:.1f} MiB"
            )
    for r in results.get("levers", []):
        goal = (
            ""
            if r["goal"] is None
            else f" (goal <= {r['goal']}: {goal_text(r['ratio'], r['goal'])})"
        )
        lines.append(f"[6] one round / base round, digits, {r['case']}: {r['ratio']:.2f}{goal}")
    return lines


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (~1 min)")
    parser.add_argument(
        "--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6], choices=[1, 2, 3, 4, 5, 6]
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="models and campaign files (git-ignored)"
    )
    parser.add_argument(
        "--model-dir", type=Path, help="a digits DDPM folder (default: the shipped models/digits)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds of section 2")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"mode: {'quick (smoke test sizes)' if args.quick else 'full'}; out: {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = digits_model(args.out, quick=args.quick, model_dir=args.model_dir)
    print(f"digits model: {model_dir}")
    common = {"quick": args.quick, "out": args.out}
    results: dict = {}
    timings: dict[str, float] = {}
    sections = {
        1: ("overhead", lambda: fkc_overhead.run_section(**common, model_dir=model_dir)),
        2: (
            "feedback",
            lambda: feedback.run_section(**common, model_dir=model_dir, seeds=args.seeds),
        ),
        3: ("refit", lambda: refit.run_section(**common, model_dir=model_dir)),
        4: ("workflow", lambda: workflow_overhead.run_section(quick=args.quick)),
        5: ("scaling", lambda: scaling.run_section(**common, model_dir=model_dir)),
        6: ("levers", lambda: lever_cost.run_section(**common, model_dir=model_dir)),
    }
    failed = []
    for number in sorted(args.sections):
        key, run = sections[number]
        t0 = time.perf_counter()
        try:
            results[key] = run()
        except Exception:  # report, go on with the other sections, fail at the end
            traceback.print_exc(limit=-8)
            print(f"section {number} ({key}) FAILED; see the traceback above", flush=True)
            failed.append(number)
        timings[f"section {number}"] = time.perf_counter() - t0
    total = time.perf_counter() - start

    section("Summary: every ratio of this run")
    for line in summary_lines(results):
        print(line)
    print(
        "section times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {total:.0f} s ({total / 60:.1f} min)"
    )
    if args.json:
        results["machine"], results["seconds"] = machine(), total
        args.json.write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    if failed:
        print(f"FAILED sections: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
