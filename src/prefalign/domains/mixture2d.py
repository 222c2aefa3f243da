"""The 2-D mixture domain: a ring of Gaussian modes as the data manifold, with simulated users.

The base model is the exact mixture, so its VP score is exact at every t. Two modes carry a small
prior weight (``rare_weight``) and the simulated users prefer them, so that preferred samples are
rare under the base model (about 2 % of base samples by default) and methods can be told apart.

Simulated users (oracles), each a smooth function usable both as a black box on numpy arrays and,
for upper-bound experiments, as a differentiable torch reward:

- ``one-mode``: a Gaussian bump on the rare mode 0 (reward in [0, 1]).
- ``two-modes``: bumps on the rare modes 0 and 4 (multimodal preference).
- ``off-manifold``: a bump whose maximum lies outside the ring, beyond mode 0: the best valid
  samples sit on the outer edge of mode 0, and a sampler that leaves the ring is caught by the
  validity test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from prefalign.domains.base import OracleFn

if TYPE_CHECKING:  # the simulated users run without torch, so the oracle command starts fast
    import torch

    from prefalign.models.mixture import GaussianMixture
    from prefalign.models.sde import VPSDE

ORACLES: tuple[str, ...] = ("one-mode", "two-modes", "off-manifold")


@dataclass(frozen=True)
class BumpPreference:
    """``r(x) = max_j exp(-|x - c_j|^2 / (2 width^2))``: a preference peaked at the centres."""

    centres: tuple[tuple[float, float], ...]
    width: float

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable reward (N,) for x (N, 2): the largest bump."""
        import torch

        c = torch.as_tensor(self.centres, dtype=x.dtype, device=x.device)  # (J, 2)
        log_bumps = -((x[:, None, :] - c[None]) ** 2).sum(-1) / (2 * self.width**2)  # (N, J)
        return log_bumps.max(dim=1).values.exp()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Black-box reward on numpy samples (N, 2) -> (N,) float64."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), 2)
        c = np.asarray(self.centres, dtype=np.float64)  # (J, 2)
        log_bumps = -((x[:, None, :] - c[None]) ** 2).sum(-1) / (2 * self.width**2)  # (N, J)
        return np.exp(log_bumps.max(axis=1))


@dataclass(frozen=True)
class Mixture2D:
    """A ring of ``n_modes`` isotropic Gaussian modes of radius ``radius``.

    Args:
        n_modes: modes on the ring (>= 5, so that modes 0 and 4 are distinct and separated).
        radius: ring radius.
        mode_std: standard deviation of each mode.
        rare_weight: prior weight of each of the two preferred modes (0 and ``n_modes // 2``).
        b_min, b_max: the VP noise schedule.
        device: torch device of the score; ``score`` expects ``x`` on it (the data samples and
            the closed forms stay on the CPU).
    """

    n_modes: int = 8
    radius: float = 3.0
    mode_std: float = 0.25
    rare_weight: float = 0.02
    b_min: float = 0.1
    b_max: float = 20.0
    device: str = field(default="cpu", compare=False)
    name: str = field(default="mixture2d", init=False)

    def __post_init__(self) -> None:
        if self.n_modes < 5:
            raise ValueError(f"n_modes must be >= 5; got {self.n_modes}")
        if not 0 < 2 * self.rare_weight < 1:
            raise ValueError(f"rare_weight must lie in (0, 0.5); got {self.rare_weight}")
        if self.radius <= 0 or self.mode_std <= 0:
            raise ValueError("radius and mode_std must be positive")

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2,)

    @property
    def sde(self) -> VPSDE:
        from prefalign.models.sde import VPSDE

        return VPSDE(self.b_min, self.b_max)

    @property
    def preferred_modes(self) -> tuple[int, int]:
        """Indices of the two rare, preferred modes."""
        return (0, self.n_modes // 2)

    @property
    def means(self) -> np.ndarray:
        """Mode centres (K, 2), mode k at angle 2 pi k / K."""
        angles = 2 * math.pi * np.arange(self.n_modes) / self.n_modes
        return self.radius * np.stack([np.cos(angles), np.sin(angles)], 1)

    @cached_property
    def mixture(self) -> GaussianMixture:
        """The data distribution (and exact base model), on the CPU."""
        import torch

        from prefalign.models.mixture import GaussianMixture

        common = (1 - 2 * self.rare_weight) / (self.n_modes - 2)
        weights = np.full(self.n_modes, common)
        weights[list(self.preferred_modes)] = self.rare_weight
        return GaussianMixture.isotropic(
            torch.tensor(weights, device="cpu"),
            torch.tensor(self.means, device="cpu"),
            self.mode_std,
        )

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Exact VP marginal score of the mixture at forward time t (x on ``device``)."""
        return self._marginal_score(x, t)

    @cached_property
    def _marginal_score(self):
        return self.mixture.to(self.device).marginal_score(self.sde)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """Exact samples of the data distribution (n, 2), float32."""
        return self.mixture.sample(n, generator).numpy().astype(np.float32)

    def reference_samples(self) -> np.ndarray:
        """Exact samples of the data distribution (2,000, fixed seed)."""
        import torch

        return self.sample_data(2000, torch.Generator(device="cpu").manual_seed(0))

    def oracle_names(self) -> list[str]:
        return list(ORACLES)

    def preference(self, name: str) -> BumpPreference:
        """The simulated user ``name`` (a callable on numpy arrays with a ``.torch`` method)."""
        m = self.means
        a, b = self.preferred_modes
        width = 2 * self.mode_std
        if name == "one-mode":
            return BumpPreference((tuple(m[a]),), width)
        if name == "two-modes":
            return BumpPreference((tuple(m[a]), tuple(m[b])), width)
        if name == "off-manifold":
            return BumpPreference(
                (tuple(m[a] * (1 + 6 * self.mode_std / self.radius)),), 4 * self.mode_std
            )
        kind, _, rest = name.partition("-")
        mode, _, width = rest.partition("-w")
        if kind == "mode" and mode.isdigit() and int(mode) < self.n_modes:
            try:
                scale = float(width)
            except ValueError:
                scale = math.nan
            if math.isfinite(scale) and scale > 0:
                return BumpPreference((tuple(m[int(mode)]),), scale * self.mode_std)
        raise ValueError(
            f"unknown mixture2d oracle {name!r}; valid: {', '.join(ORACLES)}, or mode-K-wW (a "
            f"bump of width W mode_stds on mode K < {self.n_modes})"
        )

    def oracle(self, name: str) -> OracleFn:
        return self.preference(name)

    def mahalanobis(self, x: np.ndarray) -> np.ndarray:
        """Distance of each sample to each mode in units of ``mode_std``, (N, K)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), 2)
        return np.linalg.norm(x[:, None, :] - self.means[None], axis=-1) / self.mode_std

    def is_valid(self, x: np.ndarray) -> np.ndarray:
        """On the manifold: inside some mode's 3-sigma circle."""
        return self.mahalanobis(x).min(axis=1) <= 3.0

    def nearest_mode(self, x: np.ndarray) -> np.ndarray:
        """Index of the nearest mode of each sample, (N,)."""
        return self.mahalanobis(x).argmin(axis=1)

    def diversity(self, x: np.ndarray) -> dict[str, float]:
        """Modes covered by valid samples, and the mean pairwise distance of all samples."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), 2)
        valid = self.is_valid(x)
        modes = np.unique(self.nearest_mode(x[valid])) if valid.any() else np.array([], int)
        covered_preferred = len(set(modes.tolist()) & set(self.preferred_modes))
        if len(x) > 1:
            d = np.linalg.norm(x[:, None] - x[None], axis=-1)
            mean_pairwise = float(d.sum() / (len(x) * (len(x) - 1)))
        else:
            mean_pairwise = 0.0
        return {
            "modes_covered": float(len(modes)),
            "preferred_modes_covered": float(covered_preferred),
            "mean_pairwise_distance": mean_pairwise,
        }


#: This module's domain (:mod:`prefalign.domains`).
DOMAIN = Mixture2D
