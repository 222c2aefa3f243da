"""The reward-tilted Feynman–Kac corrector (FKC) sampler: the loop over :mod:`.step`
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
("Time-dependent potentials"), see :func:`_sample_xhat0`.

The loop owns the time grid, the tilt schedule, the weights and resampling; one step
(:func:`prefalign.sampling.step.fkc_step`) sees one time point. Every particle's lineage (the index of
the initial particle it descends from) is returned in ``SampleResult.ancestors``.

Device: the particles, weights, noise and every tensor of the result live on ``device``; the
noise is drawn on the generator's device (a generator on the particles' device draws it there:
:func:`prefalign.runtime.torch_generator`). The loop reads a value back to the host only where
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
    if config.tilted and config.reward_at == "xhat0":
        return _sample_xhat0(score, sde, x, reward, config, generator, progress)
    return _sample_x(score, sde, x, reward, config, generator, progress)


def _sample_x(
    score: ScoreFn,
    sde: VPSDE,
    x: torch.Tensor,
    reward: RewardFn | None,
    config: SamplerConfig,
    generator: torch.Generator | None,
    progress: bool,
) -> SampleResult:
    """The loop with the reward at the noisy state, ``phi = lam_tau r(x)``: one
    :func:`fkc_step` per time point, then the weights and resampling."""
    n, shape, device = x.shape[0], tuple(x.shape), x.device
    variant = VARIANTS[config.variant]
    pop = _Population.start(x)
    checks = DeviceChecks()

    # time grid t_0 = 1 > ... > t_n = t_min; step i moves from t_i to t_{i+1}.
    # The tilt schedule reaches lam_max at the pre-step time of the last step, whose weight update
    # is skipped (fkc-math.md), so the weights target q_t exp(lam_max r) at that time.
    steps = config.n_steps
    grid = time_grid(config)
    lams = tilt_schedule(config, grid)
    if config.weighted and lams[0] > 0:  # initial log-weights lam(0) r(x_1)
        r0, _ = checked_reward(reward, x, 1.0, need_grad=False, checks=checks)
        pop.logw += lams[0] * r0.double()
        pop.path_logw += lams[0] * r0.double()
    resampling = variant.resampled and config.weighted
    ess = torch.empty(steps, dtype=torch.float64, device=device)
    n_resamples = n_score = n_reward = 0

    for i in tqdm(range(steps), disable=not progress, desc=f"{config.variant} sampling"):
        t, dtau = grid[i], grid[i] - grid[i + 1]
        last = i == steps - 1
        update_weights = config.weighted and not last
        z = standard_normal(shape, generator, pop.x)  # all N at once: chunking cannot change it
        step = fkc_step(
            score,
            sde,
            pop.x,
            z,
            t=t,
            dtau=dtau,
            lam=lams[i] if config.tilted else 0.0,
            dlam=(lams[i + 1] - lams[i]) if update_weights else 0.0,
            # the last step adds no noise when denoising: its mean, then Tweedie at t_min
            noise_scale=0.0 if config.denoise and last else noise_scale(sde, t, dtau),
            update_weights=update_weights,
            reward=reward,
            chunk_size=config.chunk_size,
            checks=checks,
        )
        pop.x, dlogw = step.x, step.log_weight_increment
        n_score += step.n_score_evals
        n_reward += step.n_reward_evals
        if variant.clipped and update_weights:
            if dlogw is None:  # no reward this step; the draft still clips w
                dlogw = torch.zeros(n, device=device, dtype=torch.float64)
            dlogw = dlogw.clamp(-config.draft_dw_clip, config.draft_dw_clip)
            pop.logw = (pop.logw + dlogw).clamp(config.draft_w_min, config.draft_w_max)
            pop.path_logw = pop.logw  # the draft never resamples: its path weight is its weight
        elif dlogw is not None:  # a step without a weight update leaves logw and path_logw as is
            pop.logw = pop.logw + dlogw
            pop.path_logw = pop.path_logw + dlogw
        ess[i] = ess_tensor(pop.logw)
        if resampling and not last and _resampling_due(config, checks, ess[i], n):
            pop.resample(generator)
            n_resamples += 1

    tilts = lams if config.tilted else [0.0] * steps
    counts = (n_resamples, n_score, n_reward)
    return _finish(score, sde, pop, config, generator, resampling, ess, counts, tilts, checks)


@dataclass
class _Population:
    """The particles as a loop runs: positions, current and path log-weights, and lineages (the
    initial particle each descends from)."""

    x: torch.Tensor
    logw: torch.Tensor
    path_logw: torch.Tensor
    ancestors: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor) -> _Population:
        """``x`` with zero log-weights, each particle its own lineage."""
        logw = torch.zeros(x.shape[0], device=x.device, dtype=torch.float64)
        return cls(x, logw, torch.zeros_like(logw), torch.arange(x.shape[0], device=x.device))

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
    """Whether the population is resampled after a step (``resample``: always, or below the
    ESS threshold). Only the adaptive rule reads the ESS (and the pending ``checks`` with it);
    on the ``meta`` device, which has no values, it never resamples."""
    if config.resample != "ess":
        return config.resample == "always"
    read = checks.read(ess)
    return read is not None and read[0] < config.ess_threshold * n


def _finish(
    score: ScoreFn,
    sde: VPSDE,
    pop: _Population,
    config: SamplerConfig,
    generator: torch.Generator | None,
    resample: bool,
    ess: torch.Tensor,
    counts: tuple[int, int, int],
    lams: list[float],
    checks: DeviceChecks,
) -> SampleResult:
    """The end of both loops: Tweedie's estimate at ``t_min`` (``denoise``, one more score call
    per particle), then (``resample`` and ``final_resample``) one systematic resampling so the
    population is equally weighted, and the last read of the loop's pending ``checks``.
    ``counts``: resamplings, score and reward calls so far."""
    n_resamples, n_score, n_reward = counts
    if config.denoise:
        pop.x = _denoised(score, sde, pop.x, config, checks)
        n_score += pop.x.shape[0]
    if resample and config.final_resample:
        pop.resample(generator)
    checks.read()
    return SampleResult(
        x=pop.x.detach(),
        log_weights=pop.logw,
        path_log_weights=pop.path_logw,
        ess=ess,
        n_resamples=n_resamples,
        n_score_evals=n_score,
        n_reward_evals=n_reward,
        lam=torch.tensor(lams, dtype=torch.float64, device=pop.x.device),
        ancestors=pop.ancestors,
    )


def _denoised(
    score: ScoreFn, sde: VPSDE, x: torch.Tensor, config: SamplerConfig, checks: DeviceChecks
) -> torch.Tensor:
    """Tweedie's estimate at ``t_min``, chunked like the sampler's score calls."""
    t = config.t_min
    return map_chunks(
        lambda xc: tweedie(xc, checked_score(score, xc, t, checks), sde, t),
        x,
        chunk_size=config.chunk_size,
    )


def _sample_xhat0(
    score: ScoreFn,
    sde: VPSDE,
    x: torch.Tensor,
    reward: RewardFn,
    config: SamplerConfig,
    generator: torch.Generator | None,
    progress: bool,
) -> SampleResult:
    """The tilt ``phi_i(x) = lam_i r(xhat0(x, t_i))`` with twisted-SMC weights (fkc-math.md,
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

    After the last step the potential is evaluated once more at the final particles (at
    ``t_min``, where ``xhat0 ~ x``), so the weights target ``q_0 exp(lam_max r)`` of the
    discretised chain; no score derivative in time is needed. The initial weight is ``phi_0(x_1)``.
    ``guidance`` moves the same way and keeps no weights.
    """
    n, shape = x.shape[0], tuple(x.shape)
    weighted = VARIANTS[config.variant].weighted
    steps = config.n_steps
    grid = time_grid(config)
    lams = tilt_schedule(config, grid)
    pop = _Population.start(x)
    checks = DeviceChecks()
    carry = torch.zeros_like(pop.logw)  # phi_{i-1}(x_{i-1}) - log ratio of the move to x_i
    ess = torch.empty(steps, dtype=torch.float64, device=x.device)
    n_resamples = n_score = n_reward = 0

    for i in tqdm(range(steps), disable=not progress, desc=f"{config.variant} sampling (xhat0)"):
        t, lam = grid[i], lams[i]
        dtau = grid[i] - grid[i + 1]
        sigma = 0.0 if config.denoise and i == steps - 1 else noise_scale(sde, t, dtau)
        potential = xhat0_potential(
            score,
            reward,
            sde,
            pop.x,
            t=t,
            lam=lam,
            need_grad=lam > 0,
            chunk_size=config.chunk_size,
            checks=checks,
        )
        n_score += n
        n_reward += n
        if weighted:
            inc = potential.phi - carry
            pop.logw, pop.path_logw = pop.logw + inc, pop.path_logw + inc
            ess[i] = ess_tensor(pop.logw)
            if i > 0 and _resampling_due(config, checks, ess[i], n):
                idx = pop.resample(generator)
                potential = XHat0Potential(
                    score=potential.score[idx],
                    phi=potential.phi[idx],
                    grad_phi=None if potential.grad_phi is None else potential.grad_phi[idx],
                )
                n_resamples += 1
        else:
            ess[i] = n
        z = standard_normal(shape, generator, pop.x)
        pop.x, next_carry = xhat0_move(
            sde, pop.x, potential, z, t=t, dtau=dtau, sigma=sigma, weighted=weighted
        )
        if weighted:
            carry = next_carry

    if weighted:  # the final potential lam_max r(xhat0(x, t_min)) closes the last increment
        final = xhat0_potential(
            score,
            reward,
            sde,
            pop.x,
            t=config.t_min,
            lam=lams[-1],
            need_grad=False,
            chunk_size=config.chunk_size,
            checks=checks,
        )
        n_score += n
        n_reward += n
        inc = final.phi - carry
        pop.logw, pop.path_logw = pop.logw + inc, pop.path_logw + inc
    counts = (n_resamples, n_score, n_reward)
    return _finish(score, sde, pop, config, generator, weighted, ess, counts, lams, checks)
