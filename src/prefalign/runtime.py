"""Seeds and devices: one independent random stream per (campaign seed, round, step), and the
torch device a step runs on. Every random choice of a campaign is drawn from these streams, so
the same config and seed give the same observation datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported only by the steps that sample or fit
    import torch


def rng_seed(seed: int, round_: int, step: str) -> int:
    """A 63-bit seed for one step of one round, derived from the campaign seed.

    Different steps and rounds get independent streams; the same (seed, round, step) always the
    same one, so reruns reproduce the observation datasets exactly.
    """
    tag = int.from_bytes(step.encode()[:8].ljust(8, b"\0"), "little")
    return int(np.random.SeedSequence([seed, round_, tag]).generate_state(1, np.uint64)[0] >> 1)


def torch_generator(seed: int, round_: int, step: str) -> torch.Generator:
    """A CPU torch generator seeded by :func:`rng_seed`."""
    import torch

    return torch.Generator().manual_seed(rng_seed(seed, round_, step))


def numpy_rng(seed: int, round_: int, step: str) -> np.random.Generator:
    """A numpy generator seeded by :func:`rng_seed`."""
    return np.random.default_rng(rng_seed(seed, round_, step))


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: The packages whose versions decide the numbers a run produces.
NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "diffusers", "pandas", "snakemake")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform says when there is none."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_summary(torch_threads: int | None = None) -> dict[str, str]:
    """What a run's numbers depend on beyond the config: the CPU, the Python, the versions of
    :data:`NUMERIC_PACKAGES` and the thread settings (read without importing torch)."""
    import os
    import platform
    from importlib import metadata

    versions = {}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    threads = {"torch threads per job": str(torch_threads)} if torch_threads is not None else {}
    return {
        "CPU": f"{cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()})",
        "system": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        **versions,
        **threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
