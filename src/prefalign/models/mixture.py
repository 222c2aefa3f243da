"""Gaussian mixtures: exact VP marginal scores, exact sampling and closed-form tilted targets.

For ``q_0 = sum_k pi_k N(mu_k, S_k)`` every VP marginal is a mixture with means ``a_t mu_k`` and
covariances ``a_t^2 S_k + s_t^2 I`` (``shared/docs/fkc-math.md``), so the score is exact at any t,
and the reward-tilted targets of a linear and a quadratic reward are mixtures again.

A mixture's tensors share one device (:meth:`GaussianMixture.to`), and so do its marginals and
its score: the constructor's checks read values (a sync on a GPU), so a mixture built from one
already checked (a marginal, a move to another device) skips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prefalign.models.sde import VPSDE


@dataclass(frozen=True)
class GaussianMixture:
    """A mixture ``sum_k pi_k N(mu_k, S_k)`` in d dimensions.

    Args:
        weights: mixture weights (K,), positive; normalised on construction.
        means: component means (K, d).
        covs: component covariances (K, d, d), symmetric positive definite.
    """

    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, d)
    covs: torch.Tensor  # (K, d, d)

    def __post_init__(self) -> None:
        w, m, c = self.weights, self.means, self.covs
        if w.ndim != 1 or m.ndim != 2 or c.ndim != 3:
            raise ValueError("GaussianMixture needs weights (K,), means (K, d), covs (K, d, d)")
        k, d = m.shape
        if w.shape[0] != k or c.shape != (k, d, d):
            raise ValueError(
                f"shape mismatch: weights {tuple(w.shape)}, means {tuple(m.shape)}, "
                f"covs {tuple(c.shape)}"
            )
        if not (torch.isfinite(w).all() and (w > 0).all()):
            raise ValueError("mixture weights must be finite and positive")
        try:
            chol = torch.linalg.cholesky(c.double())
        except RuntimeError as err:
            raise ValueError("every covariance must be symmetric positive definite") from err
        self._set(w, m, c, chol)

    def _set(self, w: torch.Tensor, m: torch.Tensor, c: torch.Tensor, chol: torch.Tensor) -> None:
        object.__setattr__(self, "weights", (w / w.sum()).double())
        object.__setattr__(self, "means", m.double())
        object.__setattr__(self, "covs", c.double())
        object.__setattr__(self, "_chol", chol)

    @classmethod
    def _checked_already(
        cls, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor
    ) -> GaussianMixture:
        """The mixture of parameters that come from a checked mixture (positive weights, SPD
        covariances): the constructor's arithmetic without its checks, which read values."""
        mixture = object.__new__(cls)
        chol, _ = torch.linalg.cholesky_ex(covs.double())  # cholesky's factor, no error check
        mixture._set(weights, means, covs, chol)
        return mixture

    def to(self, device: torch.device | str) -> GaussianMixture:
        """This mixture with its tensors on ``device``."""
        return self._checked_already(
            self.weights.to(device), self.means.to(device), self.covs.to(device)
        )

    @classmethod
    def isotropic(
        cls, weights: list[float] | torch.Tensor, means: list | torch.Tensor, std: float
    ) -> GaussianMixture:
        """Mixture with equal isotropic covariances ``std^2 I``."""
        means = torch.as_tensor(means, dtype=torch.float64, device="cpu")
        k, d = means.shape
        covs = (std**2) * torch.eye(d, dtype=torch.float64, device="cpu").expand(k, d, d).clone()
        return cls(torch.as_tensor(weights, dtype=torch.float64, device="cpu"), means, covs)

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """Dimension d."""
        return self.means.shape[1]

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; mu_k, S_k)`` for every particle and component, (N, K)."""
        x = x.double()
        diff = x[:, None, :] - self.means[None]  # (N, K, d)
        chol = self._chol  # (K, d, d)
        sol = torch.linalg.solve_triangular(
            chol[None].expand(x.shape[0], -1, -1, -1), diff[..., None], upper=False
        )[..., 0]  # (N, K, d): L^-1 (x - mu)
        maha = (sol * sol).sum(-1)  # (N, K)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        return -0.5 * (maha + logdet[None] + self.dim * math.log(2 * math.pi))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (N,)."""
        return torch.logsumexp(self.component_log_probs(x) + torch.log(self.weights)[None], dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities (N, K)."""
        return torch.softmax(self.component_log_probs(x) + torch.log(self.weights)[None], dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Exact score ``grad log q(x) = -sum_k resp_k S_k^-1 (x - mu_k)``, same dtype as x."""
        xd = x.double()
        resp = self.responsibilities(xd)  # (N, K)
        diff = xd[:, None, :] - self.means[None]  # (N, K, d)
        prec_diff = torch.cholesky_solve(
            diff[..., None], self._chol[None].expand(x.shape[0], -1, -1, -1)
        )[..., 0]  # (N, K, d)
        return -(resp[..., None] * prec_diff).sum(1).to(x.dtype)

    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_components: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Exact samples (n, d) in float64 (and, if asked, the component of each)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(
            (n, self.dim), generator=generator, dtype=torch.float64, device=self.means.device
        )
        x = self.means[comp] + (self._chol[comp] @ eps[..., None])[..., 0]
        return (x, comp) if return_components else x

    def marginal(self, sde: VPSDE, t: float) -> GaussianMixture:
        """The VP marginal at forward time t: means ``a_t mu_k``, covs ``a_t^2 S_k + s_t^2 I``."""
        a, s = sde.alpha(t), sde.sigma(t)
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.means.device)
        return self._checked_already(self.weights, a * self.means, a * a * self.covs + s * s * eye)

    def marginal_score(self, sde: VPSDE) -> MarginalScore:
        """``(x, t) -> grad log q_t(x)``, the sampler's score function."""
        return MarginalScore(self, sde)

    def tilt_linear(self, a: torch.Tensor, lam: float) -> GaussianMixture:
        """Closed form of ``q(x) exp(lam <a, x>)``: means ``mu_k + lam S_k a``, weights
        ``∝ pi_k exp(lam <a, mu_k> + lam^2 a^T S_k a / 2)``."""
        a = torch.as_tensor(a, dtype=torch.float64, device=self.means.device)
        sa = self.covs @ a  # (K, d)
        logits = torch.log(self.weights) + lam * self.means @ a + 0.5 * lam**2 * (sa @ a)
        return GaussianMixture(torch.softmax(logits, 0), self.means + lam * sa, self.covs)

    def tilt_quadratic(self, c: torch.Tensor, lam: float) -> GaussianMixture:
        """Closed form of ``q(x) exp(-lam |x - c|^2 / 2)``: precisions ``S_k^-1 + lam I``, means
        ``(S_k^-1 + lam I)^-1 (S_k^-1 mu_k + lam c)``, weights ``∝ pi_k N(c; mu_k, S_k + I/lam)``."""
        if lam <= 0:
            raise ValueError(f"tilt_quadratic needs lam > 0; got {lam}")
        c = torch.as_tensor(c, dtype=torch.float64, device=self.means.device)
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.means.device)
        prec = torch.linalg.inv(self.covs) + lam * eye
        covs = torch.linalg.inv(prec)
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        rhs = torch.linalg.solve(self.covs, self.means[..., None])[..., 0] + lam * c
        means = (covs @ rhs[..., None])[..., 0]
        at_c = GaussianMixture(self.weights, self.means, self.covs + eye / lam)
        logits = torch.log(self.weights) + at_c.component_log_probs(c[None])[0]
        return GaussianMixture(torch.softmax(logits, 0), means, covs)


class MarginalScore:
    """Exact VP marginal score of a mixture; caches the marginal of the last t asked for."""

    def __init__(self, mixture: GaussianMixture, sde: VPSDE) -> None:
        self.mixture, self.sde = mixture, sde
        self._t: float | None = None
        self._marginal: GaussianMixture | None = None

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        if t != self._t:
            self._t, self._marginal = t, self.mixture.marginal(self.sde, t)
        return self._marginal.score(x)
