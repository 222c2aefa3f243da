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


def torch_generator(
    seed: int, round_: int, step: str, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A torch generator seeded by :func:`rng_seed`, on ``device`` (:func:`device_generator`):
    the CPU's stream on the CPU, so CPU runs draw the numbers they always drew; the device's own
    stream on a GPU, so noise is drawn where the particles live."""
    return device_generator(rng_seed(seed, round_, step), device)


def device_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with ``seed`` that draws on ``device``: a CUDA (or other accelerator)
    generator there, a CPU generator on the CPU and on ``meta`` (which has no generator; a CPU
    draw moved to a meta tensor keeps its shape and nothing else).

    The same seed gives different numbers on a GPU than on the CPU (another generator), and the
    same numbers run after run on one GPU (with :func:`resolve_device`'s deterministic settings).
    """
    import torch

    device = torch.device(device)
    where = "cpu" if device.type in ("cpu", "meta") else device
    return torch.Generator(device=where).manual_seed(seed)


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device random numbers are drawn on: the generator's, else the CPU."""
    import torch

    return generator.device if generator is not None else torch.device("cpu")


def to_host(tensor: torch.Tensor) -> torch.Tensor | None:
    """A CPU copy of ``tensor``'s values: the one way the sampler, the surrogate's fit and the
    fine-tuning read a value computed on the device, so each read is a deliberate sync (a GPU
    waits for its queue), made only where a decision needs a value or once at the end.

    Returns None for a ``meta`` tensor, which has a shape and a device but no values (the
    tests' stand-in for a GPU): the caller then skips what the value would decide.
    """
    if tensor.is_meta:
        return None
    return tensor.detach().cpu()


def numpy_rng(seed: int, round_: int, step: str) -> np.random.Generator:
    """A numpy generator seeded by :func:`rng_seed`."""
    return np.random.default_rng(rng_seed(seed, round_, step))


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch. A CUDA
    device also gets :func:`deterministic_cuda`, so a GPU run is reproducible run to run."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        deterministic_cuda()
    return device


#: cuBLAS's reproducible workspace (8 buffers of 4 MiB per stream; NVIDIA's documented setting).
CUBLAS_WORKSPACE = ":4096:8"


def deterministic_cuda() -> None:
    """Make CUDA kernels reproducible run to run on one GPU (a CPU run is left as it is).

    - ``torch.use_deterministic_algorithms(True, warn_only=True)``: deterministic kernels where
      torch has them (index and scatter additions without atomics, deterministic convolution
      backward); an operation with none (e.g. the backward of nearest upsampling, which the
      x̂0 tilt and fine-tuning run through a UNet) warns once instead of failing the job;
    - ``cudnn.deterministic = True`` and ``cudnn.benchmark = False``: one fixed convolution
      algorithm instead of the fastest one timed at start-up;
    - ``CUBLAS_WORKSPACE_CONFIG`` (:data:`CUBLAS_WORKSPACE`) unless set: fixed cuBLAS
      reduction order; it must precede cuBLAS's start, so this runs before any CUDA work.

    Cost: convolutions run without cuDNN's autotuner (its pick for the shapes at hand is
    often faster), deterministic kernels replace atomic ones where torch has both (slower,
    PyTorch's reproducibility notes say), and cuBLAS keeps 32 MiB of workspace per stream. Not
    yet measured on a GPU here (``benchmarks/README.md`` says so). The numbers still differ
    between GPU models and CUDA versions, and from the CPU's.
    """
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
