"""Weights and resampling of a particle population (fkc-math.md, "Resampling").

Both work on the weights' device, so a GPU sampler never copies its weights to the host:
:func:`ess_tensor` leaves the ESS there, and :func:`systematic_resample` draws its one uniform
on the generator's device and searches on the weights'.
"""

from __future__ import annotations

import torch

from prefalign.runtime import generator_device

__all__ = ["effective_sample_size", "ess_tensor", "generator_device", "systematic_resample"]


def ess_tensor(log_weights: torch.Tensor) -> torch.Tensor:
    """ESS ``1 / sum(softmax(logw)^2)`` as a float64 0-d tensor on the weights' device."""
    w = torch.softmax(log_weights.double(), dim=0)
    return 1.0 / (w * w).sum()


def effective_sample_size(log_weights: torch.Tensor) -> float:
    """ESS ``1 / sum(softmax(logw)^2)``, in [1, N] (a host read: see :func:`ess_tensor`)."""
    return float(ess_tensor(log_weights))


def systematic_resample(
    log_weights: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Systematic resampling: one uniform ``u``, positions ``(u + k) / N``, search in the cumsum.

    Returns the ancestor index of each of the N new particles (sorted ascending), on the
    weights' device. Each particle ``i`` is copied ``floor(N w_i)`` or ``ceil(N w_i)`` times,
    and ``N w_i`` on average.
    """
    n, device = log_weights.shape[0], log_weights.device
    w = torch.softmax(log_weights.detach().double(), dim=0)
    cumsum = torch.cumsum(w, dim=0)
    cumsum[-1] = 1.0  # guard against round-off leaving the last bin short
    u = torch.rand((), generator=generator, dtype=torch.float64, device=generator_device(generator))
    positions = (u.to(device) + torch.arange(n, dtype=torch.float64, device=device)) / n
    idx = torch.searchsorted(cumsum, positions, right=True)
    return idx.clamp_(max=n - 1)
