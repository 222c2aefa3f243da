"""The potential a surrogate tilts the sampler by: its mean, or a pessimistic lower bound.

``mean - kappa std`` (the GP's posterior, or an ensemble's spread across members; Coste et al.
2023 use ensembles so against reward over-optimisation) rewards only what the answers support:
where the surrogate has seen nothing its std is large, and a strong tilt cannot send the
particles there on the strength of an extrapolation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def tilt_potential(
    surrogate: nn.Module, pessimism: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``surrogate`` itself (its mean) when ``pessimism`` is 0, else ``x -> mean - pessimism
    std`` by its ``predict`` (differentiable in ``x``)."""
    if pessimism == 0:
        return surrogate

    def potential(x: torch.Tensor) -> torch.Tensor:
        mean, std = surrogate.predict(x)
        return mean - pessimism * std

    return potential
