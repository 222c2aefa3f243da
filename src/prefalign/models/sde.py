"""The variance-preserving (VP) SDE of ``shared/docs/fkc-math.md``.

Forward (noising) process on t in [0, 1]::

    dx = f_t(x) dt + g_t dW,   f_t(x) = -b(t) x / 2,   g_t^2 = b(t),
    b(t) = b_min + t (b_max - b_min),
    x_t = a_t x_0 + s_t eps,   a_t = exp(-0.5 int_0^t b),   s_t = sqrt(1 - a_t^2).

A diffusers DDPM with 1000 linear betas (1e-4 .. 0.02) discretises this SDE with b_min = 0.1,
b_max = 20; the UNet is called at timestep ``t * (num_train_timesteps - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prefalign.runtime import generator_device


@dataclass(frozen=True)
class VPSDE:
    """Variance-preserving SDE with a linear noise schedule ``b(t)``.

    Args:
        b_min: noise rate at t = 0 (data end).
        b_max: noise rate at t = 1 (noise end).
    """

    b_min: float = 0.1
    b_max: float = 20.0

    def __post_init__(self) -> None:
        if not (self.b_min > 0 and self.b_max > self.b_min):
            raise ValueError(
                f"VPSDE needs 0 < b_min < b_max, got b_min={self.b_min}, b_max={self.b_max}"
            )

    def beta(self, t: float) -> float:
        """Noise rate ``b(t) = b_min + t (b_max - b_min)``; equals ``g_t^2``."""
        return self.b_min + t * (self.b_max - self.b_min)

    def integrated_beta(self, t: float) -> float:
        """``int_0^t b(s) ds``."""
        return self.b_min * t + 0.5 * t * t * (self.b_max - self.b_min)

    def alpha(self, t: float) -> float:
        """Signal scale ``a_t = exp(-0.5 int_0^t b)`` of the marginal ``x_t = a_t x_0 + s_t eps``."""
        return math.exp(-0.5 * self.integrated_beta(t))

    def sigma(self, t: float) -> float:
        """Marginal standard deviation ``s_t = sqrt(1 - a_t^2)`` (not the diffusion coefficient)."""
        return math.sqrt(-math.expm1(-self.integrated_beta(t)))

    def marginal_scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_t, s_t)`` for a tensor of times, float64 on ``t``'s device (no host read)."""
        t = t.double()
        integrated = self.b_min * t + 0.5 * t * t * (self.b_max - self.b_min)
        return torch.exp(-0.5 * integrated), torch.sqrt(-torch.expm1(-integrated))

    def drift(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Forward drift ``f_t(x) = -b(t) x / 2``."""
        return -0.5 * self.beta(t) * x

    def diffusion(self, t: float) -> float:
        """Diffusion coefficient ``g_t = sqrt(b(t))``."""
        return math.sqrt(self.beta(t))

    def marginal(
        self, x0: torch.Tensor, t: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``x_t = a_t x_0 + s_t eps`` given clean data ``x0``; ``eps`` is drawn on the
        generator's device and moved to ``x0``'s."""
        eps = torch.randn(
            x0.shape, generator=generator, device=generator_device(generator), dtype=x0.dtype
        )
        return self.alpha(t) * x0 + self.sigma(t) * eps.to(x0.device)

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Sample the t = 1 marginal, approximately N(0, I) (exactly N(0, s_1^2 I) for a centred
        data distribution of unit scale; we use N(0, I) as every VP sampler does), drawn on the
        generator's device and returned on ``device`` (None: the generator's)."""
        draw = torch.randn(
            shape, generator=generator, device=generator_device(generator), dtype=dtype
        )
        return draw if device is None else draw.to(device)

    def score_from_eps(self, eps_hat: torch.Tensor, t: float) -> torch.Tensor:
        """Convert a noise prediction to a score: ``grad log q_t(x) = -eps_hat / s_t``."""
        return -eps_hat / self.sigma(t)
