"""Reward-tilted Feynman–Kac corrector (FKC) sampler, exactly as in ``shared/docs/fkc-math.md``.

The target at forward time t (sampling time ``tau = 1 - t``) is::

    p_t(x) ∝ q_t(x) exp(lam(tau) r(x)),

reached by an Euler–Maruyama discretisation of the reverse SDE with a reward-tilted drift and
Feynman–Kac log-weights (Skreta et al., ICML 2025, Prop. 3.4, eqs. 29–30). Four variants:

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
("Time-dependent potentials"), see :func:`_sample_xhat0`. Every particle's lineage (the index of
the initial particle it descends from) is returned in ``SampleResult.ancestors``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from prefalign.progress import tqdm
from prefalign.sde import VPSDE
from prefalign.settings import SamplerConfig

#: ``score(x, t) -> grad log q_t(x)`` for a batch ``x`` of shape (N, *event_shape).
ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]
#: ``reward(x) -> r(x)`` of shape (N,), differentiable with respect to ``x``.
RewardFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SampleResult:
    """Output of :func:`sample`.

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


def time_grid(config: SamplerConfig) -> list[float]:
    """The ``n_steps + 1`` forward times ``1 = t_0 > t_1 > ... > t_n = t_min`` of the sampler.

    ``uniform``: equal steps in t. ``quadratic``: ``t_i = t_min + (1 - t_min) (1 - i/n)^2``, steps
    shrinking linearly towards the data end, where the noise added by an Euler–Maruyama step on a
    uniform grid is far larger than the marginal's own ``s_t`` (fkc-math.md, "The last step").
    """
    n, span = config.n_steps, 1.0 - config.t_min
    if config.time_grid == "quadratic":
        return [config.t_min + span * (1.0 - i / n) ** 2 for i in range(n)] + [config.t_min]
    dtau = span / n
    return [1.0 - i * dtau for i in range(n)] + [config.t_min]


def tilt_schedule(config: SamplerConfig, grid: list[float]) -> list[float]:
    """``lam`` at the pre-step time of each step: ``config.lam(u)`` with ``u`` the sampling
    progress in time, 0 at t = 1 and 1 at the last step's pre-step time."""
    steps = config.n_steps
    if config.time_grid == "uniform":  # i / (n - 1) exactly, as the grid is uniform
        return [config.lam(i / max(steps - 1, 1)) for i in range(steps)]
    last = 1.0 - grid[steps - 1]
    return [config.lam((1.0 - grid[i]) / last if last > 0 else 1.0) for i in range(steps)]


def tweedie(x: torch.Tensor, score: torch.Tensor, sde: VPSDE, t: float) -> torch.Tensor:
    """The denoised estimate ``xhat0 = (x + s_t^2 grad log q_t(x)) / a_t`` (Tweedie's formula)."""
    s_t = sde.sigma(t)
    return (x + s_t * s_t * score) / sde.alpha(t)


def effective_sample_size(log_weights: torch.Tensor) -> float:
    """ESS ``1 / sum(softmax(logw)^2)``, in [1, N]."""
    w = torch.softmax(log_weights.double(), dim=0)
    return float(1.0 / (w * w).sum())


def systematic_resample(
    log_weights: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Systematic resampling: one uniform ``u``, positions ``(u + k) / N``, search in the cumsum.

    Returns the ancestor index of each of the N new particles (sorted ascending). Each particle
    ``i`` is copied ``floor(N w_i)`` or ``ceil(N w_i)`` times, and ``N w_i`` on average.
    """
    n = log_weights.shape[0]
    w = torch.softmax(log_weights.detach().double().cpu(), dim=0)
    cumsum = torch.cumsum(w, dim=0)
    cumsum[-1] = 1.0  # guard against round-off leaving the last bin short
    u = torch.rand((), generator=generator, dtype=torch.float64, device=_gen_device(generator))
    positions = (u.cpu() + torch.arange(n, dtype=torch.float64)) / n
    idx = torch.searchsorted(cumsum, positions, right=True)
    return idx.clamp_(max=n - 1).to(log_weights.device)


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, so a CPU seed gives the same
    numbers whatever device the particles live on."""
    z = torch.randn(shape, generator=generator, device=_gen_device(generator), dtype=like.dtype)
    return z.to(like.device)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-particle inner product over all event dimensions: (N, ...) x (N, ...) -> (N,)."""
    return (a * b).flatten(1).sum(dim=1)


def _reward_gradient(
    r: object, xr: torch.Tensor, n: int, need_grad: bool, what: str, needs: str
) -> torch.Tensor | None:
    """Check that a reward returned (N,) values and, if asked, ``grad_xr sum(r)``."""
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"reward must return a torch.Tensor; got {type(r).__name__}")
    if r.shape != (n,):
        raise ValueError(
            f"reward returned shape {tuple(r.shape)} for {n} particles; expected ({n},)"
        )
    if not need_grad:
        return None
    if not r.requires_grad:
        raise ValueError(
            f"{what} does not depend differentiably on x; the tilted drift needs {needs}"
        )
    (grad,) = torch.autograd.grad(r.sum(), xr)
    return grad


def _checked_reward(
    reward: RewardFn, x: torch.Tensor, t: float, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluate ``r(x)`` (N,) and, if asked, ``grad_x sum(r)``; validate shape and finiteness."""
    n = x.shape[0]
    with torch.enable_grad():
        xr = x.detach().requires_grad_(need_grad)
        r = reward(xr)
        grad = _reward_gradient(r, xr, n, need_grad, "reward output", "grad_x r(x)")
    r = r.detach()
    bad = ~torch.isfinite(r)
    if bad.any():
        raise ValueError(
            f"reward returned NaN or inf for {int(bad.sum())} of {n} particles at t={t:.4f}"
        )
    if grad is not None and not torch.isfinite(grad).all():
        raise ValueError(f"reward gradient is NaN or inf at t={t:.4f}")
    return r, grad


def _checked_score(score: ScoreFn, x: torch.Tensor, t: float) -> torch.Tensor:
    with torch.no_grad():
        s = score(x, t)
    if s.shape != x.shape:
        raise ValueError(f"score returned shape {tuple(s.shape)}; expected {tuple(x.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError(f"score returned NaN or inf at t={t:.4f}")
    return s


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
        x = _randn(shape, generator, torch.empty(0, device=device, dtype=dtype))
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
    """The FKC step of fkc-math.md with the reward at the noisy state, ``phi = lam_tau r(x)``."""
    n, shape, device = x.shape[0], tuple(x.shape), x.device
    chunk = config.chunk_size or n
    logw = torch.zeros(n, device=device, dtype=torch.float64)
    path_logw = torch.zeros_like(logw)
    ancestors = torch.arange(n, device=device)

    # time grid t_0 = 1 > ... > t_n = t_min; step i moves from t_i to t_{i+1}.
    # The tilt schedule reaches lam_max at the pre-step time of the last step, whose weight update
    # is skipped (fkc-math.md), so the weights target q_t exp(lam_max r) at that time.
    steps = config.n_steps
    grid = time_grid(config)
    lams = tilt_schedule(config, grid)
    if config.weighted and lams[0] > 0:  # initial log-weights lam(0) r(x_1)
        r0, _ = _checked_reward(reward, x, 1.0, need_grad=False)
        logw += lams[0] * r0.double()
        path_logw += lams[0] * r0.double()

    # the schedule, once (plain floats): forward time, step, g_t^2, noise scale sqrt(g_t^2 dtau)
    ts = grid[:steps]
    dtaus = [grid[i] - grid[i + 1] for i in range(steps)]
    g2s = [sde.beta(t) for t in ts]
    noise_scales = [math.sqrt(g2 * dtau) for g2, dtau in zip(g2s, dtaus, strict=True)]
    if config.denoise:  # the last step adds no noise: its mean, then Tweedie at t_min
        noise_scales[-1] = 0.0
    resampling = config.variant == "fkc" and config.weighted
    ess = torch.empty(steps, dtype=torch.float64)
    n_resamples = n_score = n_reward = 0

    for i in tqdm(range(steps), disable=not progress, desc=f"{config.variant} sampling"):
        t, g2, noise_scale, dtau = ts[i], g2s[i], noise_scales[i], dtaus[i]  # g2 = g_t^2
        lam = lams[i] if config.tilted else 0.0
        last = i == steps - 1
        update_weights = config.weighted and not last
        dlam = (lams[i + 1] - lams[i]) if update_weights else 0.0
        needs_reward = lam > 0 or (update_weights and dlam != 0)
        z = _randn(shape, generator, x)  # drawn for all N at once: chunking cannot change it
        # one chunk (the default) writes its results directly; several fill preallocated buffers
        x_new = torch.empty_like(x) if chunk < n else x
        dlogw = None
        if update_weights and needs_reward:
            dlogw = torch.empty(n, device=device, dtype=torch.float64) if chunk < n else None

        for lo in range(0, n, chunk):
            hi = lo + chunk
            xc = x[lo:hi]
            # 2. base score and (if tilted) reward and its gradient, all at the pre-step x
            s = _checked_score(score, xc, t)
            n_score += xc.shape[0]
            f = sde.drift(xc, t)  # forward drift f_t(x), used by the move and the weights
            drift = -f + g2 * s  # sampling-direction drift: -f + g^2 s
            if needs_reward:
                r, gr = _checked_reward(reward, xc, t, need_grad=lam > 0)
                n_reward += xc.shape[0]
                if lam > 0:
                    drift = drift + g2 * (lam / 2.0) * gr  # the 1/2 makes Laplacian terms cancel
                # 3. FK log-weight increment (fkc-math.md "One Euler–Maruyama step")
                if update_weights:
                    inc = dlam * r.double()
                    if lam > 0:
                        inner = _inner(gr, 0.5 * g2 * s - f)
                        inc = inc + lam * dtau * inner.double()
                    if chunk < n:
                        dlogw[lo:hi] = inc
                    else:
                        dlogw = inc
            # 4. Euler–Maruyama move with |dt| = dtau
            moved = xc + drift * dtau
            if noise_scale:
                moved = moved + noise_scale * z[lo:hi]
            if chunk < n:
                x_new[lo:hi] = moved
            else:
                x_new = moved

        x = x_new
        if config.variant == "draft" and update_weights:
            if dlogw is None:  # no reward this step; the draft still clips w
                dlogw = torch.zeros(n, device=device, dtype=torch.float64)
            dlogw = dlogw.clamp(-config.draft_dw_clip, config.draft_dw_clip)
            logw = (logw + dlogw).clamp(config.draft_w_min, config.draft_w_max)
            path_logw = logw  # the draft never resamples: its path weight is its weight
        elif dlogw is not None:  # a step without a weight update leaves logw and path_logw as is
            logw = logw + dlogw
            path_logw = path_logw + dlogw
        step_ess = effective_sample_size(logw)
        ess[i] = step_ess

        # 5. resampling (fkc only): copies carry their path weight, log-weights reset to 0
        if resampling and not last:
            due = config.resample == "always" or (
                config.resample == "ess" and step_ess < config.ess_threshold * n
            )
            if due:
                idx = systematic_resample(logw, generator)
                x, path_logw, ancestors = x[idx], path_logw[idx], ancestors[idx]
                logw = torch.zeros_like(logw)
                n_resamples += 1

    if config.denoise:
        x = _denoised(score, sde, x, config)
        n_score += n
    if config.variant == "fkc" and config.weighted and config.final_resample:
        idx = systematic_resample(logw, generator)
        x, path_logw, ancestors = x[idx], path_logw[idx], ancestors[idx]
        logw = torch.zeros_like(logw)

    return SampleResult(
        x=x,
        log_weights=logw,
        path_log_weights=path_logw,
        ess=ess,
        n_resamples=n_resamples,
        n_score_evals=n_score,
        n_reward_evals=n_reward,
        lam=torch.tensor(lams if config.tilted else [0.0] * steps, dtype=torch.float64),
        ancestors=ancestors,
    )


def _denoised(score: ScoreFn, sde: VPSDE, x: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    """Tweedie's estimate at ``t_min``, chunked like the sampler's score calls."""
    chunk = config.chunk_size or x.shape[0]
    parts = [
        tweedie(
            x[lo : lo + chunk],
            _checked_score(score, x[lo : lo + chunk], config.t_min),
            sde,
            config.t_min,
        )
        for lo in range(0, x.shape[0], chunk)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _potential_at_xhat0(
    score: ScoreFn,
    reward: RewardFn,
    sde: VPSDE,
    x: torch.Tensor,
    t: float,
    lam: float,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``s = grad log q_t(x)``, ``phi = lam r(xhat0(x, t))`` and (if asked) ``grad_x phi``, which
    differentiates through the score network (the Jacobian of xhat0)."""
    n = x.shape[0]
    with torch.enable_grad():
        xr = x.detach().requires_grad_(need_grad)
        s = score(xr, t)
        if s.shape != x.shape:
            raise ValueError(f"score returned shape {tuple(s.shape)}; expected {tuple(x.shape)}")
        r = reward(tweedie(xr, s, sde, t))
        grad = _reward_gradient(
            r,
            xr,
            n,
            need_grad,
            "reward at xhat0",
            "its gradient (is the score network run under torch.no_grad?)",
        )
        if grad is not None:
            grad = lam * grad
    s, r = s.detach(), r.detach()
    if not torch.isfinite(s).all():
        raise ValueError(f"score returned NaN or inf at t={t:.4f}")
    if not torch.isfinite(r).all():
        raise ValueError(f"reward at xhat0 returned NaN or inf at t={t:.4f}")
    if grad is not None and not torch.isfinite(grad).all():
        raise ValueError(f"gradient of the reward at xhat0 is NaN or inf at t={t:.4f}")
    return s, lam * r.double(), grad


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

    1. ``s_i``, ``phi_i(x_i)`` and ``grad phi_i`` (a backward pass through the score network);
    2. ``logw += phi_i(x_i) - phi_{i-1}(x_{i-1}) + log p_base(x_i | x_{i-1}) - log p_prop(x_i |
       x_{i-1})``: with the proposal's mean shifted by ``d = (g^2 / 2) grad phi dtau`` and noise
       ``sigma z``, the Gaussian ratio is ``-<z, d> / sigma - |d|^2 / (2 sigma^2)``;
    3. resampling on those weights (``fkc``), copies carrying everything computed at ``x_i``;
    4. the move ``x_{i+1} = x_i + (-f + g^2 (s + grad phi / 2)) dtau + sigma z``.

    After the last step the potential is evaluated once more at the final particles (at
    ``t_min``, where ``xhat0 ~ x``), so the weights target ``q_0 exp(lam_max r)`` of the
    discretised chain; no score derivative in time is needed. The initial weight is ``phi_0(x_1)``.
    ``guidance`` moves the same way and keeps no weights.
    """
    n, shape, device = x.shape[0], tuple(x.shape), x.device
    chunk = config.chunk_size or n
    weighted = config.variant == "fkc"
    steps = config.n_steps
    grid = time_grid(config)
    lams = tilt_schedule(config, grid)
    logw = torch.zeros(n, device=device, dtype=torch.float64)
    path_logw = torch.zeros_like(logw)
    carry = torch.zeros_like(logw)  # phi_{i-1}(x_{i-1}) - log ratio of the move to x_i
    ancestors = torch.arange(n, device=device)
    ess = torch.empty(steps, dtype=torch.float64)
    n_resamples = n_score = n_reward = 0

    def evaluate(xs: torch.Tensor, t: float, lam: float, need_grad: bool):
        parts = [
            _potential_at_xhat0(score, reward, sde, xs[lo : lo + chunk], t, lam, need_grad)
            for lo in range(0, n, chunk)
        ]
        if len(parts) == 1:
            return parts[0]
        grads = [p[2] for p in parts]
        return (
            torch.cat([p[0] for p in parts]),
            torch.cat([p[1] for p in parts]),
            torch.cat(grads) if need_grad else None,
        )

    for i in tqdm(range(steps), disable=not progress, desc=f"{config.variant} sampling (xhat0)"):
        t, lam = grid[i], lams[i]
        dtau = grid[i] - grid[i + 1]
        g2 = sde.beta(t)
        sigma = math.sqrt(g2 * dtau)
        last = i == steps - 1
        if config.denoise and last:
            sigma = 0.0
        s, phi, grad_phi = evaluate(x, t, lam, need_grad=lam > 0)
        n_score += n
        n_reward += n
        if weighted:
            inc = phi - carry
            logw, path_logw = logw + inc, path_logw + inc
            ess[i] = effective_sample_size(logw)
            due = config.resample == "always" or (
                config.resample == "ess" and ess[i] < config.ess_threshold * n
            )
            if due and i > 0:
                idx = systematic_resample(logw, generator)
                x, s, phi, path_logw, ancestors = (
                    x[idx],
                    s[idx],
                    phi[idx],
                    path_logw[idx],
                    ancestors[idx],
                )
                grad_phi = grad_phi[idx] if grad_phi is not None else None
                logw = torch.zeros_like(logw)
                n_resamples += 1
        else:
            ess[i] = float(n)
        drift = -sde.drift(x, t) + g2 * s
        # A noiseless last step (denoise) takes the base model's mean move, so the final
        # potential reweights the base chain's output exactly, with no Gaussian ratio.
        shift = None
        if grad_phi is not None and sigma > 0:
            shift = (0.5 * g2 * dtau) * grad_phi.to(x.dtype)
            drift = drift + 0.5 * g2 * grad_phi.to(x.dtype)
        z = _randn(shape, generator, x)
        x = x + drift * dtau + (sigma * z if sigma else 0.0)
        if weighted:
            carry = phi
            if shift is not None:
                log_ratio = -_inner(z, shift) / sigma - _inner(shift, shift) / (2 * sigma**2)
                carry = phi - log_ratio.double()

    if weighted:  # the final potential lam_max r(xhat0(x, t_min)) closes the last increment
        _, phi, _ = evaluate(x, config.t_min, lams[-1], need_grad=False)
        n_score += n
        n_reward += n
        inc = phi - carry
        logw, path_logw = logw + inc, path_logw + inc
    if config.denoise:
        x = _denoised(score, sde, x, config)
        n_score += n
    if weighted and config.final_resample:
        idx = systematic_resample(logw, generator)
        x, path_logw, ancestors = x[idx], path_logw[idx], ancestors[idx]
        logw = torch.zeros_like(logw)
    return SampleResult(
        x=x.detach(),
        log_weights=logw,
        path_log_weights=path_logw,
        ess=ess,
        n_resamples=n_resamples,
        n_score_evals=n_score,
        n_reward_evals=n_reward,
        lam=torch.tensor(lams, dtype=torch.float64),
        ancestors=ancestors,
    )
