"""Step 1 of a round: sample its particles (round 0: the base model) into ``particles.npz``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prefalign.io.atomic import savez, write_text
from prefalign.loop.draws import BaseDrawCache, base_proposal, campaign_domain, draw
from prefalign.loop.spec import CampaignSpec, resolve
from prefalign.runtime import resolve_device

if TYPE_CHECKING:
    import torch

    from prefalign.learning.surrogate import Surrogate

PathLike = str | os.PathLike[str]


def sample_round(
    spec: CampaignSpec,
    round_: int,
    learnt_dir: PathLike | None,
    out: PathLike,
    *,
    progress: bool = False,
    base_draws: BaseDrawCache | None = None,
) -> dict:
    """Sample N particles with what the method learnt so far (``learnt_dir``: the last fit's
    output; round 0: the base model, predicted by the learner's prior when it has one) and
    write ``particles.npz``.

    The file holds ``x`` (N, *shape), ``fk_log_weight`` (FK path log-weights), ``log_weight``,
    ``surrogate_pred`` and ``surrogate_std`` (NaN without a surrogate), ``ess`` per step,
    ``ancestor`` (lineage) and ``proposal`` (1: the exploring arm's base samples); for a
    campaign whose questions show several items also ``surrogate_utilities`` (E, N), each
    ensemble member's utility of each particle (:mod:`prefalign.pairing`). Returns the run's
    statistics (also written as JSON beside it).
    """
    import torch

    torch.set_num_threads(spec.torch_threads)
    resolved = resolve(spec)
    learner, selector = resolved.learner, resolved.selector
    domain = campaign_domain(spec)
    if round_ == 0:
        learnt_dir = learner.initial(spec)  # a population prior, or nothing
    learnt = learner.load(spec, domain, learnt_dir) if learnt_dir is not None else None
    n_base = selector.base_particles(spec, round_)
    start = time.perf_counter()
    proposal = learner.proposal(spec, domain, learnt, round_)
    result = draw(
        spec,
        proposal,
        spec.n_particles - n_base,
        round_,
        "sample",
        progress=progress,
        base_draws=base_draws,
    )
    x = result.x.detach().cpu().float()
    fk = result.path_log_weights.cpu().numpy()
    logw = result.log_weights.cpu().numpy()
    ancestor = result.ancestors.cpu().numpy().astype(np.int64)
    arm = np.zeros(len(x), dtype=np.int8)
    n_base_evals = 0
    if n_base:  # the exploring arm: base samples, ranked by the surrogate at selection
        base = draw(
            spec,
            base_proposal(domain, spec.method.sampler),
            n_base,
            round_,
            "sample-base",
            base_draws=base_draws,
        )
        n_base_evals = base.n_score_evals
        x = torch.cat([x, base.x.detach().cpu().float()])
        fk = np.concatenate([fk, np.full(n_base, np.nan)])
        logw = np.concatenate([logw, np.zeros(n_base)])
        ancestor = np.concatenate([ancestor, len(ancestor) + np.arange(n_base)])
        arm = np.concatenate([arm, np.ones(n_base, dtype=np.int8)])
    seconds = time.perf_counter() - start
    surrogate = learner.surrogate(learnt)
    device = resolve_device(spec.device)
    pred, std = _predict(surrogate, x, device)
    extra = {}
    if surrogate is not None and spec.items_per_question > 1:  # pairing by uncertainty
        with torch.no_grad():
            utilities = surrogate.to(device).eval().standardised_members(x.float().to(device))
        extra["surrogate_utilities"] = utilities.cpu().numpy().astype(np.float64)
    savez(
        out,
        x=x.numpy(),
        fk_log_weight=fk,
        log_weight=logw,
        surrogate_pred=pred,
        surrogate_std=std,
        ess=result.ess.cpu().numpy(),
        ancestor=ancestor,
        proposal=arm,
        **extra,
    )
    stats = {
        "round": round_,
        "variant": "base" if surrogate is None else spec.method.sampler.variant,
        "n_particles": spec.n_particles,
        "n_base_particles": n_base,
        "n_resamples": result.n_resamples,
        "min_ess": float(result.ess.min()),
        "n_score_evals": result.n_score_evals + n_base_evals,
        "n_reward_evals": result.n_reward_evals,
        "seconds": seconds,
    }
    write_text(Path(out).with_suffix(".json"), json.dumps(stats, indent=2) + "\n")
    return stats


def _predict(
    surrogate: Surrogate | None, x: torch.Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """The surrogate's mean and spread at ``x``, computed on ``device`` (NaN without one)."""
    import torch

    n = x.shape[0]
    if surrogate is None:
        return np.full(n, np.nan), np.full(n, np.nan)
    surrogate = surrogate.to(device).eval()
    with torch.no_grad():
        mean, std = surrogate.predict(x.detach().float().to(device))
    return mean.cpu().numpy().astype(np.float64), std.cpu().numpy().astype(np.float64)
