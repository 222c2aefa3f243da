"""What a round or an evaluation samples, and the draws shared between campaigns.

A :class:`Proposal` is a score model (its score and SDE), the sampler settings and the potential
tilting it; :func:`draw` samples it from the campaign's (seed, round, step) random stream, so a
rerun draws the very same particles. The learners (:mod:`prefalign.loop.learners`) build the
proposals; the steps only draw them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prefalign.runtime import resolve_device, torch_generator
from prefalign.settings import SamplerConfig

if TYPE_CHECKING:
    from prefalign.domains.base import Domain
    from prefalign.loop.campaign_settings import CampaignSpec
    from prefalign.sampling import SampleResult

#: The round number of the final evaluation's random streams: apart from every round's.
EVALUATION_ROUND = 10**6


def campaign_domain(spec: CampaignSpec) -> Domain:
    """The domain of a campaign, built from its options on the campaign's device; built once
    per process, options and device (a job of the workflow builds one; an in-process loop of
    many campaigns loads a model once)."""
    device = str(resolve_device(spec.device))
    return _domain(spec.domain, json.dumps(spec.domain_options, sort_keys=True), device)


@functools.lru_cache(maxsize=4)
def _domain(name: str, options: str, device: str) -> Domain:
    from prefalign.domains import get_domain

    return get_domain(name, json.loads(options), device)


@dataclass(frozen=True)
class Proposal:
    """What a draw samples.

    Attributes:
        score: the score model ``score(x, t)``.
        sde: its forward SDE.
        event_shape: the shape of one particle.
        config: the sampler settings (variant, steps, ``lam_max``...).
        reward: the potential tilting the sampler; None: untilted.
        base: the domain's base model, untilted: the same particles for every campaign of a
            seed, so an in-process study computes them once (:class:`BaseDrawCache`).
    """

    score: Callable[..., Any]
    sde: Any
    event_shape: tuple[int, ...]
    config: SamplerConfig
    reward: Callable[..., Any] | None = None
    base: bool = False


def untilted(config: SamplerConfig) -> SamplerConfig:
    """``config``'s sampling steps without a tilt (the ``base`` variant)."""
    return replace(config, variant="base")


def base_proposal(domain: Domain, config: SamplerConfig) -> Proposal:
    """The domain's base model with the sampling steps of ``config`` and no tilt."""
    return Proposal(
        domain.score, domain.sde, tuple(domain.event_shape), untilted(config), base=True
    )


class BaseDrawCache:
    """Base-model draws shared by the campaigns of one process (an in-process study).

    A base draw depends only on the domain, the sampler settings, N and its (seed, round, step)
    generator, so methods that sample the base model (round 0 of every method, ``random`` and
    ``best-of-n`` in every round) get the very same particles seed by seed; this computes each
    once. Counts what it computed and reused."""

    def __init__(self) -> None:
        self.draws: dict[str, SampleResult] = {}
        self.computed = 0
        self.reused = 0

    def get(self, key: str, draw: Callable[[], SampleResult]) -> SampleResult:
        """The draw stored under ``key``, computed by ``draw()`` the first time."""
        if key in self.draws:
            self.reused += 1
        else:
            self.computed += 1
            self.draws[key] = draw()
        return self.draws[key]


def draw(
    spec: CampaignSpec,
    proposal: Proposal,
    n: int,
    round_: int,
    step: str,
    *,
    progress: bool = False,
    base_draws: BaseDrawCache | None = None,
) -> SampleResult:
    """``n`` particles of ``proposal`` from the campaign's (seed, round, step) stream on its
    device; with ``base_draws``, a draw of the base model is taken from (or stored in) that
    cache."""
    if proposal.base and base_draws is not None:
        key = json.dumps(
            [spec.domain, spec.domain_options, spec.seed, spec.device, n, round_, step]
            + [proposal.config.to_dict()],
            sort_keys=True,
        )
        fresh = functools.partial(draw, spec, proposal, n, round_, step, progress=progress)
        return base_draws.get(key, fresh)
    from prefalign.sampling import sample

    device = resolve_device(spec.device)
    return sample(
        proposal.score,
        proposal.sde,
        n,
        proposal.event_shape,
        reward=proposal.reward,
        config=proposal.config,
        generator=torch_generator(spec.seed, round_, step, device),
        device=device,
        progress=progress,
    )
