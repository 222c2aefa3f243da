"""What a run's numbers depend on beyond its config, recorded so that a reader can tell two
machines apart: the CPU's identity and the instruction sets that pick torch's and the BLAS's
kernels, the numeric libraries with their versions and threads, the commit, and the content hash
of a model directory.

Why each matters (measured, README "Reproducibility"): the same config, versions and thread
counts give byte-identical observation datasets on the same CPU type; a CPU whose kernels differ
(AVX2 against AVX-512: ``torch.backends.cpu.get_cpu_capability()``, OpenBLAS's and oneDNN's own
dispatch) rounds the last digits differently, and the campaigns drift apart from the first step
where a sample crosses a decision. The CPU is named by vendor, family, model and stepping
because the marketing name a virtual machine reports ("AMD EPYC") does not tell a Zen 3 from a
Zen 4.

Everything here reads the machine without changing it; :func:`machine_record` imports torch
(its CPU capability and build), the rest does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The packages whose versions decide the numbers a run produces.
NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "diffusers", "pandas", "snakemake")

#: /proc/cpuinfo flags that change which kernels torch, oneDNN and OpenBLAS dispatch to, in the
#: order they are reported: AVX2/FMA (the x86-64-v3 kernels), AVX-512 (its foundation and the
#: VNNI/BF16 extensions oneDNN uses), AMX (Intel's matrix tiles).
KERNEL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

#: Environment variables that set the thread pools of OpenMP, MKL and OpenBLAS.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Environment variables that override the kernels the libraries pick for this CPU (e.g. the
#: AVX2 kernels of an older CPU on an AVX-512 one): recorded when set.
KERNEL_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "OPENBLAS_CORETYPE",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ONEDNN_MAX_CPU_ISA",
)

#: Files of a model directory that record how it was made rather than what it is: left out of
#: its content hash (a regenerated model with the same weights has the same hash).
RECORD_FILES = frozenset({"training.json"})


@dataclass(frozen=True)
class CPUIdentity:
    """The CPU as ``/proc/cpuinfo`` reports it (x86: vendor, family, model, stepping).

    Attributes:
        vendor: ``vendor_id`` (``AuthenticAMD``, ``GenuineIntel``), or the platform's name.
        family: ``cpu family`` (decimal, as the kernel prints it; AMD 25 is Zen 3 / Zen 4).
        model: ``model`` (decimal; with the family, the micro-architecture: AMD 25/1 is Zen 3
            Milan, 25/17 Zen 4 Genoa).
        stepping: ``stepping``.
        name: ``model name`` (often only "AMD EPYC" in a virtual machine).
        flags: the :data:`KERNEL_FLAGS` the CPU has, in that order.
        logical_cpus: CPUs the OS reports.
        arch: ``platform.machine()`` (``x86_64``, ``aarch64``).
    """

    vendor: str
    family: str
    model: str
    stepping: str
    name: str
    flags: tuple[str, ...]
    logical_cpus: int
    arch: str

    def instruction_sets(self) -> str:
        """AVX2 / AVX-512 / AMX as present or absent, e.g. ``AVX2, AVX-512, no AMX``."""
        has = set(self.flags)
        parts = [
            "AVX2" if "avx2" in has else "no AVX2",
            "AVX-512" if "avx512f" in has else "no AVX-512",
            "AMX" if "amx_tile" in has else "no AMX",
        ]
        return ", ".join(parts)

    def summary(self) -> str:
        """One line naming the CPU type, e.g. ``AMD EPYC (AuthenticAMD family 25 model 17
        stepping 1; AVX2, AVX-512, no AMX; 2 CPUs, x86_64)``."""
        ident = f"{self.vendor} family {self.family} model {self.model} stepping {self.stepping}"
        return (
            f"{self.name} ({ident}; {self.instruction_sets()}; {self.logical_cpus} CPUs, "
            f"{self.arch})"
        )


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_identity(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> CPUIdentity:
    """Read the CPU's identity from ``cpuinfo``; where there is no such file (macOS, Windows),
    what :mod:`platform` says, with ``unknown`` for the fields it cannot give."""
    try:
        fields = _cpuinfo_fields(Path(cpuinfo).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        fields = {}
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    return CPUIdentity(
        vendor=fields.get("vendor_id", fields.get("CPU implementer", platform.system())),
        family=fields.get("cpu family", fields.get("CPU architecture", "unknown")),
        model=fields.get("model", fields.get("CPU part", "unknown")),
        stepping=fields.get("stepping", fields.get("CPU revision", "unknown")),
        name=fields.get("model name", platform.processor() or platform.machine()),
        flags=tuple(f for f in KERNEL_FLAGS if f in flags),
        logical_cpus=os.cpu_count() or 0,
        arch=platform.machine(),
    )


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`NUMERIC_PACKAGES` (``not installed`` for a missing one)."""
    from importlib import metadata

    versions = {}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def torch_kernels() -> dict[str, str]:
    """torch's CPU kernels: its CPU capability (the instruction set its own kernels use), the
    BLAS and oneDNN it was built with, and its thread pools (imports torch)."""
    import torch

    build = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version (\S+)", build)
    onednn = re.search(r"MKL-DNN (v[\d.]+)", build)
    blas = re.search(r"BLAS_INFO=(\w+)", build)
    blas_name = blas.group(1) if blas else "unknown"
    if mkl and blas_name == "mkl":
        blas_name = f"MKL {mkl.group(1)}"
    return {
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "torch BLAS": blas_name,
        "torch oneDNN": onednn.group(1) if onednn else "not built",
        "torch threads (this process)": f"{torch.get_num_threads()} intra-op, "
        f"{torch.get_num_interop_threads()} inter-op",
    }


def blas_libraries() -> list[str]:
    """The BLAS libraries loaded into this process as threadpoolctl sees them (numpy's and
    scipy's OpenBLAS: version, the kernel architecture it picked, threads), one line each."""
    try:
        import numpy  # noqa: F401  (loads its BLAS so that threadpoolctl finds it)
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    with contextlib.suppress(ImportError):
        import scipy.linalg  # noqa: F401  (scipy's own OpenBLAS, which scikit-learn uses)
    lines = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        arch = lib.get("architecture")
        lines.append(
            f"{lib.get('internal_api')} {lib.get('version') or '?'}"
            + (f" ({arch} kernels)" if arch else "")
            + f", {lib.get('num_threads')} threads, {Path(lib.get('filepath', '')).name}"
        )
    return sorted(set(lines))


def thread_settings() -> dict[str, str]:
    """The thread-pool environment variables (:data:`THREAD_VARIABLES`), ``unset`` if unset,
    and the kernel overrides of :data:`KERNEL_VARIABLES` that are set."""
    settings = {name: os.environ.get(name, "unset") for name in THREAD_VARIABLES}
    settings.update({name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ})
    return settings


#: What decides a run's numbers in a checkout of the project: uncommitted changes to these
#: paths mark its commit ``+dirty`` (a run rewrites the committed results, which do not count).
CODE_PATHS = ("src", "workflow", "Snakefile", "config", "models", "pyproject.toml")


def git_commit(path: str | os.PathLike[str] = ".", paths: tuple[str, ...] = CODE_PATHS) -> str:
    """The commit checked out at ``path`` (``<sha>``, or ``<sha>+dirty`` with uncommitted
    changes to tracked files under ``paths``), or ``unknown`` outside a git work tree."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        top = git("rev-parse", "--show-toplevel").stdout.strip()
        changed = git("-C", top, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if changed.stdout.strip() else "")


def model_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The files that make a model directory what it is: every file below it, sorted, except
    the :data:`RECORD_FILES` and hidden files (Snakemake's ``.snakemake_timestamp``)."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory {str(root)!r} does not exist")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name not in RECORD_FILES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def model_manifest(model_dir: str | os.PathLike[str]) -> str:
    """``sha256sum``'s listing of :func:`model_files` (``<sha256>  <path relative to the
    directory>`` per line, sorted by path): what :func:`content_hash` hashes. Running
    ``sha256sum -c`` on it inside the directory checks every file."""
    root = Path(model_dir)
    lines = []
    for path in model_files(root):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root).as_posix()}\n")
    return "".join(lines)


def content_hash(model_dir: str | os.PathLike[str]) -> str:
    """The SHA-256 of a model directory's :func:`model_manifest`: equal for two directories
    exactly when they hold the same files with the same bytes (the weights, the UNet's and the
    scheduler's configs), whatever their training records say."""
    manifest = model_manifest(model_dir)
    if not manifest:
        raise FileNotFoundError(f"model directory {str(model_dir)!r} holds no model files")
    return hashlib.sha256(manifest.encode()).hexdigest()


def machine_record(torch_threads: int | None = None) -> dict[str, str]:
    """What a run's numbers depend on beyond the config, one row each for the results page and
    a model's training record: the CPU (:func:`cpu_identity`), torch's kernels
    (:func:`torch_kernels`), the BLAS loaded, the thread settings, the system and the versions.
    ``torch_threads``: the torch threads each job of a run sets (a config setting), if any;
    without it, the record is of this process's own work (a training) and names its threads."""
    cpu = cpu_identity()
    record = {
        "CPU": cpu.name,
        "CPU vendor, family, model, stepping": (
            f"{cpu.vendor}, family {cpu.family}, model {cpu.model}, stepping {cpu.stepping}"
        ),
        "CPU kernel flags": ", ".join(cpu.flags) or "none of " + ", ".join(KERNEL_FLAGS),
        "CPUs": f"{cpu.logical_cpus} ({cpu.arch})",
        **torch_kernels(),
        "BLAS (numpy, scipy)": "; ".join(blas_libraries()) or "not found",
    }
    if torch_threads is not None:  # a run's record: its jobs' setting, not this process's
        record.pop("torch threads (this process)")
        record["torch threads per job"] = str(torch_threads)
    record.update(thread_settings())
    record.update(
        {
            "system": f"{platform.system()} {platform.release()}",
            "Python": platform.python_version(),
            **package_versions(),
        }
    )
    return record
