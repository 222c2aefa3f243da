"""GaussianMixture: exact score, marginals and closed-form tilts against independent numerics."""

from __future__ import annotations

import pytest
import torch

from prefalign.models.mixture import GaussianMixture
from prefalign.models.sde import VPSDE


@pytest.fixture
def mixture() -> GaussianMixture:
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.15, -0.05], [-0.05, 0.4]]])
    return GaussianMixture(torch.tensor([0.7, 0.3]), torch.tensor([[-1.0, 0.5], [1.5, -0.5]]), covs)


def test_score_matches_autograd_of_log_prob(mixture: GaussianMixture) -> None:
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    assert torch.allclose(mixture.score(x.detach()), grad, atol=1e-10)


def test_log_prob_integrates_to_one(mixture: GaussianMixture) -> None:
    grid = torch.linspace(-6, 6, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    mass = mixture.log_prob(pts).exp().sum() * (grid[1] - grid[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-4)


def test_sample_moments(mixture: GaussianMixture) -> None:
    x = mixture.sample(200_000, torch.Generator().manual_seed(1))
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    assert torch.allclose(x.mean(0), mean, atol=1e-2)


def test_marginal_matches_noised_samples(mixture: GaussianMixture) -> None:
    sde, t = VPSDE(), 0.3
    gen = torch.Generator().manual_seed(2)
    xt = sde.marginal(mixture.sample(200_000, gen), t, generator=gen)
    marg = mixture.marginal(sde, t)
    second = (
        marg.weights[:, None, None] * (marg.covs + marg.means[:, :, None] * marg.means[:, None])
    ).sum(0)
    assert torch.allclose(xt.T @ xt / xt.shape[0], second, atol=2e-2)


def _self_normalised_moments(mixture: GaussianMixture, log_tilt, n: int = 400_000):
    x = mixture.sample(n, torch.Generator().manual_seed(3))
    w = torch.softmax(log_tilt(x), 0)
    mean = (w[:, None] * x).sum(0)
    cov = (w[:, None, None] * (x - mean)[:, :, None] * (x - mean)[:, None]).sum(0)
    return mean, cov


def _moments(mix: GaussianMixture):
    mean = (mix.weights[:, None] * mix.means).sum(0)
    second = (
        mix.weights[:, None, None] * (mix.covs + mix.means[:, :, None] * mix.means[:, None])
    ).sum(0)
    return mean, second - mean[:, None] * mean[None]


def test_linear_tilt_matches_importance_weighting(mixture: GaussianMixture) -> None:
    a, lam = torch.tensor([1.0, -0.5], dtype=torch.float64), 1.2
    mean, cov = _self_normalised_moments(mixture, lambda x: lam * x @ a)
    exact_mean, exact_cov = _moments(mixture.tilt_linear(a, lam))
    assert torch.allclose(mean, exact_mean, atol=2e-2)
    assert torch.allclose(cov, exact_cov, atol=3e-2)


def test_quadratic_tilt_matches_importance_weighting(mixture: GaussianMixture) -> None:
    c, lam = torch.tensor([1.0, 1.0], dtype=torch.float64), 2.0
    mean, cov = _self_normalised_moments(mixture, lambda x: -lam * ((x - c) ** 2).sum(1) / 2)
    exact_mean, exact_cov = _moments(mixture.tilt_quadratic(c, lam))
    assert torch.allclose(mean, exact_mean, atol=2e-2)
    assert torch.allclose(cov, exact_cov, atol=2e-2)


def test_invalid_mixtures_rejected() -> None:
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), -torch.eye(2)[None])
    with pytest.raises(ValueError, match="shape mismatch"):
        GaussianMixture(torch.ones(2), torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2))
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture(torch.tensor([1.0, -1.0]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ValueError, match="lam > 0"):
        GaussianMixture.isotropic([1.0], [[0.0, 0.0]], 1.0).tilt_quadratic(torch.zeros(2), 0.0)
