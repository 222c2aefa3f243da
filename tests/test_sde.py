"""VPSDE against numerical integration and against diffusers' DDPM discretisation."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler
from scipy.integrate import quad

from prefalign.models.sde import VPSDE


@pytest.mark.parametrize("t", [0.0, 0.01, 0.3, 0.7, 1.0])
def test_alpha_sigma_match_integral_of_beta(t: float) -> None:
    sde = VPSDE(0.1, 20.0)
    integral, _ = quad(sde.beta, 0.0, t)
    assert sde.alpha(t) == pytest.approx(math.exp(-0.5 * integral), rel=1e-10)
    assert sde.alpha(t) ** 2 + sde.sigma(t) ** 2 == pytest.approx(1.0, abs=1e-12)


def test_drift_and_diffusion() -> None:
    sde = VPSDE(0.1, 20.0)
    x = torch.tensor([[1.0, -2.0]])
    assert torch.allclose(sde.drift(x, 0.5), -0.5 * sde.beta(0.5) * x)
    assert sde.diffusion(0.5) ** 2 == pytest.approx(sde.beta(0.5))


def test_ddpm_linear_betas_discretise_this_sde() -> None:
    """diffusers' 1000 linear betas (1e-4..0.02) give alphas_cumprod ≈ a_t^2, t = k / 999."""
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    sde = VPSDE(0.1, 20.0)
    for k in [10, 100, 500, 900, 999]:
        t = k / 999
        assert float(sched.alphas_cumprod[k]) == pytest.approx(
            sde.alpha(t) ** 2, rel=0.05, abs=1e-4
        )


def test_marginal_moments() -> None:
    sde = VPSDE()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 2.0, dtype=torch.float64)
    xt = sde.marginal(x0, 0.4, generator=gen)
    assert float(xt.mean()) == pytest.approx(2.0 * sde.alpha(0.4), abs=5e-3)
    assert float(xt.std()) == pytest.approx(sde.sigma(0.4), abs=5e-3)


def test_score_from_eps() -> None:
    sde = VPSDE()
    eps = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sde.score_from_eps(eps, 0.5), -eps / sde.sigma(0.5))


def test_bad_schedule_rejected() -> None:
    with pytest.raises(ValueError, match="b_min < b_max"):
        VPSDE(b_min=5.0, b_max=1.0)
