"""A noise-prediction MLP for vector data, as a diffusers model (``save_pretrained`` /
``from_pretrained``), called like a ``UNet2DModel``: ``net(x, timesteps).sample``.

The base model of mixture2d is the exact mixture; fine-tuning needs a network, so the closed-form
check of :mod:`prefalign.finetune.closed_form` trains this MLP on exact mixture samples first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class DenoiserOutput(BaseOutput):
    """What the network returns: ``sample``, the noise prediction (N, dim)."""

    sample: torch.Tensor


def timestep_features(timesteps: torch.Tensor, n_features: int, max_period: float) -> torch.Tensor:
    """Sinusoidal features (N, n_features) of (fractional) timesteps (N,), as in the DDPM UNet."""
    half = n_features // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    angles = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class MLPDenoiser(ModelMixin, ConfigMixin):
    """``eps_hat(x, i)`` for x of shape (N, dim): an MLP on ``[x, features(i)]`` with SiLU.

    Args:
        dim: data dimension.
        hidden: width of the hidden layers.
        layers: hidden layers.
        time_features: sinusoidal timestep features.
        num_train_timesteps: ``T``, the period scale of the features.
    """

    @register_to_config
    def __init__(
        self,
        dim: int = 2,
        hidden: int = 128,
        layers: int = 3,
        time_features: int = 32,
        num_train_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        widths = [dim + time_features] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        blocks.append(nn.Linear(widths[-1], dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> DenoiserOutput:
        """The noise prediction for ``sample`` (N, dim) at ``timestep`` (N,) or a number."""
        if not torch.is_tensor(timestep):
            timestep = torch.full((sample.shape[0],), float(timestep), device=sample.device)
        features = timestep_features(
            timestep.reshape(-1).expand(sample.shape[0]),
            self.config.time_features,
            10.0 * self.config.num_train_timesteps,
        )
        return DenoiserOutput(sample=self.net(torch.cat([sample, features.to(sample.dtype)], 1)))
