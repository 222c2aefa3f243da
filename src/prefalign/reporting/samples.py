"""Samples of a domain outside a campaign: the ``prefalign sample`` and ``prefalign base-report``
commands (draw, summarise, save, plot)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from prefalign.domains.base import Domain
from prefalign.reporting import render
from prefalign.settings import SamplerConfig

StrPath = str | os.PathLike[str]


def tilt_reward(domain: Domain, *, user: str | None = None, surrogate: StrPath | None = None):
    """The reward a standalone sample is tilted by: a surrogate checkpoint, or a built-in user's
    differentiable reward (``.torch``); None for neither."""
    if surrogate:
        from prefalign.learning.checkpoint import load_surrogate

        return load_surrogate(surrogate).eval()
    if user:
        preference = domain.oracle(user)
        if not hasattr(preference, "torch"):
            raise ValueError(f"user {user!r} has no differentiable form; use --surrogate")
        return preference.torch
    return None


def draw_samples(
    domain: Domain,
    n: int,
    config: SamplerConfig,
    *,
    reward: Any = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
):
    """``n`` particles of ``domain`` from the sampler ``config`` (tilted by ``reward`` when its
    variant is), seeded by ``seed`` (on the device's generator): a
    :class:`~prefalign.sampling.SampleResult`."""
    from prefalign.runtime import device_generator, resolve_device
    from prefalign.sampling import sample

    if config.tilted and reward is None:
        raise ValueError(f"variant {config.variant!r} needs a user or a surrogate to tilt by")
    dev = resolve_device(device)
    return sample(
        domain.score,
        domain.sde,
        n,
        tuple(domain.event_shape),
        reward=reward.to(dev) if hasattr(reward, "to") else reward,
        config=config,
        generator=device_generator(seed, dev),
        device=dev,
        progress=progress,
    )


def save_sample_result(path: StrPath, result: Any, config: SamplerConfig) -> np.ndarray:
    """Write a :class:`~prefalign.sampling.SampleResult` as ``.npz`` (``x``, ``log_weight``,
    ``fk_log_weight``, ``ess``, the sampler ``config`` as JSON); returns ``x``."""
    x = result.x.detach().cpu().float().numpy()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        x=x,
        log_weight=result.log_weights.cpu().numpy(),
        fk_log_weight=result.path_log_weights.cpu().numpy(),
        ess=result.ess.cpu().numpy(),
        config=json.dumps(config.to_dict()),
    )
    return x


def sample_summary(domain: Domain, x: np.ndarray, user: str | None = None) -> dict[str, Any]:
    """Validity and diversity of samples, and their mean reward under a built-in ``user``."""
    summary: dict[str, Any] = {
        "particles": len(x),
        "validity_rate": float(domain.is_valid(x).mean()),
        **domain.diversity(x),
    }
    if user:
        summary["mean_reward"] = float(np.mean(domain.oracle(user)(x)))
    return summary


def plot_domain_samples(
    domain: Domain, x: np.ndarray, path: StrPath, *, user: str | None = None, title: str = ""
) -> Path:
    """A picture of samples, coloured by a built-in ``user``'s reward when given; 2-D points are
    drawn over 2,000 data samples of the domain."""
    import torch

    rewards = domain.oracle(user)(x) if user else None
    background = None
    if x.ndim == 2 and x.shape[1] == 2:  # render.save_samples draws these as points
        background = domain.sample_data(2000, torch.Generator().manual_seed(0))
    return render.save_samples(path, x, rewards, title=title, background=background)


def sample_domain(
    domain: Domain,
    config: SamplerConfig,
    *,
    n: int,
    out: StrPath,
    user: str | None = None,
    surrogate: StrPath | None = None,
    seed: int = 0,
    device: str = "cpu",
    plot: StrPath | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``prefalign sample``: ``n`` particles of ``domain`` tilted by a built-in ``user`` or a
    ``surrogate`` checkpoint (:func:`tilt_reward`), saved to ``out`` (and pictured in ``plot``);
    returns their summary (:func:`sample_summary`, resampling count, smallest ESS)."""
    reward = tilt_reward(domain, user=user, surrogate=surrogate)
    result = draw_samples(
        domain, n, config, reward=reward, seed=seed, device=device, progress=progress
    )
    x = save_sample_result(out, result, config)
    summary = sample_summary(domain, x, user)
    summary |= {"n_resamples": result.n_resamples, "min_ess": float(result.ess.min())}
    if plot:
        title = f"{config.variant}, lam_max={config.lam_max}"
        plot_domain_samples(domain, x, plot, user=user, title=title)
    return summary


def base_model_report(
    domain: Domain,
    name: str,
    *,
    n: int,
    n_steps: int,
    out: StrPath,
    plot: StrPath,
    summary_path: StrPath,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """``prefalign base-report``: ``n`` base-model samples of ``domain`` (``out``, ``.npz``),
    their validity and diversity beside the domain's real held-out samples
    (``reference_samples``; the summary, JSON, also returned) and their picture (over the real
    samples, for 2-D points)."""
    result = draw_samples(
        domain, n, SamplerConfig(variant="base", n_steps=n_steps), seed=seed, progress=progress
    )
    x = result.x.float().numpy()
    real = domain.reference_samples()
    summary = {
        "domain": name,
        "n_base_samples": len(x),
        "n_real_samples": len(real),
        "validity_rate_base": float(domain.is_valid(x).mean()),
        "validity_rate_real": float(domain.is_valid(real).mean()),
        "diversity_base": domain.diversity(x),
        "diversity_real": domain.diversity(real),
    }
    np.savez(out, x=x)
    Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    render.save_samples(plot, x, title="base samples", background=real)
    return summary
