"""Scaling: time and peak memory of one ``fkc`` sampling round as N grows, with and without a
chunk size (particles per score/reward call).

Each (domain, N, chunk) runs in a fresh subprocess (``--worker``), so that its peak resident set
size belongs to that run alone. The worker loads the domain and a saved surrogate and runs a tiny
warm-up (lazy allocations count as start-up), records its peak RSS (``VmHWM``), resets that mark
to the current RSS (Linux ``/proc/self/clear_refs``), runs the timed round (``repeats`` times,
median reported) and reads the mark again: ``extra`` = the round's peak minus the RSS before it, the memory the round itself needed
(torch's import alone is ~300 MiB and would hide it). ``VmHWM`` is the address space's own mark;
``ru_maxrss`` (also recorded) is not usable here: a child started by a large parent inherits the
parent's peak at ``exec``. Time should grow linearly in N (flat time/N), and with chunking the
extra memory should stay flat beyond the chunk size.

Usage: python benchmarks/scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


@dataclass(frozen=True)
class ScalingCase:
    """Sizes of one domain's sweep."""

    domain: str
    sizes: tuple[int, ...]
    chunk: int
    steps: int
    unchunked: bool = True  # also run each size without chunking, for contrast
    repeats: int = 3  # timed rounds per worker; the median is reported


def full_cases() -> list[ScalingCase]:
    """256 -> 16,384 on mixture2d (chunk 1024, 100 steps); 256 -> 4,096 on digits (chunk 256;
    5 steps, a twentieth of a round: time/N per step is what matters, and 4,096 UNet particles
    for 100 steps take minutes on one thread)."""
    return [
        ScalingCase("mixture2d", (256, 1024, 4096, 16384), 1024, 100),
        ScalingCase("digits", (256, 1024, 4096), 256, 5),
    ]


def quick_cases() -> list[ScalingCase]:
    """Tiny sizes for the smoke test."""
    return [
        ScalingCase("mixture2d", (64, 256), 64, 5, unchunked=False, repeats=1),
        ScalingCase("digits", (16, 64), 16, 2, unchunked=False, repeats=1),
    ]


def worker(args: argparse.Namespace) -> None:
    """One timed round in this (fresh) process; prints one JSON line."""
    import torch

    from prefalign.domains import get_domain
    from prefalign.learning.checkpoint import load_surrogate
    from prefalign.sampling import SamplerConfig, sample

    torch.set_num_threads(1)
    options = {"model_dir": args.model_dir} if args.domain == "digits" else {}
    domain = get_domain(args.domain, options)
    surrogate = load_surrogate(args.surrogate)
    chunk = args.chunk or None

    def run(n: int, steps: int) -> None:
        sample(
            domain.score,
            domain.sde,
            n,
            tuple(domain.event_shape),
            reward=surrogate,
            config=SamplerConfig(variant="fkc", n_steps=steps, lam_max=8.0, chunk_size=chunk),
            generator=torch.Generator().manual_seed(0),
        )

    run(min(args.n, 8), 2)  # warm-up: lazy allocations count as start-up
    startup_peak = _status_mib("VmHWM")
    before = _status_mib("VmRSS")
    reset = reset_peak_rss()  # from here on, VmHWM is the peak of the timed round
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run(args.n, args.steps)
        times.append(time.perf_counter() - start)
    seconds = common.median(times)
    result = {
        "seconds": seconds,
        "startup_peak_mib": startup_peak,
        "rss_before_mib": before,
        "rss_peak_mib": _status_mib("VmHWM") if reset else max(startup_peak, common.max_rss_mib()),
        "ru_maxrss_mib": common.max_rss_mib(),
        "peak_reset": reset,
    }
    print(json.dumps(result))


def _status_mib(key: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux ``clear_refs`` 5), so
    that it then measures what follows and not the import-time peak. False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _run_worker(case: ScalingCase, n: int, chunk: int, surrogate: Path, model_dir: Path | None):
    cmd = [sys.executable, __file__, "--worker", "--domain", case.domain, "--n", str(n)]
    cmd += ["--chunk", str(chunk), "--steps", str(case.steps), "--surrogate", str(surrogate)]
    cmd += ["--repeats", str(case.repeats)]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scaling worker failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(case: ScalingCase, out: Path, model_dir: Path | None) -> list[dict]:
    """Sweep one domain; returns one row per (N, chunk)."""
    import torch

    from prefalign.domains import get_domain

    torch.set_num_threads(1)
    options = {"model_dir": str(model_dir)} if case.domain == "digits" else {}
    domain = get_domain(case.domain, options)
    path = out / "scaling" / f"{case.domain}-surrogate"
    common.fitted_surrogate(domain, case.domain, n=64, steps=max(case.steps, 10), save_to=path)
    rows = []
    chunks = [case.chunk] + ([0] if case.unchunked else [])
    for chunk in chunks:
        for n in case.sizes:
            r = _run_worker(case, n, chunk, path, model_dir)
            rows.append(
                {
                    "domain": case.domain,
                    "n": n,
                    "chunk": chunk or None,
                    "steps": case.steps,
                    "seconds": r["seconds"],
                    "us_per_particle_step": 1e6 * r["seconds"] / (n * case.steps),
                    "startup_peak_mib": r["startup_peak_mib"],
                    "ru_maxrss_mib": r["ru_maxrss_mib"],
                    "rss_peak_mib": r["rss_peak_mib"],
                    "extra_mib": r["rss_peak_mib"] - r["rss_before_mib"],
                    "peak_reset": r["peak_reset"],
                }
            )
            _print_row(rows[-1])
    return rows


def _print_row(r: dict) -> None:
    chunk = f"chunk={r['chunk']}" if r["chunk"] else "unchunked"
    print(
        f"{r['domain']:9s} {chunk:10s} N={r['n']:6d}: {r['seconds']:7.2f} s ({r['steps']} steps), "
        f"{r['us_per_particle_step']:6.2f} us/particle-step | peak RSS: start-up "
        f"{r['startup_peak_mib']:4.0f} MiB, the round {r['rss_peak_mib']:4.0f} MiB "
        f"(+{r['extra_mib']:6.1f} MiB over its start)",
        flush=True,
    )


def summarise(rows: list[dict]) -> list[dict]:
    """Per (domain, chunk): time/N and extra memory from the chunk size (unchunked: the smallest
    N) to the largest N; time/N ratio 1.0 = linear time, below 1 = better than linear."""
    out = []
    keys = sorted({(r["domain"], r["chunk"] or 0) for r in rows}, key=str)
    for domain, chunk in keys:
        sub = sorted(
            (r for r in rows if r["domain"] == domain and (r["chunk"] or 0) == chunk),
            key=lambda r: r["n"],
        )
        # from the chunk size up (the claim is about N beyond it); unchunked: from the smallest N
        lo = next((r for r in sub if r["n"] >= chunk), sub[0]) if chunk else sub[0]
        hi = sub[-1]
        out.append(
            {
                "domain": domain,
                "chunk": chunk or None,
                "n_lo": lo["n"],
                "n_hi": hi["n"],
                "time_per_n_ratio": hi["us_per_particle_step"] / lo["us_per_particle_step"],
                "extra_mib_lo": lo["extra_mib"],
                "extra_mib_hi": hi["extra_mib"],
                "peak_mib_ratio": hi["rss_peak_mib"] / lo["rss_peak_mib"],
            }
        )
    return out


def print_summary(summary: list[dict]) -> None:
    """One line per (domain, chunk)."""
    for s in summary:
        chunk = f"chunk={s['chunk']}" if s["chunk"] else "unchunked"
        print(
            f"{s['domain']:9s} {chunk:10s} N {s['n_lo']} -> {s['n_hi']}: time/N x"
            f"{s['time_per_n_ratio']:.2f} (1.00 = linear); extra memory "
            f"{s['extra_mib_lo']:.1f} -> {s['extra_mib_hi']:.1f} MiB, peak RSS x"
            f"{s['peak_mib_ratio']:.2f}",
            flush=True,
        )


def run_section(*, quick: bool, out: Path, model_dir: Path | None = None) -> dict:
    """Section 5 of ``run_all.py``."""
    common.section("5. Scaling of one fkc round in N (fresh process per size; time/N, peak RSS)")
    rows = []
    for case in quick_cases() if quick else full_cases():
        mdir = (
            common.digits_model(out, quick=quick, model_dir=model_dir)
            if case.domain == "digits"
            else None
        )
        rows += measure(case, out, mdir)
    summary = summarise(rows)
    print("summary:")
    print_summary(summary)
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--model-dir", type=Path, help="a trained digits DDPM to use")
    worker_args = parser.add_argument_group("worker (internal)")
    worker_args.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker_args.add_argument("--domain")
    worker_args.add_argument("--n", type=int)
    worker_args.add_argument("--chunk", type=int, default=0)
    worker_args.add_argument("--steps", type=int)
    worker_args.add_argument("--surrogate")
    worker_args.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    run_section(quick=args.quick, out=args.out, model_dir=args.model_dir)


if __name__ == "__main__":
    main()
