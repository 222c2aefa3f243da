"""Weights and resampling of a particle population (fkc-math.md, "Resampling")."""

from __future__ import annotations

import torch


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device random numbers are drawn on: the generator's, else the CPU."""
    return generator.device if generator is not None else torch.device("cpu")


def effective_sample_size(log_weights: torch.Tensor) -> float:
    """ESS ``1 / sum(softmax(logw)^2)``, in [1, N]."""
    w = torch.softmax(log_weights.double(), dim=0)
    return float(1.0 / (w * w).sum())


def systematic_resample(
    log_weights: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Systematic resampling: one uniform ``u``, positions ``(u + k) / N``, search in the cumsum.

    Returns the ancestor index of each of the N new particles (sorted ascending). Each particle
    ``i`` is copied ``floor(N w_i)`` or ``ceil(N w_i)`` times, and ``N w_i`` on average.
    """
    n = log_weights.shape[0]
    w = torch.softmax(log_weights.detach().double().cpu(), dim=0)
    cumsum = torch.cumsum(w, dim=0)
    cumsum[-1] = 1.0  # guard against round-off leaving the last bin short
    u = torch.rand((), generator=generator, dtype=torch.float64, device=generator_device(generator))
    positions = (u.cpu() + torch.arange(n, dtype=torch.float64)) / n
    idx = torch.searchsorted(cumsum, positions, right=True)
    return idx.clamp_(max=n - 1).to(log_weights.device)
