"""The reward-tilted Feynman–Kac corrector (FKC) sampler: one SMC kernel over :mod:`.step`
(``shared/docs/fkc-math.md``).

The target at forward time t (sampling time ``tau = 1 - t``) is::

    p_t(x) ∝ q_t(x) exp(lam(tau) r(x)),

reached by an Euler–Maruyama discretisation of the reverse SDE with a reward-tilted drift and
Feynman–Kac log-weights (Skreta et al., ICML 2025, Prop. 3.4, eqs. 29–30). Four variants
(:data:`prefalign.settings.VARIANTS`, the one registry):

- ``fkc``: exact log-weights, systematic resampling (adaptive on ESS, every step, or never) and,
  by default, one final resampling so the returned population is equally weighted.
- ``draft``: the draft paper's Algorithm 2 with its drift fixed but its clipping kept
  (``dw`` clipped to ±0.1, ``w`` to [0.1, 10]), never resampled; kept for the ablation.
- ``guidance``: tilted drift, no weights (biased: it does not reach the tilted target).
- ``base``: no tilt; samples the base model.

Options beside the variants (``SamplerConfig``): ``time_grid: quadratic`` refines the steps near
t = 0; ``denoise`` ends without the last step's noise and returns the Tweedie estimate
``xhat0(x, t_min)``; ``reward_at: xhat0`` tilts by the reward of the denoised estimate
``r(xhat0(x_t, t))`` instead of ``r(x_t)``, with the twisted-SMC weights of fkc-math.md
("Time-dependent potentials"), see :class:`_RewardAtXHat0`.

One SMC kernel, :func:`_smc`, runs them all. Like blackjax's ``smc.base.step`` it knows
nothing of the potential it is given: it owns the time grid, the tilt schedule, the weights,
resampling, the ESS record and the evaluation counters; step i (``t_i`` to ``t_{i+1}``) resamples
when due (i > 0), draws the noise, and lets the potential move ``x_i`` to ``x_{i+1}`` and return
the log-weight increment. The potential (:class:`_Potential`) is the tilt ``phi_i``:
:class:`_RewardAtX`, ``lam_i r(x)``, one :func:`~prefalign.sampling.step.fkc_step` per step; or
:class:`_RewardAtXHat0`, ``lam_i r(xhat0(x, t_i))``, with twisted-SMC weights.

Every particle's lineage (the index of the initial particle it descends from) is returned in
``SampleResult.ancestors``.

Device: the particles, weights, noise and every tensor of the result live on ``device``; the
noise is drawn on the generator's device (a generator on the particles' device draws it there:
:func:`prefalign.runtime.torch_generator`). The kernel reads a value back to the host only where
a decision needs one: the ESS of an adaptive resampling decision (with the pending finiteness
checks of :class:`~prefalign.sampling.step.DeviceChecks`), and the checks once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefalign.io.progress import tqdm
from prefalign.models.sde import VPSDE
from prefalign.sampling.resampling import ess_tensor, systematic_resample
from prefalign.sampling.schedule import tilt_schedule, time_grid
from prefalign.sampling.step import (
    DeviceChecks,
    FKCStepOutput,
    RewardFn,
    ScoreFn,
    XHat0Potential,
    checked_reward,
    checked_score,
    fkc_step,
    map_chunks,
    noise_scale,
    standard_normal,
    tweedie,
    xhat0_move,
    xhat0_potential,
)
from prefalign.settings import VARIANTS, SamplerConfig


@dataclass
class SampleResult:
    """Output of :func:`sample`; every tensor on the particles' device.

    Attributes:
        x: final particles, (N, *event_shape).
        log_weights: log-weights since the last resampling, (N,); zeros after a final resampling.
        path_log_weights: log-weight accumulated along each particle's ancestry, never reset,
            copied with the particle when it is resampled, (N,). Selection's ``fk_weight`` score.
        ess: effective sample size after each step's weight update, before resampling, (n_steps,).
        n_resamples: resampling events during sampling (the final resampling not counted).
        n_score_evals: score evaluations, counted per particle (N per step).
        n_reward_evals: reward (and gradient) evaluations, counted per particle.
        lam: tilt strength used at each step, (n_steps,).
        ancestors: index of the initial particle each final particle descends from, (N,) int64:
            copies made by resampling share it (the particle's lineage).
    """

    x: torch.Tensor
    log_weights: torch.Tensor
    path_log_weights: torch.Tensor
    ess: torch.Tensor
    n_resamples: int
    n_score_evals: int
    n_reward_evals: int
    lam: torch.Tensor
    ancestors: torch.Tensor


def sample(
    score: ScoreFn,
    sde: VPSDE,
    n_particles: int,
    event_shape: tuple[int, ...],
    *,
    reward: RewardFn | None = None,
    config: SamplerConfig | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    x_init: torch.Tensor | None = None,
    progress: bool = False,
) -> SampleResult:
    """Sample ``N`` particles from ``q_0(x) exp(lam_max r(x))`` (or the base model).

    Args:
        score: base-model score ``(x, t) -> grad log q_t(x)``, t the forward time.
        sde: the VP SDE the score belongs to.
        n_particles: number of particles N (>= 1).
        event_shape: shape of one particle, e.g. ``(2,)`` or ``(1, 8, 8)``.
        reward: differentiable ``r(x) -> (N,)``; required unless the variant is ``base`` or
            ``lam_max == 0``.
        config: sampler settings; defaults to :class:`SamplerConfig()`.
        generator: source of every random draw (prior, noise, resampling).
        device, dtype: where and in what precision the particles live.
        x_init: optional initial particles at t = 1 (default: ``N(0, I)``).
        progress: show a tqdm bar over the steps.

    Returns:
        A :class:`SampleResult`.
    """
    config = config or SamplerConfig()
    if not isinstance(n_particles, int) or n_particles < 1:
        raise ValueError(f"n_particles must be an integer >= 1; got {n_particles!r}")
    if config.tilted and reward is None:
        raise ValueError(f"variant {config.variant!r} with lam_max > 0 needs a reward function")
    shape = (n_particles, *event_shape)

    # 1. initial particles x_1 ~ N(0, I)
    if x_init is not None:
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}; expected {shape}")
        x = x_init.to(device=device, dtype=dtype).clone()
    else:
        x = standard_normal(shape, generator, torch.empty(0, device=device, dtype=dtype))
    at_xhat0 = config.tilted and config.reward_at == "xhat0"
    potential = (_RewardAtXHat0 if at_xhat0 else _RewardAtX)(score, sde, reward, config)
    return _smc(score, sde, x, potential, config, generator, progress)


@dataclass(frozen=True)
class _Step:
    """Step i: from ``t = t_i`` to ``t_next = t_{i+1}`` (``dtau = t - t_next``), the tilt ``lam_i``
    and ``lam_next = lam_{i+1}`` (``lam_max`` on the ``last`` step), the move's noise ``sigma``."""

    t: float
    dtau: float
    t_next: float
    lam: float
    lam_next: float
    sigma: float
    last: bool


class _Potential:
    """What the kernel is given (blackjax's update and weight functions): the tilt ``phi_i`` at
    the particles, the move, the log-weight increments; ``label`` names it in the progress bar."""

    label = ""

    def __init__(
        self, score: ScoreFn, sde: VPSDE, reward: RewardFn | None, config: SamplerConfig
    ) -> None:
        self.score, self.sde, self.reward, self.config = score, sde, reward, config

    def start(self, x: torch.Tensor, t: float, lam: float, checks: DeviceChecks) -> FKCStepOutput:
        """The initial log-weight (None: zero) of ``x = x_0`` at ``t_0``, ``x`` unmoved."""
        raise NotImplementedError

    def step(
        self, x: torch.Tensor, z: torch.Tensor, at: _Step, checks: DeviceChecks
    ) -> FKCStepOutput:
        """The move of ``x`` with noise ``z`` and its log-weight increment (None: none)."""
        raise NotImplementedError

    def select(self, idx: torch.Tensor) -> None:
        """Resampling kept the particles ``idx``: what was computed at them follows them."""

    def step_ess(self, ess: torch.Tensor, n: int) -> torch.Tensor:
        """``SampleResult.ess`` from the ESS of the ``n`` particles at ``x_0 .. x_n``: step i's
        weight update is its move's increment, at ``x_{i+1}``."""
        return ess[1:]


class _RewardAtX(_Potential):
    """``phi_i(x) = lam_i r(x)``: one :func:`fkc_step` moves the particles and returns the FKC
    increment computed at the pre-step x. The tilt reaches ``lam_max`` at the last step's pre-step
    time, whose weight update is skipped (fkc-math.md), so the weights target ``q_t exp(lam_max
    r)`` at that time. The initial log-weight ``lam_0 r(x_0)`` is not counted in the evaluations.
    """

    def start(self, x: torch.Tensor, t: float, lam: float, checks: DeviceChecks) -> FKCStepOutput:
        if not (self.config.weighted and lam > 0):
            return FKCStepOutput(x, None, 0, 0)
        r0, _ = checked_reward(self.reward, x, 1.0, need_grad=False, checks=checks)
        return FKCStepOutput(x, lam * r0.double(), 0, 0)

    def step(
        self, x: torch.Tensor, z: torch.Tensor, at: _Step, checks: DeviceChecks
    ) -> FKCStepOutput:
        update_weights = self.config.weighted and not at.last
        step = fkc_step(
            self.score,
            self.sde,
            x,
            z,
            t=at.t,
            dtau=at.dtau,
            lam=at.lam,
            dlam=(at.lam_next - at.lam) if update_weights else 0.0,
            noise_scale=at.sigma,
            update_weights=update_weights,
            reward=self.reward,
            chunk_size=self.config.chunk_size,
            checks=checks,
        )
        clipped = VARIANTS[self.config.variant].clipped
        if clipped and update_weights and step.log_weight_increment is None:
            # no reward terms this step, but the draft still clips w
            step.log_weight_increment = x.new_zeros(x.shape[0], dtype=torch.float64)
        return step


class _RewardAtXHat0(_Potential):
    """``phi_i(x) = lam_i r(xhat0(x, t_i))`` with twisted-SMC weights (fkc-math.md,
    "Time-dependent potentials", the discrete-time alternative).

    Step i, with every quantity at the pre-step ``x_i``:

    1. ``s_i``, ``phi_i(x_i)`` and ``grad phi_i`` (a backward pass through the score network):
       :func:`xhat0_potential`;
    2. ``logw += phi_i(x_i) - phi_{i-1}(x_{i-1}) + log p_base(x_i | x_{i-1}) - log p_prop(x_i |
       x_{i-1})``: with the proposal's mean shifted by ``d = (g^2 / 2) grad phi dtau`` and noise
       ``sigma z``, the Gaussian ratio is ``-<z, d> / sigma - |d|^2 / (2 sigma^2)``;
    3. resampling on those weights (``fkc``), copies carrying everything computed at ``x_i``;
    4. the move ``x_{i+1} = x_i + (-f + g^2 (s + grad phi / 2)) dtau + sigma z``:
       :func:`xhat0_move`.

    In the kernel, 1 and 2 at ``x_0`` are :meth:`start`; the kernel's step i is 3, 4, then 1 and 2
    at ``x_{i+1}``. After the last move the potential is evaluated once more at the final
    particles (at ``t_min``, where ``xhat0 ~ x``), so the weights target ``q_0 exp(lam_max r)`` of
    the discretised chain; no score derivative in time is needed. ``guidance`` moves the same way
    and keeps no weights.
    """

    label = " (xhat0)"

    def _evaluate(
        self, x: torch.Tensor, t: float, lam: float, need_grad: bool, checks: DeviceChecks
    ) -> torch.Tensor:
        """1: ``phi(x)``; ``s`` and ``grad phi`` are kept for the next move."""
        self.at_x = xhat0_potential(
            self.score,
            self.reward,
            self.sde,
            x,
            t=t,
            lam=lam,
            need_grad=need_grad,
            chunk_size=self.config.chunk_size,
            checks=checks,
        )
        return self.at_x.phi

    def start(self, x: torch.Tensor, t: float, lam: float, checks: DeviceChecks) -> FKCStepOutput:
        phi = self._evaluate(x, t, lam, lam > 0, checks)
        return FKCStepOutput(x, phi if self.config.weighted else None, x.shape[0], x.shape[0])

    def step(
        self, x: torch.Tensor, z: torch.Tensor, at: _Step, checks: DeviceChecks
    ) -> FKCStepOutput:
        weighted, n = self.config.weighted, x.shape[0]
        x, carry = xhat0_move(
            self.sde, x, self.at_x, z, t=at.t, dtau=at.dtau, sigma=at.sigma, weighted=weighted
        )
        if at.last and not weighted:
            return FKCStepOutput(x, None, 0, 0)
        phi = self._evaluate(x, at.t_next, at.lam_next, at.lam_next > 0 and not at.last, checks)
        return FKCStepOutput(x, None if carry is None else phi - carry, n, n)

    def select(self, idx: torch.Tensor) -> None:
        grad_phi = self.at_x.grad_phi
        self.at_x = XHat0Potential(
            score=self.at_x.score[idx],
            phi=self.at_x.phi[idx],
            grad_phi=None if grad_phi is None else grad_phi[idx],
        )

    def step_ess(self, ess: torch.Tensor, n: int) -> torch.Tensor:
        """Step i's weight update brings in ``phi_i(x_i)``: the ESS at ``x_0 .. x_{n-1}`` (``n``
        throughout without weights)."""
        return ess[:-1] if self.config.weighted else torch.full_like(ess[:-1], n)


def _smc(
    score: ScoreFn,
    sde: VPSDE,
    x: torch.Tensor,
    potential: _Potential,
    config: SamplerConfig,
    generator: torch.Generator | None,
    progress: bool,
) -> SampleResult:
    """The SMC kernel: ``potential``'s initial log-weights at ``x = x_0``; per step the resampling
    when due, the noise, ``potential.step``'s move and increment; at the end Tweedie's estimate at
    ``t_min`` (``denoise``, one more score call per particle), one systematic resampling so the
    population is equally weighted (``final_resample``), and the last read of the checks."""
    n, shape = x.shape[0], tuple(x.shape)
    variant = VARIANTS[config.variant]
    # time grid t_0 = 1 > ... > t_n = t_min; step i moves from t_i to t_{i+1}.
    steps, grid = config.n_steps, time_grid(config)
    lams = tilt_schedule(config, grid)
    resampling = variant.resampled and config.weighted
    pop, checks = _Population.start(x), DeviceChecks()
    ess = torch.empty(steps + 1, dtype=torch.float64, device=x.device)  # at x_0 .. x_n
    start = potential.start(pop.x, grid[0], lams[0], checks)
    pop.reweight(start.log_weight_increment)  # the draft does not clip the initial weight
    n_resamples, n_score, n_reward = 0, start.n_score_evals, start.n_reward_evals
    ess[0] = ess_tensor(pop.logw)

    desc = f"{config.variant} sampling{potential.label}"
    for i in tqdm(range(steps), disable=not progress, desc=desc):
        if resampling and i > 0 and _resampling_due(config, checks, ess[i], n):
            potential.select(pop.resample(generator))
            n_resamples += 1
        t, dtau, last = grid[i], grid[i] - grid[i + 1], i == steps - 1
        # the last step adds no noise when denoising: its mean, then Tweedie at t_min
        sigma = 0.0 if config.denoise and last else noise_scale(sde, t, dtau)
        lam_next = lams[min(i + 1, steps - 1)]
        at = _Step(t, dtau, grid[i + 1], lams[i], lam_next, sigma, last)
        z = standard_normal(shape, generator, pop.x)  # all N at once: chunking cannot change it
        step = potential.step(pop.x, z, at, checks)
        pop.x = step.x
        pop.reweight(step.log_weight_increment, config if variant.clipped else None)
        n_score += step.n_score_evals
        n_reward += step.n_reward_evals
        ess[i + 1] = ess_tensor(pop.logw)

    if config.denoise:
        t_min = config.t_min
        pop.x = map_chunks(
            lambda xc: tweedie(xc, checked_score(score, xc, t_min, checks), sde, t_min),
            pop.x,
            chunk_size=config.chunk_size,
        )
        n_score += n
    if resampling and config.final_resample:
        pop.resample(generator)
    checks.read()
    return SampleResult(
        x=pop.x.detach(),
        log_weights=pop.logw,
        path_log_weights=pop.path_logw,
        ess=potential.step_ess(ess, n),
        n_resamples=n_resamples,
        n_score_evals=n_score,
        n_reward_evals=n_reward,
        lam=torch.tensor(lams, dtype=torch.float64, device=pop.x.device),
        ancestors=pop.ancestors,
    )


@dataclass
class _Population:
    """The particles as the kernel runs: positions, current and path log-weights, and lineages
    (the initial particle each descends from)."""

    x: torch.Tensor
    logw: torch.Tensor
    path_logw: torch.Tensor
    ancestors: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor) -> _Population:
        """``x`` with zero log-weights, each particle its own lineage."""
        logw = torch.zeros(x.shape[0], device=x.device, dtype=torch.float64)
        return cls(x, logw, torch.zeros_like(logw), torch.arange(x.shape[0], device=x.device))

    def reweight(self, inc: torch.Tensor | None, clip: SamplerConfig | None = None) -> None:
        """Add the log-weight increment ``inc`` (None: none) to the current and path weights;
        ``clip``: the draft's clipping of ``inc`` and of ``w``, whose path weight is its weight
        (it never resamples)."""
        if inc is not None and clip is not None:
            inc = inc.clamp(-clip.draft_dw_clip, clip.draft_dw_clip)
            self.logw = (self.logw + inc).clamp(clip.draft_w_min, clip.draft_w_max)
            self.path_logw = self.logw
        elif inc is not None:
            self.logw, self.path_logw = self.logw + inc, self.path_logw + inc

    def resample(self, generator: torch.Generator | None) -> torch.Tensor:
        """Systematic resampling by the current weights: copies carry their path weight and
        lineage, the current log-weights reset to 0. Returns the chosen indices."""
        idx = systematic_resample(self.logw, generator)
        self.x, self.path_logw, self.ancestors = (
            self.x[idx],
            self.path_logw[idx],
            self.ancestors[idx],
        )
        self.logw = torch.zeros_like(self.logw)
        return idx


def _resampling_due(config: SamplerConfig, checks: DeviceChecks, ess: torch.Tensor, n: int) -> bool:
    """Whether the population is resampled before a step (``resample``: always, or below the
    ESS threshold). Only the adaptive rule reads the ESS (and the pending ``checks`` with it);
    on the ``meta`` device, which has no values, it never resamples."""
    if config.resample != "ess":
        return config.resample == "always"
    read = checks.read(ess)
    return read is not None and read[0] < config.ess_threshold * n
