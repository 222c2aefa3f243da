"""The resolved settings of one campaign (domain × method × seed): :class:`CampaignSpec`, saved
as ``spec.json``, and the method's part of it, :class:`MethodSpec`. Plain data, checked field by
field; what a method's names mean (its learner, its selector) is resolved from them by
:mod:`prefalign.loop.learners` and :mod:`prefalign.loop.selectors`, and
:func:`prefalign.loop.spec.campaign_spec` checks that they fit the campaign.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from prefalign.io.feedback import parse_form
from prefalign.pairing import PAIRINGS
from prefalign.settings import FinalTilt, FinetuneSettings, SamplerConfig, SurrogateConfig


def _reject_unknown(cls: type, data: dict[str, Any], where: str) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")


@dataclass(frozen=True)
class MethodSpec:
    """How a method samples, selects and learns.

    Attributes:
        name: method name (``fkc-al``, ``random``, ...).
        sampler: the sampler settings used from round 1 on (round 0 always samples the base model).
        selection: query selection rule (:data:`prefalign.acquisition.RULES`).
        score: what the top picks are ranked by (:data:`prefalign.loop.selectors.SCORES`).
        epsilon: constant exploration rate for eps_greedy; None = the draft's schedule.
        kappa: UCB exploration weight.
        cold_start_queries: queries spent in round 0; None = k. The non-adaptive baseline spends
            the whole budget there.
        eval_sampler: the sampler of the final evaluation, tilted by the last surrogate; None =
            ``sampler``. Methods that sample the base model while querying (random, best-of-n)
            are evaluated with FKC tilted by their own surrogate, so that the comparison measures
            what their queries taught the surrogate.
        batch: how the top slots of a round are filled: top | lineage | kcenter.
        tilt_member: ``mean``: the sampler is tilted by the ensemble mean; ``thompson``: each
            round by one ensemble member drawn at random (the evaluation always by the mean).
        lam_ramp_queries: the tilt grows linearly with the number of answers and reaches
            ``lam_max`` at this many; None = ``lam_max`` from round 1 on.
        explore_from: where eps-greedy's exploring questions come from
            (:data:`prefalign.loop.selectors.EXPLORE_ARMS`: ``tilted``, ``base``,
            ``information``).
        pairing: who joins each lead in a ``pairwise`` or ``best-of-K`` question:
            ``top-random`` or ``uncertain`` (:mod:`prefalign.pairing`); unused by other forms.
        learner: what each round learns from the answers
            (:data:`prefalign.loop.learners.LEARNERS`: a reward model that tilts the sampler,
            or a fine-tuned copy of the base model that is sampled plainly).
    """

    name: str
    sampler: SamplerConfig
    selection: str = "eps_greedy"
    score: str = "fk_weight"
    epsilon: float | None = None
    kappa: float = 1.0
    cold_start_queries: int | None = None
    eval_sampler: SamplerConfig | None = None
    batch: str = "top"
    tilt_member: str = "mean"
    lam_ramp_queries: int | None = None
    explore_from: str = "tilted"
    pairing: str = "top-random"
    learner: str = "surrogate"

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(
                f"method {self.name!r}: pairing must be one of {', '.join(PAIRINGS)}; "
                f"got {self.pairing!r}"
            )


@dataclass(frozen=True)
class CampaignSpec:
    """Everything one campaign needs; written as ``spec.json`` by ``prefalign spec``."""

    domain: str
    method: MethodSpec
    seed: int
    budget: int  # total oracle queries
    k: int  # queries per round
    n_particles: int  # particles sampled per round
    oracle: list[str]  # argv of the oracle command (the workflow appends QUERIES REWARDS)
    surrogate: SurrogateConfig
    domain_options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the config's name for this domain set-up (default: domain)
    true_reward: str | None = None  # tilt by this built-in user's exact reward (an upper bound)
    oracle_timeout_s: float | None = None
    eval_oracle: list[str] | None = None  # argv of an independent evaluator of the final samples
    oracle_in_evaluation: bool = True  # false: only eval_oracle scores them (e.g. for a person)
    eval_particles: int = 512
    reward_threshold: float = 0.5  # "the user is satisfied" level, for success rates
    device: str = "cpu"
    torch_threads: int = 1
    form: str = (
        "rate"  # the question form (prefalign.io.feedback): rate | binary | pairwise | best-of-K
    )
    # how the base model is fine-tuned: by the online learners, and to distil the aligned sampler
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    # the sampler the user takes home: its potential, the frontier's tilts, the trusted tilt
    final_tilt: FinalTilt = field(default_factory=FinalTilt)
    # the population prior's checkpoint directory (learner `population`: a held-out user of a
    # population, prefalign.learning.population); None for every other campaign
    prior: str | None = None

    def __post_init__(self) -> None:
        parse_form(self.form)  # a ValueError naming the valid forms
        if self.k < 1 or self.budget < self.k:
            raise ValueError(f"need 1 <= k <= budget; got k={self.k}, budget={self.budget}")
        if self.budget % self.k:
            raise ValueError(f"budget ({self.budget}) must be a multiple of k ({self.k})")
        shown = self.k * self.items_per_question
        if self.n_particles < shown:
            raise ValueError(
                f"n_particles ({self.n_particles}) must be >= the items a round shows "
                f"(k = {self.k} questions x {self.items_per_question})"
            )
        if not self.oracle:
            raise ValueError("oracle must be a non-empty argv list")

    @property
    def name(self) -> str:
        """``label/method/seed``."""
        return f"{self.label or self.domain}/{self.method.name}/{self.seed}"

    @property
    def rounds(self) -> int:
        """Number of rounds, budget / k (the non-adaptive baseline: a single round)."""
        if self.method.cold_start_queries is not None:
            rest = self.budget - self.method.cold_start_queries
            return 1 + rest // self.k
        return self.budget // self.k

    @property
    def items_per_question(self) -> int:
        """Items a question shows: 1 (rate, binary), 2 (pairwise), K (best-of-K)."""
        return parse_form(self.form).items

    def queries_in_round(self, r: int) -> int:
        """Queries (questions: units of budget) asked in round ``r``."""
        if r == 0 and self.method.cold_start_queries is not None:
            return self.method.cold_start_queries
        return self.k

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        d = asdict(self)
        d["method"]["sampler"] = self.method.sampler.to_dict()
        if self.method.eval_sampler is not None:
            d["method"]["eval_sampler"] = self.method.eval_sampler.to_dict()
        d["surrogate"] = self.surrogate.to_dict()
        d["finetune"] = self.finetune.to_dict()
        d["final_tilt"] = self.final_tilt.to_dict()
        if d["prior"] is None:  # the spec.json of a campaign without a prior stays as it was
            del d["prior"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignSpec:
        """Build from the plain form, rejecting unknown keys by name."""
        data = dict(data)
        _reject_unknown(cls, data, "campaign spec")
        method = dict(data.pop("method"))
        _reject_unknown(MethodSpec, method, "method")
        method["sampler"] = SamplerConfig.from_dict(method["sampler"])
        if method.get("eval_sampler") is not None:
            method["eval_sampler"] = SamplerConfig.from_dict(method["eval_sampler"])
        data["method"] = MethodSpec(**method)
        data["surrogate"] = SurrogateConfig.from_dict(data["surrogate"])
        data["finetune"] = FinetuneSettings.from_dict(data.get("finetune"))
        data["final_tilt"] = FinalTilt.from_dict(data.get("final_tilt"))
        return cls(**data)
