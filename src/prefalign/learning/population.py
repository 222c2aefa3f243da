"""A population prior: what the answers of earlier users teach about a new one.

Each training user's ratings are fitted by the project's GP surrogate of ratings
(:func:`prefalign.learning.gp.fit_gp`); its posterior mean ``phi_j(x)`` is that user's reward as
far as their answers tell. A new user's reward is then modelled as a draw from the population
around its mean, plus what no earlier user shares (a hierarchical GP with an empirical,
low-rank population covariance):

    f(x) = mu(x) + sum_j w_j d_j(x) + g(x),   d_j = phi_j - mu,   mu = mean_j phi_j,
    w ~ N(0, a^2 / J I),   g ~ GP(0, b^2 exp(-|x - x'|^2 / (2 l^2))),   y = f(x) + N(0, s^2).

That is exact GP regression with prior mean ``mu`` and kernel ``a^2/J d(x).d(x') + b^2 k_l``:
a handful of answers place the new user among the earlier ones (the ``w`` are J numbers, the
residual ``g`` is what is new). The four hyper-parameters ``(a, b, l, s)`` are learnt from the
population itself, by leave-one-user-out empirical Bayes: the summed log marginal likelihood of
each training user's answers under the prior built from the *other* users (L-BFGS on their
logarithms, deterministic).

:class:`PopulationGP` is that model conditioned on one user's answers (none: the prior itself,
which starts a held-out user's campaign). It has the interface of the GP surrogate
(:class:`prefalign.learning.gp.GPSurrogate`, ratings only): ``predict`` (mean, std,
differentiable, for the tilt and the pessimistic final potential), ``members``,
``features``/``predictive().covariance`` (information-directed questions). Its checkpoint is a
surrogate checkpoint (:func:`prefalign.learning.checkpoint.save_population`: ``model.safetensors``
+ ``meta.json`` with a ``population`` record), so every step that loads a surrogate loads it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prefalign.settings import SurrogateConfig

#: The surrogate settings a population GP records (a GP of ratings on the raw particle).
POPULATION_CONFIG = SurrogateConfig(arch="gp", features="raw")
#: Training users' points evaluated at once when the prior is fitted (bounds the memory).
_CHUNK = 512
#: L-BFGS iterations of the leave-one-user-out fit of the four hyper-parameters.
_HYPER_ITERATIONS = 60
#: Smallest noise and residual variances the fit may reach (keeps the Cholesky stable).
_MIN_VARIANCE = 1e-6
#: Standard deviation of the log-normal hyper-prior of a user's own scales around the
#: population's (:meth:`PopulationGP.conditioned`): a factor e either way is one std.
HYPER_PRIOR_STD = 1.0
_NAMES = ("population_scale", "residual_scale", "residual_lengthscale", "noise_std")


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a_i - b_j|^2`` (..., N, M) of rows ``a`` (..., N, D) and ``b`` (..., M, D), by the
    expansion ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product), clamped at 0."""
    sq = (a**2).sum(-1)[..., :, None] + (b**2).sum(-1)[..., None, :] - 2.0 * a @ b.transpose(-1, -2)
    return sq.clamp_min(0.0)


class PopulationGP(nn.Module):
    """The population prior conditioned on one user's ratings (see the module docstring).

    Args:
        event_shape: shape of one particle.
        basis_x: (J, n, D) each training user's rated particles, flattened, zero-padded.
        basis_weight: (J, n) their GP weights ``scale_j * a_j`` (0 on padding).
        basis_inverse_length: (J, D) each user's kernel inverse lengthscales in particle units.
        basis_offset: (J,) each user's ``shift + scale c`` (the posterior mean far from data).
        hyper: (4,) ``(a, b, l, s)``: population scale, residual scale, residual lengthscale
            (particle units, on the flattened particle), noise std.
        obs_x: (m, D) the user's rated particles, flattened (m may be 0).
        obs_y: (m,) their ratings.
    """

    head = "rate"
    config = POPULATION_CONFIG

    def __init__(
        self,
        event_shape: tuple[int, ...],
        *,
        basis_x: torch.Tensor,
        basis_weight: torch.Tensor,
        basis_inverse_length: torch.Tensor,
        basis_offset: torch.Tensor,
        hyper: torch.Tensor,
        obs_x: torch.Tensor,
        obs_y: torch.Tensor,
    ) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        d = math.prod(self.event_shape)
        j = basis_x.shape[0]
        if j < 2 or tuple(basis_x.shape[::2]) != (j, d) or basis_x.dim() != 3:
            raise ValueError(
                f"basis_x must be (J >= 2, n, {d}) for particles of shape {self.event_shape}; "
                f"got {tuple(basis_x.shape)}"
            )
        n = basis_x.shape[1]
        for name, tensor, shape in (
            ("basis_weight", basis_weight, (j, n)),
            ("basis_inverse_length", basis_inverse_length, (j, d)),
            ("basis_offset", basis_offset, (j,)),
            ("hyper", hyper, (4,)),
        ):
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}; got {tuple(tensor.shape)}")
        if obs_x.dim() != 2 or obs_x.shape[1] != d or tuple(obs_y.shape) != (obs_x.shape[0],):
            raise ValueError(
                f"obs_x must be (m, {d}) and obs_y (m,); got {tuple(obs_x.shape)}, "
                f"{tuple(obs_y.shape)}"
            )
        if not bool(torch.isfinite(hyper).all()) or bool((hyper <= 0).any()):
            raise ValueError(f"hyper-parameters must be finite and positive; got {hyper.tolist()}")
        for name, tensor in (
            ("basis_x", basis_x),
            ("basis_weight", basis_weight),
            ("basis_inverse_length", basis_inverse_length),
            ("basis_offset", basis_offset),
            ("hyper", hyper),
            ("obs_x", obs_x),
            ("obs_y", obs_y),
        ):
            self.register_buffer(name, tensor.detach().double().clone())
        self._solve: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ---------------------------------------------------------------------------------------
    # the model

    @property
    def n_users(self) -> int:
        """Training users J behind the prior."""
        return int(self.basis_x.shape[0])

    @property
    def train_x(self) -> torch.Tensor:
        """The user's rated particles (m, D): where the model is (information_batch reads it)."""
        return self.obs_x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The particles flattened to (N, D) float64, differentiable in ``x``."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"surrogate expects inputs of shape (N, {', '.join(map(str, self.event_shape))}),"
                f" got {tuple(x.shape)}"
            )
        return x.double().reshape(x.shape[0], -1)

    def user_functions(self, z: torch.Tensor) -> torch.Tensor:
        """``phi_j(z)`` (N, J): each training user's posterior mean reward at ``z`` (N, D)."""
        w = self.basis_inverse_length  # (J, D)
        a = z[None] * w[:, None, :]  # (J, N, D)
        b = self.basis_x * w[:, None, :]  # (J, n, D)
        k = torch.exp(-0.5 * squared_distances(a, b))  # (J, N, n)
        return (self.basis_offset[:, None] + (k @ self.basis_weight[:, :, None])[..., 0]).T

    def prior_parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior mean ``mu(z)`` (N,) and the scaled deviations ``a d(z) / sqrt(J)`` (N, J)."""
        phi = self.user_functions(z)
        mu = phi.mean(dim=1)
        return mu, (phi - mu[:, None]) * (self.hyper[0] / math.sqrt(self.n_users))

    def _residual(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """``b^2 k_l(z1, z2)`` (N1, N2)."""
        b, length = self.hyper[1], self.hyper[2]
        return b**2 * torch.exp(-0.5 * squared_distances(z1, z2) / length**2)

    def _solved(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L, alpha, d(X))``: the Cholesky factor of ``K(X, X) + s^2 I``, ``K^-1 (y - mu(X))``
        and the answered particles' scaled deviations (computed once: the sampler asks for the
        posterior at every step)."""
        if self._solve is None or self._solve[0].device != self.obs_x.device:
            with torch.no_grad():
                x = self.obs_x
                mu, d = self.prior_parts(x)
                eye = torch.eye(len(x), dtype=x.dtype, device=x.device)
                k = d @ d.T + self._residual(x, x) + self.hyper[3] ** 2 * eye
                chol = torch.linalg.cholesky(k)
                alpha = torch.cholesky_solve((self.obs_y - mu)[:, None], chol)[:, 0]
            self._solve = (chol, alpha, d)
        return self._solve

    def _to_answered(self, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``k(z, X)`` (N, m), given ``z``'s scaled deviations ``d`` (:meth:`prior_parts`)."""
        _, _, d_obs = self._solved()
        return d @ d_obs.T + self._residual(z, self.obs_x)

    def posterior(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At features ``z`` (N, D): the posterior mean (N,), variance (N,) and ``k(z, X)`` (N, m)."""
        mu, d = self.prior_parts(z)
        prior_var = (d**2).sum(1) + self.hyper[1] ** 2
        if len(self.obs_x) == 0:
            return mu, prior_var, z.new_zeros((len(z), 0))
        chol, alpha, _ = self._solved()
        k_zx = self._to_answered(z, d)
        v = torch.linalg.solve_triangular(chol, k_zx.T, upper=False)  # (m, N)
        return mu + k_zx @ alpha, prior_var - (v**2).sum(0), k_zx

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of the rating (N,) each, in ``x``'s dtype and
        differentiable in ``x``."""
        mean, var, _ = self.posterior(self.features(x))
        return mean.to(x.dtype), torch.sqrt(var.clamp_min(1e-12)).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of the rating, (N, *event_shape) -> (N,)."""
        return self.predict(x)[0]

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N): the posterior mean, as a one-member ensemble."""
        return self.forward(x)[None]

    def standardised_members(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N): the posterior mean (the pairing rules' utilities)."""
        return self.members(x)

    def predictive(self) -> PopulationPredictive:
        """The posterior covariance and the noise, for information-directed questions."""
        return PopulationPredictive(self)

    def train(self, mode: bool = True) -> PopulationGP:
        """Only ever evaluated: stays in eval mode."""
        super().train(False)
        return self

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 (nn.Module's own signature)
        super()._apply(fn, recurse)
        self._solve = None  # recomputed where the buffers now are
        return self

    def conditioned(self, x: np.ndarray, y: np.ndarray, *, adapt: bool = True) -> PopulationGP:
        """The same prior conditioned on ratings ``y`` (m,) of particles ``x`` (m, *shape).

        ``adapt``: the user's own population scale, residual scale and noise, the maximum a
        posteriori under a log-normal hyper-prior centred on this model's (the population's)
        values with :data:`HYPER_PRIOR_STD` (a user whose taste no earlier user shares shows
        answers the population cannot explain, and the residual grows to learn it); the
        residual's lengthscale stays the population's."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if tuple(x.shape[1:]) != self.event_shape or y.shape != (len(x),):
            raise ValueError(
                f"observations must be (m, {', '.join(map(str, self.event_shape))}) particles "
                f"with (m,) ratings; got {x.shape} and {y.shape}"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("observations must be finite")
        device = self.basis_x.device
        obs_x = torch.as_tensor(x.reshape(len(x), self.basis_x.shape[2]), device=device)
        obs_y = torch.as_tensor(y, device=device)
        hyper = self.hyper
        if adapt and len(y) >= 2:
            hyper = self._adapted(obs_x, obs_y)
        return PopulationGP(
            self.event_shape,
            basis_x=self.basis_x,
            basis_weight=self.basis_weight,
            basis_inverse_length=self.basis_inverse_length,
            basis_offset=self.basis_offset,
            hyper=hyper,
            obs_x=obs_x,
            obs_y=obs_y,
        )

    def _adapted(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The MAP hyper-parameters of one user's answers (see :meth:`conditioned`)."""
        with torch.no_grad():
            mu, d = self.prior_parts(x)
            d = d / self.hyper[0]  # the deviations at population scale 1
            residual = torch.exp(-0.5 * squared_distances(x, x) / self.hyper[2] ** 2)
        centre = self.hyper[[0, 1, 3]].log()
        theta = centre.clone().requires_grad_(True)
        eye = torch.eye(len(y), dtype=y.dtype, device=y.device)
        r = y - mu

        def loss() -> torch.Tensor:
            a, b, s = theta.exp()
            k = a**2 * d @ d.T + b**2 * residual + (s**2 + _MIN_VARIANCE) * eye
            chol = torch.linalg.cholesky(k)
            alpha = torch.cholesky_solve(r[:, None], chol)[:, 0]
            nll = 0.5 * (r @ alpha) + torch.log(chol.diagonal()).sum()
            return nll + 0.5 * (((theta - centre) / HYPER_PRIOR_STD) ** 2).sum()

        optimiser = torch.optim.LBFGS([theta], max_iter=50, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            value = loss()
            value.backward()
            return value

        optimiser.step(closure)
        a, b, s = theta.detach().exp()
        return torch.stack([a, b, self.hyper[2], s]).clamp_min(math.sqrt(_MIN_VARIANCE))

    def hyper_parameters(self) -> dict[str, float]:
        """The four hyper-parameters by name."""
        return dict(zip(_NAMES, self.hyper.tolist(), strict=True))


@dataclass(frozen=True)
class PopulationPredictive:
    """:class:`PopulationGP`'s posterior covariance in the interface of
    :class:`prefalign.learning.gp.Predictive` that information-directed questions read."""

    model: PopulationGP

    @property
    def noise(self) -> float:
        """The ratings' noise variance."""
        return float(self.model.hyper[3] ** 2)

    @property
    def scale(self) -> float:
        """The covariance is already in the ratings' units."""
        return 1.0

    def covariance(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The posterior covariance of the rating between features ``z1`` and ``z2``."""
        model = self.model
        _, d1 = model.prior_parts(z1)
        _, d2 = model.prior_parts(z2)
        k12 = d1 @ d2.T + model._residual(z1, z2)
        if len(model.obs_x) == 0:
            return k12
        chol, _, _ = model._solved()
        v1 = torch.linalg.solve_triangular(chol, model._to_answered(z1, d1).T, upper=False)
        v2 = torch.linalg.solve_triangular(chol, model._to_answered(z2, d2).T, upper=False)
        return k12 - v1.T @ v2


# ------------------------------------------------------------------------------------------------
# Fitting the prior on the training users


@dataclass(frozen=True)
class PriorReport:
    """What fitting the prior cost and found."""

    n_users: int
    n_observations: int
    fit_seconds: float
    user_fit_seconds: float
    hyper: dict[str, float]
    loo_log_likelihood: float  # per observation, leave-one-user-out, at the fitted hyper
    independent_log_likelihood: float  # the same without the population (a = 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return dict(self.__dict__)


def _basis_of(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """One training user's GP of ratings as ``(x (n, D), weight (n,), inverse length (D,),
    offset)``: ``phi(z) = offset + sum_i weight_i exp(-|(z - x_i) inv|^2 / 2)``."""
    from prefalign.learning.gp import _rbf_parameters, fit_gp

    surrogate, _ = fit_gp(x, y, POPULATION_CONFIG, seed=seed, form="rate")
    predictive = surrogate.predictive()
    scale, lengthscale = _rbf_parameters(predictive.kernel)
    if scale is None:
        raise ValueError("a population prior needs the GP's squared-exponential kernel")
    d = int(np.prod(x.shape[1:]))
    x_std = surrogate.x_std.double().reshape(-1).expand(d)
    inverse = 1.0 / (x_std * lengthscale.double().reshape(-1).expand(d))
    # the GP sees z = (x - m) / s, so |z - z_i|/l = |x - x_i| / (s l): the inputs stay raw
    weight = predictive.scale * scale * predictive.weights
    offset = predictive.shift + predictive.scale * predictive.constant
    return (
        x.reshape(len(x), -1).astype(np.float64),
        weight.detach().numpy(),
        inverse.detach().numpy(),
        float(offset.detach()),
    )


def fit_prior(
    users: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    progress: bool = False,
) -> tuple[PopulationGP, PriorReport]:
    """The population prior (a :class:`PopulationGP` with no answers of its own, on the host:
    a few thousand answers, like a GP surrogate's fit) from the training users' ratings ``[(x_j (n_j, *shape), y_j (n_j,)), ...]``.

    Deterministic given ``seed`` (each user's GP fit is seeded from it and the user's place).

    Raises:
        ValueError: fewer than 3 users, users of different particle shapes, a user without
            answers, non-finite data.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if len(users) < 3:
        raise ValueError(f"a population prior needs at least 3 training users; got {len(users)}")
    shapes = {tuple(np.asarray(x).shape[1:]) for x, _ in users}
    if len(shapes) != 1:
        raise ValueError(f"the training users rated particles of different shapes: {shapes}")
    (event_shape,) = shapes
    for j, (x, y) in enumerate(users):
        if len(x) < 2 or len(y) != len(x):
            raise ValueError(f"training user {j} has {len(y)} ratings of {len(x)} particles")
    bases = []
    iterator = tqdm(users, desc="training users' GPs", disable=not progress, leave=False)
    for j, (x, y) in enumerate(iterator):
        user_seed = int(np.random.default_rng([seed, j]).integers(2**31))
        bases.append(_basis_of(np.asarray(x, np.float64), np.asarray(y, np.float64), user_seed))
    user_seconds = time.perf_counter() - start
    n_max = max(len(b[0]) for b in bases)
    d = bases[0][0].shape[1]
    basis_x = np.zeros((len(bases), n_max, d))
    basis_weight = np.zeros((len(bases), n_max))
    for j, (x, w, _, _) in enumerate(bases):
        basis_x[j, : len(x)], basis_weight[j, : len(x)] = x, w
    prior = PopulationGP(
        event_shape,
        basis_x=torch.as_tensor(basis_x, device="cpu"),
        basis_weight=torch.as_tensor(basis_weight, device="cpu"),
        basis_inverse_length=torch.as_tensor(np.stack([b[2] for b in bases]), device="cpu"),
        basis_offset=torch.as_tensor([b[3] for b in bases], dtype=torch.float64, device="cpu"),
        hyper=torch.ones(4, dtype=torch.float64, device="cpu"),
        obs_x=torch.zeros((0, d), dtype=torch.float64, device="cpu"),
        obs_y=torch.zeros(0, dtype=torch.float64, device="cpu"),
    )
    xs = [
        torch.as_tensor(np.asarray(x, np.float64).reshape(len(x), -1), device="cpu")
        for x, _ in users
    ]
    ys = [torch.as_tensor(np.asarray(y, np.float64), device="cpu") for _, y in users]
    hyper, loo, independent = _fit_hyper(prior, xs, ys)
    prior.hyper.copy_(hyper)
    report = PriorReport(
        n_users=len(users),
        n_observations=int(sum(len(y) for y in ys)),
        fit_seconds=time.perf_counter() - start,
        user_fit_seconds=user_seconds,
        hyper=prior.hyper_parameters(),
        loo_log_likelihood=loo,
        independent_log_likelihood=independent,
    )
    return prior, report


def _fit_hyper(
    prior: PopulationGP, xs: list[torch.Tensor], ys: list[torch.Tensor]
) -> tuple[torch.Tensor, float, float]:
    """``(a, b, l, s)`` maximising the leave-one-user-out marginal likelihood of every training
    user's ratings; returns them with that log-likelihood per observation, and the best one
    without the population (``a = 0``: each user on their own, as a campaign without prior)."""
    with torch.no_grad():
        phis = [
            torch.cat([prior.user_functions(x[i : i + _CHUNK]) for i in range(0, len(x), _CHUNK)])
            for x in xs
        ]  # each (n_i, J)
    j_count = prior.n_users
    sq = [squared_distances(x, x) for x in xs]
    parts = []
    for i, phi in enumerate(phis):
        others = torch.cat([phi[:, :i], phi[:, i + 1 :]], dim=1)  # leave user i out
        mu = others.mean(dim=1)
        parts.append((mu, others - mu[:, None]))
    n_obs = sum(len(y) for y in ys)
    # the residual's lengthscale starts at the median distance between a user's rated particles
    distances = torch.cat([s[torch.triu_indices(len(s), len(s), 1).unbind()] for s in sq])
    length0 = float(distances.sqrt().median()) if len(distances) else 1.0
    spread = float(torch.cat(ys).std()) or 1.0

    def negative_log_likelihood(log_h: torch.Tensor, population: bool) -> torch.Tensor:
        a, b, length, s = log_h.exp()
        total = log_h.new_zeros(())
        for (mu, dev), dist, y in zip(parts, sq, ys, strict=True):
            n = len(y)
            pop = (a**2 / (j_count - 1)) * dev @ dev.T if population else 0.0
            k = pop + b**2 * torch.exp(-0.5 * dist / length**2)
            k = k + (s**2 + _MIN_VARIANCE) * torch.eye(n, dtype=y.dtype, device=y.device)
            chol = torch.linalg.cholesky(k)
            r = y - (mu if population else y.mean())
            alpha = torch.cholesky_solve(r[:, None], chol)[:, 0]
            total = total + 0.5 * (r @ alpha) + torch.log(chol.diagonal()).sum()
            total = total + 0.5 * n * math.log(2 * math.pi)
        return total / n_obs

    def fit(population: bool) -> tuple[torch.Tensor, float]:
        start = [1.0 if population else 1e-3, spread, length0, 0.3 * spread]
        log_h = torch.tensor(start, dtype=torch.float64, device="cpu").log().requires_grad_(True)
        optimiser = torch.optim.LBFGS(
            [log_h], max_iter=_HYPER_ITERATIONS, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss = negative_log_likelihood(log_h, population)
            loss.backward()
            return loss

        optimiser.step(closure)
        with torch.no_grad():
            return log_h.detach().exp(), -float(negative_log_likelihood(log_h, population))

    hyper, loo = fit(True)
    _, independent = fit(False)
    hyper = torch.clamp(hyper, min=math.sqrt(_MIN_VARIANCE))
    return hyper, loo, independent
