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
