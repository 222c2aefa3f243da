"""Which of a round's particles become its questions: the selector of a method.

A method's ``selection``, ``score``, ``epsilon``, ``kappa``, ``batch`` and ``explore_from`` are
resolved once (:meth:`Selector.of`) into a :class:`Selector`:

- the selection rule (:data:`prefalign.acquisition.RULES`: ``eps_greedy``, ``greedy``,
  ``random``, ``ucb``), with eps-greedy's rate (a constant ``epsilon`` or the draft paper's
  schedule, :func:`prefalign.acquisition.eps_greedy_epsilon`);
- what ranks the top picks (:data:`SCORES`: the FK path log-weight or the surrogate's mean);
- how the top slots are filled (``batch``: :data:`prefalign.acquisition.BATCH_RULES`);
- where eps-greedy's exploring picks come from (:data:`EXPLORE_ARMS`): random tilted
  particles (``tilted``, the draft paper), the base samples the surrogate ranks highest
  (``base``: a best-of-n arm), or the particles whose answers most reduce the surrogate's
  posterior variance over the tilted ones (``information``).

A new rule is one entry of ``acquisition.RULES``, a new score one entry of :data:`SCORES`, a new
exploring arm one class here with its entry in :data:`EXPLORE_ARMS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from prefalign import acquisition
from prefalign.acquisition import Selection, SelectionRule
from prefalign.registry import named
from prefalign.settings import VARIANTS

if TYPE_CHECKING:
    from prefalign.learning.surrogate import Surrogate
    from prefalign.loop.campaign_settings import CampaignSpec

#: Share of a round's N particles drawn from the base model by an arm that draws base samples.
BASE_SHARE = 0.5


@dataclass(frozen=True)
class RoundParticles:
    """A round's particles as the selection sees them (the arrays of ``particles.npz``).

    Attributes:
        x: ``(N, *event_shape)`` the particles.
        fk: FK path log-weights (NaN for base samples).
        pred: the surrogate's mean at each particle (NaN without a surrogate).
        std: its posterior or ensemble spread.
        lineage: the initial particle each descends from.
        proposal: 0 for tilted particles, 1 for the exploring arm's base samples.
        utilities: ``(E, N)`` each ensemble member's utility of each particle, for the pairing
            of several-item questions (None when the round has none).
    """

    x: np.ndarray
    fk: np.ndarray
    pred: np.ndarray
    std: np.ndarray
    lineage: np.ndarray
    proposal: np.ndarray
    utilities: np.ndarray | None = None


#: What ranks a rule's top picks, by name (a method's ``score``).
SCORES: dict[str, Callable[[RoundParticles], np.ndarray]] = {
    "fk_weight": lambda p: p.fk,
    "surrogate": lambda p: p.pred,
}
#: the scores that need FK path weights from the sampler
_WEIGHTED_SCORES = ("fk_weight",)
#: The rule of round 0 (the cold start: no surrogate yet) and of every untrained learner.
COLD_START: SelectionRule = acquisition.rule("random")
#: Round 0 with a population prior: the share of its questions that are random base samples
#: all the same (questions the prior alone chooses find only the tastes earlier users had;
#: measured on digits, docs/population.md).
PRIOR_RANDOM_SHARE = 0.5


class ExploreArm:
    """Where eps-greedy's exploring picks come from."""

    name: ClassVar[str]
    draws_base: ClassVar[bool] = False  # draws base samples beside the tilted ones
    informs: ClassVar[bool] = False  # needs the round's surrogate at selection

    def check(self, spec: CampaignSpec, rule: SelectionRule) -> None:
        """Raise ValueError naming the setting when the campaign cannot use this arm."""
        if self.draws_base and not rule.explores:
            raise ValueError(
                f"method {spec.method.name!r}: explore_from {self.name!r} chooses eps-greedy's "
                f"exploring questions; selection must explore (eps_greedy), got "
                f"{spec.method.selection!r}"
            )

    def picks(
        self,
        particles: RoundParticles,
        candidates: np.ndarray,
        top: np.ndarray,
        n: int,
        rng: np.random.Generator,
        informer: Surrogate | None,
    ) -> Selection:
        """``n`` exploring picks among ``candidates``, given the ``top`` picks."""
        raise NotImplementedError


class TiltedArm(ExploreArm):
    """Random tilted particles (the draft paper's rule: the rule's own random picks)."""

    name = "tilted"


class BaseArm(ExploreArm):
    """The base samples the surrogate ranks highest: a best-of-n arm."""

    name = "base"
    draws_base = True

    def picks(self, particles, candidates, top, n, rng, informer):
        base = np.flatnonzero(particles.proposal == 1)
        chosen = acquisition.select(particles.pred[base], n, rng, x=particles.x[base], n_top=n)
        return Selection(indices=base[chosen.indices], selected_by=np.full(n, "explore"))


class InformationArm(ExploreArm):
    """The particles, tilted or base, whose answers most reduce the surrogate's posterior
    variance over the tilted particles (:func:`prefalign.learning.information.information_batch`;
    a Gaussian-process surrogate of ratings)."""

    name = "information"
    draws_base = True
    informs = True

    def check(self, spec, rule):
        super().check(spec, rule)
        if spec.surrogate.arch != "gp" or spec.form != "rate":
            raise ValueError(
                f"method {spec.method.name!r}: explore_from 'information' needs a Gaussian-"
                f"process surrogate of ratings (surrogate.arch 'gp', form 'rate'); got arch "
                f"{spec.surrogate.arch!r}, form {spec.form!r}"
            )

    def picks(self, particles, candidates, top, n, rng, informer):
        from prefalign.learning.information import information_batch

        x, tilted = particles.x, np.flatnonzero(particles.proposal == 0)
        distinct = acquisition.distinct_in_rank_order(x, np.arange(len(x)))
        pool = np.setdiff1d(distinct, top)
        pending = x[top] if top.size else None
        picked = information_batch(informer, x[pool], x[tilted], n, pending=pending)
        return Selection(indices=pool[picked], selected_by=np.full(n, "information"))


#: The exploring arms by name (a method's ``explore_from``); an unknown name lists these.
EXPLORE_ARMS: dict[str, ExploreArm] = {
    arm.name: arm for arm in (TiltedArm(), BaseArm(), InformationArm())
}


@dataclass(frozen=True)
class Selector:
    """A method's selection, resolved (see the module docstring)."""

    rule: SelectionRule
    score: Callable[[RoundParticles], np.ndarray]
    arm: ExploreArm
    epsilon: float | None = None  # eps-greedy's constant rate; None: the draft's schedule
    kappa: float = 1.0  # ucb's weight of the spread
    batch: str = "top"

    @classmethod
    def of(cls, spec: CampaignSpec) -> Selector:
        """The campaign's selector.

        Raises:
            ValueError: an unknown name (listing the valid ones), or a combination the campaign
                cannot use, naming the setting.
        """
        method = spec.method
        where = f"method {method.name!r}: "
        try:
            rule = acquisition.rule(method.selection)
            score = named(SCORES, "score", method.score)
            arm = named(EXPLORE_ARMS, "explore_from", method.explore_from)
            named(dict.fromkeys(acquisition.BATCH_RULES), "batch", method.batch)
        except ValueError as err:
            raise ValueError(where + str(err)) from err
        if method.epsilon is not None and not 0.0 <= method.epsilon <= 1.0:
            raise ValueError(where + "epsilon must lie in [0, 1]")
        arm.check(spec, rule)
        selector = cls(rule, score, arm, method.epsilon, method.kappa, method.batch)
        asks_after_round0 = method.cold_start_queries is None and rule.greedy
        weighted = VARIANTS[method.sampler.variant].weighted
        if asks_after_round0 and method.score in _WEIGHTED_SCORES and not weighted:
            raise ValueError(
                where + f"score {method.score!r} needs a variant with FK weights "
                f"({', '.join(v for v, s in VARIANTS.items() if s.weighted)}); variant "
                f"{method.sampler.variant!r} has none: set score to 'surrogate'"
            )
        return selector

    def base_particles(self, spec: CampaignSpec, round_: int) -> int:
        """Base particles drawn beside the tilted ones in round ``round_`` for the exploring
        arm: :data:`BASE_SHARE` of N from round 1 on, none in round 0 (all base) or when the
        method samples the base model anyway."""
        tilted = VARIANTS[spec.method.sampler.variant].tilted
        if round_ == 0 or not (self.arm.draws_base and self.rule.explores and tilted):
            return 0
        return min(spec.n_particles - spec.k, max(spec.k, round(BASE_SHARE * spec.n_particles)))

    @staticmethod
    def _prior_questions(
        particles: RoundParticles, k: int, rng: np.random.Generator, prior: Surrogate
    ) -> Selection:
        """Round 0 with a population prior: :data:`PRIOR_RANDOM_SHARE` of the questions random
        base samples (what a taste no earlier user shares is found by), the rest the base
        samples whose answers teach the prior most given those."""
        x = particles.x
        n_random = round(PRIOR_RANDOM_SHARE * k)
        cold = COLD_START.select(np.zeros(len(x)), n_random, rng, x=x)
        informed = EXPLORE_ARMS["information"].picks(
            particles, np.arange(len(x)), cold.indices, k - n_random, rng, prior
        )
        return Selection(
            indices=np.concatenate([cold.indices, informed.indices]).astype(np.int64),
            selected_by=np.concatenate([cold.selected_by, informed.selected_by]),
        )

    def leads(
        self,
        spec: CampaignSpec,
        round_: int,
        particles: RoundParticles,
        k: int,
        rng: np.random.Generator,
        informer: Surrogate | None = None,
    ) -> Selection:
        """The round's ``k`` picks (one per question): random in round 0, or there, with a
        population prior (``informer``), the base samples whose answers teach the prior most;
        later ``informer`` is the surrogate whose uncertainty chooses the exploring picks
        (``explore_from: information``)."""
        x = particles.x
        if round_ == 0:
            if informer is not None:
                return self._prior_questions(particles, k, rng, informer)
            return COLD_START.select(np.zeros(len(x)), k, rng, x=x)
        epsilon = None
        if self.rule.explores:
            epsilon = self.epsilon
            if epsilon is None:
                epsilon = acquisition.eps_greedy_epsilon(round_, spec.rounds)
        scores = self.score(particles)
        if not particles.proposal.any():
            return self.rule.select(
                scores,
                k,
                rng,
                x=x,
                epsilon=epsilon,
                std=particles.std if self.rule.optimistic else None,
                kappa=self.kappa,
                batch=self.batch,
                lineage=particles.lineage,
            )
        # an arm with base samples (eps-greedy only): the top picks from the tilted particles
        # by the score and batch rule, the exploring share (floor(eps k)) from the arm
        n_explore = acquisition.n_random_picks(epsilon, k)
        tilted = np.flatnonzero(particles.proposal == 0)
        parts, labels = [], []
        if k - n_explore:
            top = acquisition.select(
                scores[tilted],
                k - n_explore,
                rng,
                x=x[tilted],
                n_top=k - n_explore,
                batch=self.batch,
                lineage=particles.lineage[tilted],
            )
            parts.append(tilted[top.indices])
            labels.append(top.selected_by)
        if n_explore:
            top = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
            explore = self.arm.picks(particles, tilted, top, n_explore, rng, informer)
            parts.append(explore.indices)
            labels.append(explore.selected_by)
        return Selection(
            indices=np.concatenate(parts).astype(np.int64), selected_by=np.concatenate(labels)
        )
