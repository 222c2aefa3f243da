"""One step of the reward-tilted FKC sampler (Algorithm 2 as fkc-math.md corrects it).

:func:`fkc_step` is the Euler–Maruyama step of fkc-math.md, "One Euler–Maruyama step", with the
reward at the noisy state (``phi = lam_tau r(x)``); its comments number the lines as that section
does. :func:`xhat0_potential` and :func:`xhat0_move` are the two halves of the step with the
reward at the denoised estimate (``phi_i = lam_i r(xhat0(x, t_i))``, "Time-dependent potentials",
twisted SMC): the SMC kernel in :mod:`prefalign.sampling.sampler` updates the weights and
resamples between them. Weights, resampling, the tilt schedule and the time grid belong to the
kernel; a step sees one time point. :func:`map_chunks` is how every step (and the kernel's final
Tweedie estimate) splits the particles into ``chunk_size`` batches of model calls.

Every tensor a step makes is on the particles' device, and a step reads no value back to the
host: its checks (scores, rewards and gradients are finite) are recorded in a
:class:`DeviceChecks` that the kernel reads when it must wait for the device anyway (a
resampling decision) and at the end. Called on its own, a step reads its checks before it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from prefalign.models.sde import VPSDE
from prefalign.runtime import generator_device, to_host

#: ``score(x, t) -> grad log q_t(x)`` for a batch ``x`` of shape (N, *event_shape).
ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]
#: ``reward(x) -> r(x)`` of shape (N,), differentiable with respect to ``x``.
RewardFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FKCStepOutput:
    """What :func:`fkc_step` returns (like diffusers' ``SchedulerOutput``).

    Attributes:
        x: the particles after the move, ``x_{i+1}``, (N, *event_shape).
        log_weight_increment: ``dlogw`` of the step (float64, (N,)), or None when the step updates
            no weights (unweighted variants, the last step, a step without reward terms).
        n_score_evals: score evaluations, per particle.
        n_reward_evals: reward (and gradient) evaluations, per particle.
    """

    x: torch.Tensor
    log_weight_increment: torch.Tensor | None
    n_score_evals: int
    n_reward_evals: int


@dataclass
class XHat0Potential:
    """The potential of the x̂0 tilt at one time point, all at the pre-step ``x``.

    Attributes:
        score: ``s = grad log q_t(x)``, detached.
        phi: ``lam r(xhat0(x, t))``, float64 (N,).
        grad_phi: ``grad_x phi`` through the score network, or None when not asked for.
    """

    score: torch.Tensor
    phi: torch.Tensor
    grad_phi: torch.Tensor | None


class DeviceChecks:
    """Finiteness checks of values on the device, read by the host together, later.

    Reading a value computed on a GPU makes the host wait until the GPU's queue has run (a
    sync), and the checks of a step (the score, the reward and its gradient are finite) decide
    nothing the step needs: each is recorded as a count of non-finite values, on the device,
    and :meth:`read` reads every pending count at once, with whatever values the caller must
    read anyway, and raises the first failure's error. The sampler reads them with the ESS of
    a resampling decision and at the end: a NaN is reported with the time point that made it,
    a few steps after it at most.
    """

    def __init__(self) -> None:
        self._counts: list[torch.Tensor] = []
        self._messages: list[str] = []

    def expect_finite(self, values: torch.Tensor, message: str) -> None:
        """Check later that ``values`` are finite; ``message`` is the error otherwise, its
        ``{bad}`` replaced by the number of values that are not."""
        self._counts.append((~torch.isfinite(values)).sum())
        self._messages.append(message)

    def read(self, *values: torch.Tensor) -> list[float] | None:
        """One host read of the pending checks and of ``values`` (0-d tensors on the same
        device), which are returned as floats; None on the ``meta`` device, which has no values
        (nothing is checked there).

        Raises:
            ValueError: the message of the first pending check that failed.
        """
        counts, messages = self._counts, self._messages
        self._counts, self._messages = [], []
        parts = [c.reshape(1).double() for c in counts] + [v.reshape(1).double() for v in values]
        if not parts:
            return []
        host = to_host(torch.cat(parts))
        if host is None:
            return None
        numbers = host.tolist()
        for bad, message in zip(numbers[: len(counts)], messages, strict=True):
            if bad:
                raise ValueError(message.replace("{bad}", str(int(bad))))
        return numbers[len(counts) :]


def tweedie(x: torch.Tensor, score: torch.Tensor, sde: VPSDE, t: float) -> torch.Tensor:
    """The denoised estimate ``xhat0 = (x + s_t^2 grad log q_t(x)) / a_t`` (Tweedie's formula)."""
    s_t = sde.sigma(t)
    return (x + s_t * s_t * score) / sde.alpha(t)


def standard_normal(
    shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, so a CPU seed gives the same
    numbers whatever device the particles live on."""
    z = torch.randn(
        shape, generator=generator, device=generator_device(generator), dtype=like.dtype
    )
    return z.to(like.device)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-particle inner product over all event dimensions: (N, ...) x (N, ...) -> (N,)."""
    return (a * b).flatten(1).sum(dim=1)


def map_chunks(fn: Callable[..., Any], *rows: torch.Tensor, chunk_size: int | None) -> Any:
    """``fn`` on consecutive chunks of ``chunk_size`` rows (None: all at once) of the tensors
    ``rows``, which share their first dimension, in order; the chunks' results joined along it.

    ``fn`` returns a tensor or a tuple of tensors and Nones (a None stays None); one chunk's
    result is returned as is.
    """
    n = rows[0].shape[0]
    chunk = chunk_size or n
    parts = [fn(*(r[lo : lo + chunk] for r in rows)) for lo in range(0, n, chunk)]
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], tuple):
        return tuple(None if p[0] is None else torch.cat(p) for p in zip(*parts, strict=True))
    return torch.cat(parts)


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


def checked_reward(
    reward: RewardFn,
    x: torch.Tensor,
    t: float,
    need_grad: bool,
    checks: DeviceChecks | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluate ``r(x)`` (N,) and, if asked, ``grad_x sum(r)``; validate the shape now and the
    finiteness in ``checks`` (None: now)."""
    n = x.shape[0]
    with torch.enable_grad():
        xr = x.detach().requires_grad_(need_grad)
        r = reward(xr)
        grad = _reward_gradient(r, xr, n, need_grad, "reward output", "grad_x r(x)")
    r = r.detach()
    pending = DeviceChecks() if checks is None else checks
    pending.expect_finite(
        r, f"reward returned NaN or inf for {{bad}} of {n} particles at t={t:.4f}"
    )
    if grad is not None:
        pending.expect_finite(grad, f"reward gradient is NaN or inf at t={t:.4f}")
    if checks is None:
        pending.read()
    return r, grad


def checked_score(
    score: ScoreFn, x: torch.Tensor, t: float, checks: DeviceChecks | None = None
) -> torch.Tensor:
    """``score(x, t)`` without gradients; its shape checked now, its finiteness in ``checks``
    (None: now)."""
    with torch.no_grad():
        s = score(x, t)
    if s.shape != x.shape:
        raise ValueError(f"score returned shape {tuple(s.shape)}; expected {tuple(x.shape)}")
    pending = DeviceChecks() if checks is None else checks
    pending.expect_finite(s, f"score returned NaN or inf at t={t:.4f}")
    if checks is None:
        pending.read()
    return s


def fkc_step(
    score: ScoreFn,
    sde: VPSDE,
    x: torch.Tensor,
    z: torch.Tensor,
    *,
    t: float,
    dtau: float,
    lam: float,
    dlam: float,
    noise_scale: float,
    update_weights: bool,
    reward: RewardFn | None = None,
    chunk_size: int | None = None,
    checks: DeviceChecks | None = None,
) -> FKCStepOutput:
    """One Euler–Maruyama step from forward time ``t`` to ``t - dtau`` (fkc-math.md).

    Args:
        score, sde: the base model.
        x: particles at ``t``, (N, *event_shape).
        z: the step's standard normal noise, (N, *event_shape) (drawn by the caller for all N at
            once, so chunking cannot change it).
        t, dtau: pre-step forward time and the step length ``|dt|``.
        lam: ``lam_tau`` at ``t`` (0: the base drift).
        dlam: ``lam_{i+1} - lam_i``, the tilt's growth over the step (``dlam/dtau * dtau``).
        noise_scale: ``g_t sqrt(dtau)``, or 0 for a noiseless (denoising) last step.
        update_weights: whether this step returns a log-weight increment.
        reward: differentiable ``r(x) -> (N,)``; needed when ``lam > 0`` or the weights grow.
        chunk_size: particles per score/reward call (None: all at once).
        checks: where the step records its finiteness checks (the sampler's, read with its
            next decision); None reads them before the step returns (a ValueError if one fails).
    """
    pending = DeviceChecks() if checks is None else checks
    g2 = sde.beta(t)  # g_t^2
    needs_reward = lam > 0 or (update_weights and dlam != 0)

    def step(xc: torch.Tensor, zc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # s = grad log q_t(x): the base score, at the pre-step x like every term below
        s = checked_score(score, xc, t, pending)
        f = sde.drift(xc, t)  # forward drift f_t(x), used by the move and the weights
        drift = -f + g2 * s  # drift = -f_t(x) + g_t^2 s  (+ the reward term below)
        dlogw = None
        if needs_reward:
            # gr = grad_x r(x): autograd of sum(r(x)) over the batch, detached
            r, gr = checked_reward(reward, xc, t, need_grad=lam > 0, checks=pending)
            if lam > 0:
                drift = drift + g2 * (lam / 2.0) * gr  # the 1/2 makes Laplacian terms cancel
            # dlogw = (dlam/dtau r(x) + lam_tau <gr, (g_t^2 / 2) s - f_t(x)>) dtau
            if update_weights:
                dlogw = dlam * r.double()
                if lam > 0:
                    dlogw = dlogw + lam * dtau * inner(gr, 0.5 * g2 * s - f).double()
        # x_new = x + drift dtau + g_t sqrt(dtau) z
        moved = xc + drift * dtau
        if noise_scale:
            moved = moved + noise_scale * zc
        return moved, dlogw

    x_new, dlogw = map_chunks(step, x, z, chunk_size=chunk_size)
    if checks is None:
        pending.read()
    n = x.shape[0]
    return FKCStepOutput(x_new, dlogw, n_score_evals=n, n_reward_evals=n if needs_reward else 0)


def _potential_chunk(
    score: ScoreFn,
    reward: RewardFn,
    sde: VPSDE,
    x: torch.Tensor,
    at: tuple,
    checks: DeviceChecks,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`xhat0_potential` of one chunk, ``(s, phi, grad_phi)``; ``at`` is
    ``(t, lam, need_grad)``."""
    t, lam, need_grad = at
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
    checks.expect_finite(s, f"score returned NaN or inf at t={t:.4f}")
    checks.expect_finite(r, f"reward at xhat0 returned NaN or inf at t={t:.4f}")
    if grad is not None:
        checks.expect_finite(grad, f"gradient of the reward at xhat0 is NaN or inf at t={t:.4f}")
    return s, lam * r.double(), grad


def xhat0_potential(
    score: ScoreFn,
    reward: RewardFn,
    sde: VPSDE,
    x: torch.Tensor,
    *,
    t: float,
    lam: float,
    need_grad: bool,
    chunk_size: int | None = None,
    checks: DeviceChecks | None = None,
) -> XHat0Potential:
    """Step 1 of the x̂0 tilt: ``s = grad log q_t(x)``, ``phi = lam r(xhat0(x, t))`` and (if asked)
    ``grad_x phi``, which differentiates through the score network (the Jacobian of xhat0).
    ``checks`` as in :func:`fkc_step`."""
    pending = DeviceChecks() if checks is None else checks
    s, phi, grad_phi = map_chunks(
        lambda xc: _potential_chunk(score, reward, sde, xc, (t, lam, need_grad), pending),
        x,
        chunk_size=chunk_size,
    )
    if checks is None:
        pending.read()
    return XHat0Potential(score=s, phi=phi, grad_phi=grad_phi)


def xhat0_move(
    sde: VPSDE,
    x: torch.Tensor,
    potential: XHat0Potential,
    z: torch.Tensor,
    *,
    t: float,
    dtau: float,
    sigma: float,
    weighted: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step 4 of the x̂0 tilt: the move ``x_{i+1} = x_i + (-f + g^2 (s + grad phi / 2)) dtau +
    sigma z``, and the ``carry`` of the next weight increment: ``phi_i(x_i)`` minus the log ratio
    ``log p_prop(x_{i+1} | x_i) - log p_base(x_{i+1} | x_i) = <z, d> / sigma + |d|^2 / (2 sigma^2)``
    of the shifted proposal (``d = (g^2 / 2) grad phi dtau``); None when unweighted.

    A noiseless last step (``sigma = 0``, denoising) takes the base model's mean move, so the final
    potential reweights the base chain's output exactly, with no Gaussian ratio.
    """
    g2 = sde.beta(t)
    drift = -sde.drift(x, t) + g2 * potential.score
    shift = None
    if potential.grad_phi is not None and sigma > 0:
        shift = (0.5 * g2 * dtau) * potential.grad_phi.to(x.dtype)
        drift = drift + 0.5 * g2 * potential.grad_phi.to(x.dtype)
    x_new = x + drift * dtau + (sigma * z if sigma else 0.0)
    if not weighted:
        return x_new, None
    carry = potential.phi
    if shift is not None:
        log_ratio = -inner(z, shift) / sigma - inner(shift, shift) / (2 * sigma**2)
        carry = potential.phi - log_ratio.double()
    return x_new, carry


def noise_scale(sde: VPSDE, t: float, dtau: float) -> float:
    """``g_t sqrt(dtau)``, the standard deviation of one step's noise."""
    return math.sqrt(sde.beta(t) * dtau)
