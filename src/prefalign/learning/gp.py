"""A Gaussian-process surrogate reward (BoTorch/GPyTorch): a reward model that knows what it
does not know.

:class:`GPSurrogate` has the interface of the network surrogate
(:class:`prefalign.learning.surrogate.Surrogate`): ``surrogate(x)`` is the posterior mean of the
reward on the oracle's scale, differentiable in ``x`` so that FKC can tilt by it, and
``predict(x)`` gives the posterior mean and standard deviation, so that the sampler can also
tilt by a pessimistic potential ``mean - kappa std`` (:func:`prefalign.learning.potential`)
and the acquisition rules can ask where the posterior is uncertain.

The model by the form of the answers (:mod:`prefalign.io.feedback`), each the field's standard:

- ``rate``: BoTorch's ``SingleTaskGP`` (exact GP regression, Gaussian noise learnt, outputs
  standardised); ``r(x)`` is the posterior mean of the rating;
- ``binary``: a variational GP classifier (BoTorch's ``SingleTaskVariationalGP`` with GPyTorch's
  ``BernoulliLikelihood``, inducing points at the training inputs); ``r(x)`` is the predictive
  like probability ``Phi(mu / sqrt(1 + s^2))`` of the latent ``f ~ N(mu, s^2)``;
- ``choice`` (``pairwise``, ``best-of-K``): BoTorch's ``PairwiseGP`` (Chu & Ghahramani's
  preference GP, Laplace approximation); a best-of-K answer is the K - 1 comparisons "the
  favourite beats each other item", a pairwise tie is no comparison. ``r(x)`` is the latent
  utility on the scale of what the user was shown, 0 at the worst observed item and 1 at the
  best (as the network's ``choice`` head), so ``lam_max`` means the same in every form.

Inputs are flattened and normalised (one mean and std for images, per feature for vectors,
from the training inputs), then mapped by the feature map (``raw``: as they are;
``projection``: a fixed Gaussian random projection to ``feature_dim`` features, seeded by a
constant so it is the same in every round and campaign; ``network``: the last hidden layer of
the project's network surrogate, the CNN for images and the MLP for vectors, fitted on the same
answers first (``hidden``, ``layers``, ``epochs``, ``lr``... of the surrogate settings), the
"neural-linear" deep kernel: the network learns what in a digit matters, the GP how sure it is
of it; each feature then standardised). The GP works in float64; outputs come
back in the input's dtype. Fitting maximises the marginal likelihood (``fit_gpytorch_mll``,
L-BFGS-B for the exact and pairwise GPs, Adam for the variational one) with torch's global
generator seeded from the campaign's stream and restored after, so fits are deterministic.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prefalign.learning.ensemble import FitReport, check_observations, head_of
from prefalign.settings import SurrogateConfig

#: Feature maps from the normalised input to the GP's input.
FEATURES: tuple[str, ...] = ("raw", "projection", "network", "network-raw")
#: The seed of the random projection: a constant, so every round and campaign sees one map.
PROJECTION_SEED = 20261207
#: Smallest standard deviation of an input feature (a constant feature is not stretched).
_MIN_STD = 1e-6
#: Optimiser steps of the variational classifier's fit (Adam, lr 0.05).
_VARIATIONAL_STEPS = 300


def normalisation_axes(event_shape: tuple[int, ...]) -> bool:
    """Whether the inputs are normalised per feature (vectors) rather than by one mean and std
    over every value (images, ``(C, H, W)``)."""
    return len(event_shape) != 3


class GPSurrogate(nn.Module):
    """A fitted GP over features of the particles; the interface of the network surrogate.

    Args:
        config: the surrogate settings (``arch: gp``, ``features``, ``feature_dim``).
        event_shape: shape of one particle.
        head: ``rate``, ``binary`` or ``choice`` (:data:`prefalign.learning.surrogate.HEADS`).
        x_mean, x_std: the input normalisation (per feature, or scalars for images).
        projection: (D, feature_dim) the random projection (``features: projection``) or None.
        embedding: the network whose last hidden layer is the GP's input (``features:
            network``), or None; ``x_mean``/``x_std`` then standardise its features.
        train_x: (n, d) float64 training features.
        train_y: ``rate``: (n,) ratings; ``binary``: (n,) likes in {0, 1}; ``choice``: (m, 2)
            comparisons ``(winner row, loser row)`` as float64.
        anchor, span: ``choice``: the utilities of the worst observed item and how much more the
            best one has (the 0-1 scale); 0 and 1 for the other heads.
    """

    def __init__(
        self,
        config: SurrogateConfig,
        event_shape: tuple[int, ...],
        *,
        head: str,
        x_mean: torch.Tensor,
        x_std: torch.Tensor,
        projection: torch.Tensor | None,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        anchor: float = 0.0,
        span: float = 1.0,
        embedding: NetworkEmbedding | None = None,
    ) -> None:
        super().__init__()
        if config.arch != "gp":
            raise ValueError(f"GPSurrogate needs surrogate arch 'gp', got {config.arch!r}")
        if head not in ("rate", "binary", "choice"):
            raise ValueError(f"head must be rate, binary or choice; got {head!r}")
        if not (math.isfinite(anchor) and math.isfinite(span) and span > 0):
            raise ValueError(f"anchor and span must be finite, span > 0; got {anchor}, {span}")
        self.config = config
        self.event_shape = tuple(int(s) for s in event_shape)
        self.head = head
        self.register_buffer("x_mean", x_mean.detach().double().clone())
        self.register_buffer("x_std", x_std.detach().double().clone())
        if projection is not None:
            self.register_buffer("projection", projection.detach().double().clone())
        else:
            self.projection = None
        self.embedding = embedding
        self.register_buffer("train_x", train_x.detach().double().clone())
        self.register_buffer("train_y", train_y.detach().double().clone())
        device = self.train_x.device
        self.register_buffer("anchor", torch.tensor(anchor, dtype=torch.float64, device=device))
        self.register_buffer("span", torch.tensor(span, dtype=torch.float64, device=device))
        self.model = _build_model(head, self.train_x, self.train_y)

    # ---------------------------------------------------------------------------------------
    # the interface of the network surrogate

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The GP's inputs (N, d), float64, differentiable in ``x`` (N, *event_shape)."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"surrogate expects inputs of shape (N, {', '.join(map(str, self.event_shape))}),"
                f" got {tuple(x.shape)}"
            )
        if self.embedding is not None:
            h = self.embedding(x).double()
            if self.config.features == "network-raw":  # beside the pixels themselves
                h = torch.cat([h, x.double().reshape(x.shape[0], -1)], dim=1)
            return (h - self.x_mean) / self.x_std
        z = ((x.double() - self.x_mean) / self.x_std).reshape(x.shape[0], -1)
        return z if self.projection is None else z @ self.projection

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of the reward, each (N,), in ``x``'s dtype and
        differentiable in ``x``: a rating (``rate``), a like probability (``binary``) or the
        utility on the 0-1 scale of the items shown (``choice``)."""
        mean, std = self.posterior_latent(self.features(x))
        if self.head == "binary":  # the probit of N(mean, std^2), and its spread by the delta rule
            scale = torch.sqrt(1.0 + std**2)
            z = mean / scale
            prob = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))  # Phi(z)
            density = torch.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)  # phi(z)
            spread = density * std / scale
            return prob.to(x.dtype), spread.to(x.dtype)
        if self.head == "choice":
            mean, std = (mean - self.anchor) / self.span, std / self.span
        return mean.to(x.dtype), std.to(x.dtype)

    def posterior_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The GP's posterior mean and std of the latent function at features ``z`` (N, d):
        ``c + k(z, X) a`` and ``k(z, z) - k(z, X) B k(X, z)`` (the diagonal only) with the
        fitted model's :class:`Predictive`, equal to BoTorch's posterior (tests) at a fraction
        of its cost: the sampler asks for it, and its gradient, at every step."""
        predictive = self.predictive()
        k_zx = predictive.cross_covariance(z)  # (N, n)
        mean = predictive.constant + k_zx @ predictive.weights
        var = predictive.prior_variance(z) - ((k_zx @ predictive.reduction) * k_zx).sum(dim=1)
        std = torch.sqrt(var.clamp_min(1e-12))
        return predictive.shift + predictive.scale * mean, predictive.scale * std

    def predictive(self) -> Predictive:
        """The fitted model's :class:`Predictive`, computed once where the model is (the fit
        and a checkpoint's load compute it on the host), and moved with the module."""
        cached = getattr(self, "_predictive", None)
        if cached is None:
            with torch.no_grad():
                cached = _predictive(self.head, self.model, self.train_x.device)
            object.__setattr__(self, "_predictive", cached)
        return cached

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 (nn.Module's own signature)
        """``.to(device)`` and friends move the cached :class:`Predictive` too (a device with no
        linear algebra of its own, such as ``meta``, gets it computed on the host)."""
        super()._apply(fn, recurse)
        cached = getattr(self, "_predictive", None)
        if cached is not None:
            object.__setattr__(self, "_predictive", cached.apply(fn))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of the reward, (N, *event_shape) -> (N,)."""
        return self.predict(x)[0]

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N): the posterior mean, as a one-member ensemble."""
        return self.forward(x)[None]

    def standardised_members(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N): the latent posterior mean (the pairing rules' utilities)."""
        return self.posterior_latent(self.features(x))[0].to(x.dtype)[None]

    def train(self, mode: bool = True) -> GPSurrogate:
        """A fitted GP is only ever evaluated: the model stays in eval mode (its posterior)."""
        super().train(False)
        return self

    def extra_meta(self) -> dict[str, Any]:
        """What a checkpoint's ``meta.json`` records beside the tensors."""
        return {
            "n_train": int(self.train_x.shape[0]),
            "feature_dim": int(self.train_x.shape[1]),
            "y_shape": list(self.train_y.shape),
            "projection": self.projection is not None,
            "embedding": self.embedding is not None,
        }


class NetworkEmbedding(nn.Module):
    """The last hidden layer of a network surrogate's member: the CNN's pooled channels or the
    MLP's last hidden units, of inputs normalised by the network's own statistics."""

    def __init__(self, config: SurrogateConfig, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        from prefalign.learning.ensemble import ACTIVATION, normalisation_shape
        from prefalign.learning.nets import build_member

        self.arch = network_arch(event_shape)
        gen = torch.Generator(device="cpu").manual_seed(0)  # replaced by the fitted weights
        self.net = build_member(
            self.arch, event_shape, config.hidden, config.layers, ACTIVATION, gen
        )
        shape = normalisation_shape(self.arch, event_shape)
        # built on the host, as every member is (prefalign.learning.nets), then moved with .to
        self.register_buffer("in_mean", torch.zeros(shape, device="cpu"))
        self.register_buffer("in_std", torch.ones(shape, device="cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *event_shape) -> (N, hidden)."""
        h = self.net.body((x.float() - self.in_mean) / self.in_std)
        return h.mean(dim=(-2, -1)) if self.arch == "cnn" else h


def network_arch(event_shape: tuple[int, ...]) -> str:
    """The network whose features a ``features: network`` GP uses: a CNN for images."""
    return "cnn" if len(event_shape) == 3 else "mlp"


@dataclass(frozen=True)
class Predictive:
    """A fitted GP's posterior as ``mean(z) = shift + scale (c + k(z, X) a)`` and
    ``var(z) = scale^2 (k(z, z) - k(z, X) B k(X, z))``: what every head's model reduces to
    (the exact GP, Laplace's approximation of the preference GP, the whitened variational GP
    with inducing points at the training inputs)."""

    kernel: Any  # the model's covariance module (a GPyTorch kernel)
    inputs: torch.Tensor  # (n, d) X
    weights: torch.Tensor  # (n,) a
    reduction: torch.Tensor  # (n, n) B
    constant: torch.Tensor  # () c, the prior mean
    jitter: float  # added to the prior variance (as the model's own posterior does)
    shift: torch.Tensor  # () the outcome transform's mean (rate), else 0
    scale: torch.Tensor  # () the outcome transform's std (rate), else 1
    noise: float = math.nan  # the observations' noise variance (rate; in the latent's units)

    def apply(self, fn) -> Predictive:  # noqa: ANN001
        """The same posterior with ``fn`` (a module's ``_apply`` function) on every tensor."""
        moved = {
            f.name: fn(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def cross_covariance(self, z: torch.Tensor) -> torch.Tensor:
        """k(z, X), (N, n)."""
        return self.kernel_matrix(z, self.inputs)

    def prior_variance(self, z: torch.Tensor) -> torch.Tensor:
        """k(z, z) on the diagonal, (N,)."""
        scale, _ = _rbf_parameters(self.kernel)
        if scale is None:
            return self.kernel(z, diag=True) + self.jitter
        return scale.expand(z.shape[0]) + self.jitter

    def kernel_matrix(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """k(z1, z2), (N1, N2): the squared-exponential kernels BoTorch's models use, in plain
        torch (any device, a fraction of GPyTorch's call overhead per sampler step); any other
        kernel through GPyTorch."""
        scale, lengthscale = _rbf_parameters(self.kernel)
        if scale is None:
            return self.kernel(z1, z2).to_dense()
        a, b = z1 / lengthscale, z2 / lengthscale
        sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
        return scale * torch.exp(-0.5 * sq.clamp_min(0.0))

    def covariance(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The posterior covariance of the reward between ``z1`` and ``z2`` (N1, N2), in the
        reward's units: ``scale^2 (k(z1, z2) - k(z1, X) B k(X, z2))``."""
        k12 = self.kernel_matrix(z1, z2)
        if z1 is z2:
            k12 = k12 + self.jitter * torch.eye(len(z1), dtype=z1.dtype, device=z1.device)
        reduced = k12 - self.cross_covariance(z1) @ self.reduction @ self.cross_covariance(z2).T
        return self.scale**2 * reduced


def _rbf_parameters(kernel: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(output scale, lengthscales)`` of an RBF kernel, bare or in a ``ScaleKernel``; ``(None,
    None)`` for any other kernel."""
    from gpytorch.kernels import RBFKernel, ScaleKernel

    scale = None
    if isinstance(kernel, ScaleKernel):
        scale, kernel = kernel.outputscale, kernel.base_kernel
    if not isinstance(kernel, RBFKernel) or kernel.active_dims is not None:
        return None, None
    lengthscale = kernel.lengthscale.reshape(-1)
    one = torch.ones((), dtype=lengthscale.dtype, device=lengthscale.device)
    return (one if scale is None else scale.reshape(())), lengthscale


def _predictive(head: str, model: nn.Module, device: torch.device) -> Predictive:
    """The :class:`Predictive` of a fitted model of ``head`` on ``device``."""
    zero = torch.tensor(0.0, dtype=torch.float64, device=device)
    one = torch.tensor(1.0, dtype=torch.float64, device=device)
    if head == "rate":
        x = model.train_inputs[0]
        y = model.train_targets
        kernel = model.covar_module
        eye = torch.eye(len(x), dtype=x.dtype, device=x.device)
        k = kernel(x, x).to_dense() + model.likelihood.noise * eye
        chol = torch.linalg.cholesky(k)
        c = model.mean_module.constant.reshape(())
        weights = torch.cholesky_solve((y - c)[:, None], chol)[:, 0]
        transform = model.outcome_transform
        return Predictive(
            kernel, x, weights, torch.cholesky_inverse(chol), c, 0.0,
            transform.means.reshape(()), transform.stdvs.reshape(()),
            float(model.likelihood.noise.reshape(())),
        )  # fmt: skip
    if head == "binary":
        gp = model.model
        strategy = gp.variational_strategy
        x = strategy.inducing_points
        kernel = gp.covar_module
        eye = torch.eye(len(x), dtype=x.dtype, device=x.device)
        k = kernel(x, x).to_dense() + strategy.jitter_val * eye
        chol = torch.linalg.cholesky(k)
        distribution = strategy._variational_distribution
        m = distribution.variational_mean
        c_low = distribution.chol_variational_covar.tril()
        middle = c_low @ c_low.T - eye  # S - I (whitened)
        inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)
        weights = inv_chol.T @ m
        reduction = -(inv_chol.T @ middle @ inv_chol)
        c = gp.mean_module.constant.reshape(())
        return Predictive(kernel, x, weights, reduction, c, strategy.jitter_val, zero, one)
    # the preference GP (Laplace): mean K_zX K^-1 (f - m), covariance K_zz - K_zX (CK + I)^-1 C K_Xz
    x = model.consolidated_datapoints
    model.posterior(x[:1])  # brings the Laplace state (utility, Hessian) up to date
    c = model._prior_mean(x[:1]).reshape(())
    weights = torch.cholesky_solve((model.utility - c)[:, None], model.covar_chol)[:, 0]
    reduction = torch.linalg.solve(model.hlcov_eye, model.likelihood_hess)
    return Predictive(model.covar_module, x, weights, reduction, c, 0.0, zero, one)


def _build_model(head: str, train_x: torch.Tensor, train_y: torch.Tensor) -> nn.Module:
    """The BoTorch model of ``head`` on the training data (hyperparameters at their
    initial values; :func:`fit_gp` fits them, a checkpoint's state dict restores them)."""
    from botorch import settings

    # the inputs are standardised on purpose (not scaled to the unit cube), and likes are 0/1
    with settings.validate_input_scaling(False):
        return _model(head, train_x, train_y)


def _model(head: str, train_x: torch.Tensor, train_y: torch.Tensor) -> nn.Module:
    from botorch.models import SingleTaskGP

    if head == "rate":
        return SingleTaskGP(train_x, train_y[:, None])
    if head == "binary":
        from botorch.models import SingleTaskVariationalGP
        from gpytorch.likelihoods import BernoulliLikelihood

        return SingleTaskVariationalGP(
            train_x,
            train_y[:, None],
            likelihood=BernoulliLikelihood(),
            learn_inducing_points=False,
            inducing_points=train_x.clone(),
        )
    from botorch.models.pairwise_gp import PairwiseGP

    return PairwiseGP(train_x, train_y.long())


# ------------------------------------------------------------------------------------------------
# Fitting


def fit_gp(
    x: np.ndarray,
    y: np.ndarray,
    config: SurrogateConfig,
    *,
    seed: int,
    form: str = "rate",
    questions: np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> tuple[GPSurrogate, FitReport]:
    """Fit a GP surrogate to observations ``x`` (N, *event_shape) with answers ``y`` (N,) in
    question form ``form`` (``questions``: the question of each item, for the choice forms).

    The fit runs on the host (a few hundred answers: L-BFGS on the marginal likelihood, the
    same bytes whatever the device), and the fitted surrogate is moved to ``device`` (None: the
    CPU). Deterministic given ``seed`` (torch's global generator is seeded for the fit and
    restored after)."""
    import gpytorch
    from botorch.fit import fit_gpytorch_mll

    start = time.perf_counter()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    event_shape = check_observations(x, y)
    head = head_of(form)
    xt = torch.as_tensor(x, device="cpu")  # fitted on the host (L-BFGS), then moved
    embedding = None
    if config.features in ("network", "network-raw"):
        embedding = _fit_embedding(x, y, config, seed, form, questions)
        with torch.no_grad():
            h = embedding(xt).double()  # (N, hidden): standardised per feature below
        xt = h if config.features == "network" else torch.cat([h, xt.reshape(len(xt), -1)], 1)
    per_feature = embedding is not None or normalisation_axes(event_shape)
    x_mean = xt.mean(dim=0) if per_feature else xt.mean()
    x_std = xt.std(dim=0, correction=0) if per_feature else xt.std(correction=0)
    x_std = torch.where(x_std > _MIN_STD, x_std, torch.ones_like(x_std))
    projection = None
    if config.features == "projection":
        d_in = math.prod(event_shape)
        gen = torch.Generator(device="cpu").manual_seed(PROJECTION_SEED)
        projection = torch.randn(
            d_in, config.feature_dim, generator=gen, dtype=torch.float64, device="cpu"
        )
        projection /= math.sqrt(d_in)
    z = ((xt - x_mean) / x_std).reshape(len(xt), -1)
    if projection is not None:
        z = z @ projection
    anchor, span = 0.0, 1.0
    if head == "rate":
        targets = torch.as_tensor(y, device="cpu")
    elif head == "binary":
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("like/dislike answers must be 0 or 1")
        targets = torch.as_tensor(y, device="cpu")
    else:
        pairs = _comparisons(y, questions, form)
        targets = torch.as_tensor(pairs, dtype=torch.float64, device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        surrogate = GPSurrogate(
            config, event_shape, head=head, x_mean=x_mean, x_std=x_std,
            projection=projection, train_x=z, train_y=targets, embedding=embedding,
        )  # fmt: skip
        model = surrogate.model
        if head == "choice" and targets.shape[0] == 0:
            pass  # no comparison yet (all ties): the prior
        elif head == "binary":
            _fit_variational(model, targets)
        else:
            if head == "choice":
                from botorch.models.likelihoods.pairwise import (  # noqa: F401 (registers)
                    PairwiseLogitLikelihood,
                )
                from botorch.models.pairwise_gp import PairwiseLaplaceMarginalLogLikelihood

                mll = PairwiseLaplaceMarginalLogLikelihood(model.likelihood, model)
            else:
                mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
            fit_gpytorch_mll(mll)
        model.eval()
    if head == "choice":
        with torch.no_grad():
            utility = surrogate.posterior_latent(z)[0]
        low, high = float(utility.min()), float(utility.max())
        anchor, span = low, max(high - low, 1e-3)
        surrogate.anchor.fill_(anchor)
        surrogate.span.fill_(span)
    loss = _final_loss(surrogate, head)
    report = FitReport(
        epochs=0,
        final_loss=loss,
        seconds=time.perf_counter() - start,
        n_examples=len(y),
        warm_started=False,
    )
    surrogate.predictive()  # on the host, then moved with the module
    return surrogate.to(device or "cpu"), report


def _fit_embedding(
    x: np.ndarray,
    y: np.ndarray,
    config: SurrogateConfig,
    seed: int,
    form: str,
    questions: np.ndarray | None,
) -> NetworkEmbedding:
    """The network surrogate (one member, the same settings) fitted on the answers by its own
    likelihood; its last hidden layer becomes the GP's input."""
    from dataclasses import replace

    from prefalign.learning.ensemble import fit_ensemble as fit

    event_shape = tuple(x.shape[1:])
    network_config = replace(
        config, arch=network_arch(event_shape), ensemble=1, features="raw", noise_train=False
    )
    network, _ = fit(x, y, network_config, seed=seed, form=form, questions=questions)
    embedding = NetworkEmbedding(config, event_shape)
    embedding.net.load_state_dict(network.nets[0].state_dict())
    embedding.in_mean.copy_(network.x_mean)
    embedding.in_std.copy_(network.x_std)
    return embedding.eval()


def _fit_variational(model: nn.Module, targets: torch.Tensor) -> None:
    """Adam on the variational ELBO of the like/dislike classifier (a fixed number of steps:
    deterministic, and an ELBO has no L-BFGS-friendly closed form)."""
    import gpytorch

    model.train()
    mll = gpytorch.mlls.VariationalELBO(model.likelihood, model.model, num_data=len(targets))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = model.model.variational_strategy.inducing_points.detach()
    for _ in range(_VARIATIONAL_STEPS):
        opt.zero_grad()
        loss = -mll(model.model(x), targets)
        loss.backward()
        opt.step()
    model.eval()


def _comparisons(y: np.ndarray, questions: np.ndarray | None, form: str) -> np.ndarray:
    """(m, 2) ``(winner row, loser row)`` pairs of choice answers: each question's favourite
    (answer 1) against each other item; a pairwise tie (0.5 each) gives no comparison."""
    from prefalign.io.feedback import group_items, parse_form

    if questions is None:
        raise ValueError(f"answers in form {form!r} need the question of each item (questions=)")
    questions = np.asarray(questions).astype(str)
    rows = [str(i) for i in range(len(y))]
    grouped = group_items(rows, questions.tolist(), parse_form(form), "surrogate training data")
    pairs = []
    for items in grouped.values():
        idx = [int(r) for r in items]
        winners = [i for i in idx if y[i] == 1.0]
        if len(winners) != 1:
            continue  # a tie: no comparison
        pairs.extend((winners[0], j) for j in idx if j != winners[0])
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _final_loss(surrogate: GPSurrogate, head: str) -> float:
    """The fitted model's negative log marginal likelihood per observation (rate), or the mean
    negative log-likelihood of the answers (binary, choice): the fit's loss in the report."""
    with torch.no_grad():
        model = surrogate.model
        z = surrogate.train_x
        if head == "rate":
            import gpytorch

            model.train()
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
            value = -float(mll(model(*model.train_inputs), model.train_targets))
            model.eval()
            return value
        mean, std = surrogate.posterior_latent(z)
        if head == "binary":
            p = torch.distributions.Normal(0.0, 1.0).cdf(mean / torch.sqrt(1.0 + std**2))
            y = surrogate.train_y
            p = p.clamp(1e-9, 1 - 1e-9)
            return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())
        pairs = surrogate.train_y.long()
        if len(pairs) == 0:
            return float("nan")
        diff = mean[pairs[:, 0]] - mean[pairs[:, 1]]
        return float(torch.nn.functional.softplus(-diff).mean())
