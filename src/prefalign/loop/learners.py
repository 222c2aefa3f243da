"""What a round learns from the answers, and what it then samples: the learners.

A method's ``learner`` is resolved once (:func:`learner_for`) into one of :data:`LEARNERS`:

- ``surrogate`` (:class:`SurrogateLearner`): a reward model (an MLP/CNN ensemble or a Gaussian
  process, :mod:`prefalign.learning`) fitted on every answer so far; the rounds sample the
  method's sampler tilted by it (by its mean, or by one ensemble member drawn for the round:
  ``tilt_member: thompson``; with ``lam_ramp_queries`` the tilt grows with the answers), and the
  user takes home that sampler tilted by the final tilt's potential (``mean - pessimism std``)
  at every tilt of the frontier.
- ``population`` (:class:`PopulationLearner`): the same, for a held-out user of a population,
  started from the prior fitted on the training users (:mod:`prefalign.learning.population`);
  its first questions are those the prior learns most from.
- ``papa`` and ``d3po`` (:class:`FinetuneLearner`): the base model fine-tuned on the answers
  (PAPA, arXiv 2607.00486: denoising score matching on the liked items; D3PO, the Diffusion-DPO
  loss on the answered pairs), from the base weights each round, sampled plainly; their
  questions are random samples of it.

A new learner is one class here and one entry of :data:`LEARNERS`: ``check`` (what it needs of
the campaign), ``fit`` (a round's learning step, files to files), ``load``, ``proposal`` (what
round r samples) and ``final_proposal`` (what the user takes home).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from prefalign.loop.draws import Proposal, base_proposal, campaign_domain, untilted
from prefalign.registry import named
from prefalign.runtime import numpy_rng, resolve_device
from prefalign.settings import VARIANTS, SamplerConfig

if TYPE_CHECKING:
    import pandas as pd

    from prefalign.domains.base import Domain
    from prefalign.learning.surrogate import Surrogate
    from prefalign.loop.campaign_settings import CampaignSpec

#: How a surrogate learner's rounds tilt: by the ensemble mean, or by one member per round.
TILT_MEMBERS: tuple[str, ...] = ("mean", "thompson")


class Learner:
    """The learning step of a method, and the sampler it leaves (see the module docstring)."""

    name: ClassVar[str]
    #: a reward model that tilts the sampler and ranks the particles; false: a fine-tuned model,
    #: sampled plainly and asked about at random
    learns_reward: ClassVar[bool]
    #: starts from a population prior (``CampaignSpec.prior``) instead of from nothing
    uses_prior: ClassVar[bool] = False

    def check(self, spec: CampaignSpec) -> None:
        """Raise ValueError naming the setting when the campaign cannot use this learner."""

    def evaluation_sampler(
        self, sampler: SamplerConfig, domain_sampler: dict
    ) -> SamplerConfig | None:
        """The sampler the final evaluation uses instead of the rounds' (None: the same)."""
        return None

    def fit(
        self,
        spec: CampaignSpec,
        round_: int,
        observations: Any,
        previous: Any,
        out: Any,
        *,
        progress: bool = False,
    ) -> dict:
        """Learn from the observations of rounds ``0..round_`` (starting from ``previous``, the
        last round's, where the learner warm-starts) and save what was learnt in ``out``;
        returns the fit's record."""
        raise NotImplementedError

    def load(self, spec: CampaignSpec, domain: Domain, learnt: Any) -> Any:
        """What ``fit`` saved in ``learnt``."""
        raise NotImplementedError

    def initial(self, spec: CampaignSpec) -> str | None:
        """What round 0 knows before any answer, in the form ``fit`` saves (None: nothing; round
        0 then asks about random base samples)."""
        return None

    def proposal(self, spec: CampaignSpec, domain: Domain, learnt: Any, round_: int) -> Proposal:
        """What round ``round_`` samples, given what was learnt (None in round 0)."""
        raise NotImplementedError

    def final_sampler(self, spec: CampaignSpec, lam: float | None = None) -> SamplerConfig:
        """The settings of the sampler the user takes home (at tilt ``lam`` when given)."""
        return spec.method.sampler

    def final_proposal(
        self, spec: CampaignSpec, domain: Domain, learnt: Any, config: SamplerConfig
    ) -> Proposal:
        """The sampler the user takes home, with settings ``config`` (:meth:`final_sampler`)."""
        raise NotImplementedError

    def surrogate(self, learnt: Any) -> Surrogate | None:
        """The reward model among what was learnt, for predictions (None: there is none)."""
        return None

    def frontier(self, spec: CampaignSpec) -> tuple[float, ...]:
        """The tilts the final evaluation sweeps (empty: one evaluation)."""
        return ()


class SurrogateLearner(Learner):
    """A reward model fitted on the answers, tilting the method's sampler."""

    name = "surrogate"
    learns_reward = True

    def check(self, spec: CampaignSpec) -> None:
        method = spec.method
        if method.tilt_member not in TILT_MEMBERS:
            raise ValueError(
                f"method {method.name!r}: tilt_member must be one of {', '.join(TILT_MEMBERS)}; "
                f"got {method.tilt_member!r}"
            )
        if method.tilt_member == "thompson" and spec.surrogate.ensemble < 2:
            raise ValueError(
                f"method {method.name!r}: tilt_member 'thompson' needs an ensemble surrogate "
                f"(surrogate.ensemble >= 2); got {spec.surrogate.ensemble}"
            )
        if method.lam_ramp_queries is not None and method.lam_ramp_queries < 1:
            raise ValueError(f"method {method.name!r}: lam_ramp_queries must be >= 1 or null")

    def evaluation_sampler(
        self, sampler: SamplerConfig, domain_sampler: dict
    ) -> SamplerConfig | None:
        # methods that query base samples are judged by FKC tilted by their own surrogate, so
        # that the comparison measures what their queries taught the surrogate
        if VARIANTS[sampler.variant].tilted:
            return None
        return SamplerConfig.from_dict({**domain_sampler, "variant": "fkc"})

    def fit(self, spec, round_, observations, previous, out, *, progress=False) -> dict:
        import torch

        from prefalign.io.observations import observations_xy, read_observations
        from prefalign.learning.checkpoint import load_surrogate, save_surrogate
        from prefalign.learning.surrogate import fit, training_set_hash

        torch.set_num_threads(spec.torch_threads)
        df, shape = read_observations(observations)
        x, y = observations_xy(df, shape)
        form, questions = str(df["form"].iloc[0]), df["question"].to_numpy(str)
        init = load_surrogate(previous) if previous else None
        domain = campaign_domain(spec) if spec.surrogate.noise_train else None
        surrogate, report = fit(
            x,
            y,
            spec.surrogate,
            seed=int(numpy_rng(spec.seed, round_, "fit").integers(2**31)),
            init=init,
            sde=domain.sde if domain is not None else None,
            progress=progress,
            form=form,
            questions=questions,
            device=resolve_device(spec.device),
        )
        save_surrogate(
            surrogate,
            out,
            config=spec.surrogate,
            report=report,
            training_set_hash=training_set_hash(x, y, form, questions),
        )
        return report.to_dict()

    def load(self, spec, domain, learnt):
        from prefalign.learning.checkpoint import load_surrogate

        return load_surrogate(learnt)

    def surrogate(self, learnt):
        return learnt

    def frontier(self, spec):
        return spec.final_tilt.lams

    def round_sampler(self, spec: CampaignSpec, round_: int) -> SamplerConfig:
        """Round ``round_``'s sampler: the method's, its tilt scaled by the answers seen so far
        when ``lam_ramp_queries`` is set."""
        config, ramp = spec.method.sampler, spec.method.lam_ramp_queries
        if ramp is None:
            return config
        answers = sum(spec.queries_in_round(r) for r in range(round_))
        return replace(config, lam_max=config.lam_max * min(1.0, answers / ramp))

    def proposal(self, spec, domain, learnt, round_):
        if learnt is None or not VARIANTS[spec.method.sampler.variant].tilted:
            return base_proposal(domain, spec.method.sampler)
        config = self.round_sampler(spec, round_)
        return self._tilted(spec, domain, learnt, config, round_=round_)

    def final_sampler(self, spec, lam=None):
        sampler = spec.method.eval_sampler or spec.method.sampler
        return sampler if lam is None else replace(sampler, lam_max=lam)

    def final_proposal(self, spec, domain, learnt, config):
        if not VARIANTS[config.variant].tilted:
            return base_proposal(domain, config)
        return self._tilted(spec, domain, learnt, config, round_=None)

    def _tilted(
        self,
        spec: CampaignSpec,
        domain: Domain,
        surrogate: Surrogate,
        config: SamplerConfig,
        *,
        round_: int | None,
    ) -> Proposal:
        """``config`` tilted by the surrogate: while querying (``round_`` given) by its mean or
        the round's Thompson member, at the end (``round_`` None) by the final tilt's potential
        (the mean, or ``mean - pessimism std``; rounds tilted by the pessimistic potential were
        measured on thick-3 and taught the final sampler less: docs/bayesian-questions.md);
        the upper bound ``true_reward`` by the user's exact reward."""
        reward = None
        if config.tilted:
            if spec.true_reward:
                preference = domain.oracle(spec.true_reward)
                if not hasattr(preference, "torch"):
                    raise ValueError(
                        f"user {spec.true_reward!r} of {spec.domain} is not differentiable"
                    )
                reward = preference.torch
            else:
                reward = surrogate.to(resolve_device(spec.device)).eval()
                if round_ is not None and spec.method.tilt_member == "thompson":
                    reward = _thompson_member(surrogate, spec, round_)
                elif round_ is None:
                    from prefalign.learning.potential import tilt_potential

                    reward = tilt_potential(reward, spec.final_tilt.pessimism)
        return Proposal(domain.score, domain.sde, tuple(domain.event_shape), config, reward)


class PopulationLearner(SurrogateLearner):
    """A held-out user's reward model started from the population prior fitted on the training
    users (:mod:`prefalign.learning.population`): round 0 asks the base samples whose answers
    teach the most under the prior (:func:`prefalign.learning.information.information_batch`),
    each later round conditions the prior on every answer so far and tilts as
    :class:`SurrogateLearner` does."""

    name = "population"
    uses_prior = True

    def check(self, spec: CampaignSpec) -> None:
        super().check(spec)
        method = spec.method
        if spec.prior is None:
            raise ValueError(
                f"method {method.name!r}: learner 'population' starts from a population prior: "
                f"run it on a population's held-out users (`populations:` in the config); "
                f"domain {spec.label or spec.domain!r} has no prior"
            )
        if spec.form != "rate" or method.tilt_member != "mean":
            raise ValueError(
                f"method {method.name!r}: learner 'population' models ratings (form 'rate') and "
                f"tilts by its mean; got form {spec.form!r}, tilt_member {method.tilt_member!r}"
            )

    def initial(self, spec):
        return spec.prior

    def fit(self, spec, round_, observations, previous, out, *, progress=False) -> dict:
        import time

        import torch

        from prefalign.io.observations import observations_xy, read_observations
        from prefalign.learning.checkpoint import load_surrogate, save_population

        start = time.perf_counter()
        torch.set_num_threads(spec.torch_threads)
        df, shape = read_observations(observations)
        x, y = observations_xy(df, shape)
        prior = load_surrogate(spec.prior)
        model = prior.conditioned(x, y)
        report = {
            "epochs": 0,
            "final_loss": None,
            "seconds": time.perf_counter() - start,
            "n_examples": len(y),
            "warm_started": False,
            "prior": str(spec.prior),
        }
        save_population(model, out, report=report)
        return report

    def proposal(self, spec, domain, learnt, round_):
        if round_ == 0:  # the prior chooses among base samples; it does not tilt them
            return base_proposal(domain, spec.method.sampler)
        return super().proposal(spec, domain, learnt, round_)


def _thompson_member(surrogate: Surrogate, spec: CampaignSpec, round_: int):
    """The reward of one ensemble member, drawn for the round from the campaign's seed."""
    member = int(numpy_rng(spec.seed, round_, "thompson").integers(surrogate.config.ensemble))
    return lambda x: surrogate.members(x)[member]


class FinetuneLearner(Learner):
    """The base model fine-tuned on the answers so far, sampled plainly (:attr:`form`: the
    questions it learns from)."""

    learns_reward = False
    form: ClassVar[str]

    def check(self, spec: CampaignSpec) -> None:
        from prefalign.acquisition import rule

        method = spec.method
        if VARIANTS[method.sampler.variant].tilted or rule(method.selection).greedy:
            raise ValueError(
                f"method {method.name!r}: learner {self.name!r} samples its fine-tuned model "
                "plainly and asks about random samples of it: it needs sampler.variant 'base' "
                f"and selection 'random' (got {method.sampler.variant!r}, {method.selection!r})"
            )
        if spec.form != self.form:
            raise ValueError(
                f"method {method.name!r}: learner {self.name!r} learns from {self.form!r} "
                f"questions; the campaign asks {spec.form!r} (set form: {self.form})"
            )

    def examples(self, x: np.ndarray, y: np.ndarray, df: pd.DataFrame) -> tuple[np.ndarray, ...]:
        """What the model is fine-tuned on, from the observations (first axis: examples)."""
        raise NotImplementedError

    def train(self, base, examples: tuple[np.ndarray, ...], settings, progress: bool):
        """Fine-tune ``base`` (its UNet and schedule) on ``examples``: ``(unet, report)``."""
        raise NotImplementedError

    def fit(self, spec, round_, observations, previous, out, *, progress=False) -> dict:
        import torch

        from prefalign.finetune.model_dir import FINETUNE_FILE, save_finetuned
        from prefalign.io.observations import observations_xy, read_observations

        torch.set_num_threads(spec.torch_threads)
        base = base_noise_model(campaign_domain(spec))
        df, shape = read_observations(observations)
        x, y = observations_xy(df, shape)
        settings = replace(
            spec.finetune, seed=int(numpy_rng(spec.seed, round_, "finetune").integers(2**31))
        )
        examples = self.examples(x, y, df)
        n_examples = len(examples[0])
        tuned, report = base.unet, None
        if n_examples:  # until a first like (or untied pair) the model is the base model
            tuned, report = self.train(base, examples, settings, progress)
        seconds = report.seconds if report is not None else 0.0
        earlier = 0.0
        if previous:
            record = json.loads((Path(previous) / FINETUNE_FILE).read_text())
            earlier = float(record["cumulative_seconds"])
        record = {
            "mode": settings.mode,
            "t_split": settings.t_split,
            "learner": self.name,
            "round": round_,
            "n_observations": len(df),
            "n_examples": n_examples,
            "settings": settings.to_dict(),
            "training": report.to_dict() if report is not None else None,
            "trained_parameters": report.trained_parameters if report is not None else 0,
            "seconds": seconds,
            "cumulative_seconds": earlier + seconds,
        }
        save_finetuned(out, tuned, base.unet, base.schedule, record)
        return record

    def load(self, spec, domain, learnt):
        from prefalign.finetune.model_dir import load_finetuned

        model = load_finetuned(learnt, resolve_device(spec.device))
        model.event_shape = domain.event_shape
        return model

    def proposal(self, spec, domain, learnt, round_):
        if learnt is None:
            return base_proposal(domain, spec.method.sampler)
        return self.final_proposal(spec, domain, learnt, spec.method.sampler)

    def final_proposal(self, spec, domain, learnt, config):
        return model_proposal(learnt, config)


def model_proposal(model, config: SamplerConfig) -> Proposal:
    """Plain (untilted) samples of a fine-tuned ``model`` with the sampling steps of ``config``."""
    return Proposal(model.score, model.sde, tuple(model.event_shape), untilted(config))


class PapaLearner(FinetuneLearner):
    """PAPA: denoising score matching on the items answered ``like``."""

    name = "papa"
    form = "binary"

    def examples(self, x, y, df):
        return (liked_items(x, y),)

    def train(self, base, examples, settings, progress):
        import torch

        from prefalign.finetune.train import denoising_fit

        (liked,) = examples
        return denoising_fit(
            base.unet, base.schedule, torch.from_numpy(liked), None, settings, progress=progress
        )


class D3poLearner(FinetuneLearner):
    """D3PO: the Diffusion-DPO loss on each answered pair, against the base model."""

    name = "d3po"
    form = "pairwise"

    def examples(self, x, y, df):
        return answered_pairs(x, y, df["question"].to_numpy(str))

    def train(self, base, examples, settings, progress):
        import torch

        from prefalign.finetune.train import preference_fit

        winners, losers = examples
        return preference_fit(
            base.unet,
            base.schedule,
            torch.from_numpy(winners),
            torch.from_numpy(losers),
            settings,
            progress=progress,
        )


#: The learners by name (a method's ``learner``); an unknown name lists these.
LEARNERS: dict[str, Learner] = {
    learner.name: learner
    for learner in (SurrogateLearner(), PopulationLearner(), PapaLearner(), D3poLearner())
}


def learner_for(name: str) -> Learner:
    """The learner called ``name``.

    Raises:
        ValueError: no such learner (the message lists the valid ones).
    """
    return named(LEARNERS, "learner", name)


def base_noise_model(domain):
    """The domain's base noise-prediction network with its schedule (``domain.noise_model``).

    Raises:
        ValueError: the domain's base model is not a network (mixture2d: the exact mixture).
    """
    model = getattr(domain, "noise_model", None)
    if model is None:
        raise ValueError(
            f"domain {domain.name!r} has no base network to fine-tune (its score is exact); "
            "fine-tuning works on the domains with a diffusers model (digits, pretrained)"
        )
    return model


def liked_items(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The items answered ``like`` (reward >= 1/2) of binary observations."""
    return x[y >= 0.5]


def answered_pairs(x: np.ndarray, y: np.ndarray, questions: np.ndarray):
    """``(winners, losers)`` of pairwise observations: per question the item with reward 1 and
    the one with 0 (ties, 0.5 each, are left out)."""
    winners, losers = [], []
    for q in dict.fromkeys(questions.tolist()):
        items = np.flatnonzero(questions == q)
        if len(items) != 2 or y[items[0]] == y[items[1]]:
            continue
        w, l = (items[0], items[1]) if y[items[0]] > y[items[1]] else (items[1], items[0])
        winners.append(x[w])
        losers.append(x[l])
    shape = x.shape[1:]
    if not winners:
        return np.empty((0, *shape), np.float32), np.empty((0, *shape), np.float32)
    return np.stack(winners), np.stack(losers)


def used_tilt(learner: Learner, config: SamplerConfig) -> float:
    """The tilt a final evaluation used: ``lam_max`` for a reward learner, NaN otherwise."""
    return config.lam_max if learner.learns_reward else math.nan
