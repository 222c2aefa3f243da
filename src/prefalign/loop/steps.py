"""The steps of one active-learning round, each a function of files to files.

``sample -> select -> oracle -> observe -> fit`` (``shared/docs/design.md``, "Data flow of one
campaign"). Round 0 is the cold start: base samples, queries drawn at random. Every random draw
comes from a generator seeded by (campaign seed, round, step), so reruns are exact.

:func:`propose_round` runs the previous round's fit, this round's sampling and the selection in one
process (the workflow's ``propose`` job: torch starts once per round); the final evaluation is in
:mod:`prefalign.loop.evaluation`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from prefalign import acquisition, pairing
from prefalign.io.atomic import atomic_path, write_text
from prefalign.io.observations import (
    append_round,
    new_round_frame,
    observations_xy,
    read_observations,
    write_observations,
)
from prefalign.io.oracle_command import run_oracle
from prefalign.io.queries import read_answers, read_questions, write_queries
from prefalign.loop.spec import CampaignSpec
from prefalign.runtime import numpy_rng, resolve_device, torch_generator
from prefalign.settings import SamplerConfig

# select, oracle and observe never import torch: each is its own short-lived process, and torch's
# import would dominate their run time. The sampling and fitting steps import it when they run.
if TYPE_CHECKING:
    import torch

    from prefalign.domains.base import Domain
    from prefalign.learning.surrogate import Surrogate
    from prefalign.sampling import SampleResult

PathLike = str | os.PathLike[str]
#: Runs an oracle argv on a queries file: ``run_oracle``'s signature and result.
OracleRunner = Callable[..., pd.Series]


def _atomic_savez(path: PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


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


def draw_particles(
    spec: CampaignSpec,
    domain: Domain,
    surrogate: Surrogate | None,
    n: int,
    round_: int,
    step: str,
    *,
    explore: bool = True,
    progress: bool = False,
    base_draws: BaseDrawCache | None = None,
) -> SampleResult:
    """Sample ``n`` particles with the method's sampler tilted by ``surrogate`` (base if None).

    While querying (``explore``), a ``thompson`` method tilts by one ensemble member drawn for
    the round, and ``lam_ramp_queries`` scales the tilt by the answers seen so far; the final
    evaluation (``explore=False``) tilts by the final tilt's potential (the mean, or ``mean -
    pessimism std``) at ``lam_max``. (Rounds tilted by the pessimistic potential were measured on
    thick-3 and taught the final sampler less: docs/bayesian-questions.md.) With
    ``base_draws``, a draw of the base model is taken from (or stored in) that cache.
    """
    from prefalign.sampling import sample

    device = resolve_device(spec.device)
    config = spec.method.sampler
    if surrogate is None or config.variant == "base":
        config = SamplerConfig.from_dict({**config.to_dict(), "variant": "base"})
        if base_draws is not None:
            key = json.dumps(
                [spec.domain, spec.domain_options, spec.seed, spec.device, n, round_, step]
                + [config.to_dict()],
                sort_keys=True,
            )
            draw = functools.partial(
                draw_particles, spec, domain, None, n, round_, step, progress=progress
            )
            return base_draws.get(key, draw)
    elif explore and spec.method.lam_ramp_queries is not None:
        answers = sum(spec.queries_in_round(r) for r in range(round_))
        share = min(1.0, answers / spec.method.lam_ramp_queries)
        config = replace(config, lam_max=config.lam_max * share)
    reward = None
    if surrogate is not None and config.tilted:
        if spec.true_reward:  # the upper bound: FKC with the user's exact, differentiable reward
            preference = domain.oracle(spec.true_reward)
            if not hasattr(preference, "torch"):
                raise ValueError(
                    f"user {spec.true_reward!r} of {spec.domain} is not differentiable"
                )
            reward = preference.torch
        else:
            reward = surrogate.to(device).eval()
            if explore and spec.method.tilt_member == "thompson":
                reward = _thompson_member(surrogate, spec, round_)
            elif not explore:  # the sampler the user takes home: the final tilt's potential
                from prefalign.learning.potential import tilt_potential

                reward = tilt_potential(reward, spec.final_tilt.pessimism)
    return sample(
        domain.score,
        domain.sde,
        n,
        tuple(domain.event_shape),
        reward=reward,
        config=config,
        generator=torch_generator(spec.seed, round_, step, device),
        device=device,
        progress=progress,
    )


def explore_particles(spec: CampaignSpec, round_: int) -> int:
    """Base particles drawn beside the tilted ones in round ``round_`` (``explore_from: base`` or
    ``information``):
    ``base_share`` of N from round 1 on, none in round 0 (all base) or for other methods."""
    method = spec.method
    if (
        round_ == 0
        or method.explore_from == "tilted"
        or method.selection != "eps_greedy"
        or method.sampler.variant == "base"
    ):
        return 0
    return min(spec.n_particles - spec.k, max(spec.k, round(method.base_share * spec.n_particles)))


def _thompson_member(surrogate: Surrogate, spec: CampaignSpec, round_: int):
    """The reward of one ensemble member, drawn for the round from the campaign's seed."""
    n_members = surrogate.config.ensemble
    if n_members < 2:
        raise ValueError(
            f"method {spec.method.name!r}: tilt_member 'thompson' needs an ensemble surrogate "
            f"(surrogate.ensemble >= 2); got {n_members}"
        )
    member = int(numpy_rng(spec.seed, round_, "thompson").integers(n_members))
    return lambda x: surrogate.members(x)[member]


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


def sample_round(
    spec: CampaignSpec,
    round_: int,
    surrogate_dir: PathLike | None,
    out: PathLike,
    *,
    progress: bool = False,
    base_draws: BaseDrawCache | None = None,
) -> dict:
    """Step 1: sample N particles (round 0: the base model) and write ``particles.npz``.

    The file holds ``x`` (N, *shape), ``fk_log_weight`` (FK path log-weights), ``log_weight``,
    ``surrogate_pred`` and ``surrogate_std`` (NaN without a surrogate), and ``ess`` per step;
    for a campaign whose questions show several items also ``surrogate_utilities`` (E, N), each
    ensemble member's utility of each particle (:mod:`prefalign.pairing`). Returns the run's
    statistics (also written as JSON beside it).
    """
    import torch

    from prefalign.learning.checkpoint import load_surrogate

    torch.set_num_threads(spec.torch_threads)
    domain = campaign_domain(spec)
    learnt = None if round_ == 0 or surrogate_dir is None else surrogate_dir
    surrogate = None
    n_base = explore_particles(spec, round_)
    start = time.perf_counter()
    if learnt is not None and spec.method.learner != "surrogate":
        # a fine-tuning learner: plain samples of the model fitted on the answers so far
        from prefalign.finetune.model_dir import load_finetuned
        from prefalign.loop.finetuning import sample_model

        model = load_finetuned(learnt, resolve_device(spec.device))
        model.event_shape = domain.event_shape
        result = sample_model(spec, model, spec.n_particles, round_, "sample", progress=progress)
    else:
        surrogate = None if learnt is None else load_surrogate(learnt)
        result = draw_particles(
            spec,
            domain,
            surrogate,
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
    proposal = np.zeros(len(x), dtype=np.int8)
    n_base_evals = 0
    if n_base:  # the exploration arm: base samples, ranked by the surrogate at selection
        base = draw_particles(
            spec, domain, None, n_base, round_, "sample-base", base_draws=base_draws
        )
        n_base_evals = base.n_score_evals
        x = torch.cat([x, base.x.detach().cpu().float()])
        fk = np.concatenate([fk, np.full(n_base, np.nan)])
        logw = np.concatenate([logw, np.zeros(n_base)])
        ancestor = np.concatenate([ancestor, len(ancestor) + np.arange(n_base)])
        proposal = np.concatenate([proposal, np.ones(n_base, dtype=np.int8)])
    seconds = time.perf_counter() - start
    device = resolve_device(spec.device)
    pred, std = _predict(surrogate, x, device)
    extra = {}
    if surrogate is not None and spec.items_per_question > 1:  # pairing by uncertainty
        with torch.no_grad():
            utilities = surrogate.to(device).eval().standardised_members(x.float().to(device))
        extra["surrogate_utilities"] = utilities.cpu().numpy().astype(np.float64)
    _atomic_savez(
        out,
        x=x.numpy(),
        fk_log_weight=fk,
        log_weight=logw,
        surrogate_pred=pred,
        surrogate_std=std,
        ess=result.ess.cpu().numpy(),
        ancestor=ancestor,
        proposal=proposal,
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


def select_round(
    spec: CampaignSpec,
    round_: int,
    particles: PathLike,
    queries_out: PathLike,
    selection_out: PathLike,
    surrogate_dir: PathLike | None = None,
) -> pd.DataFrame:
    """Step 2: choose the round's queries; write ``queries.npz`` (id, x) for the oracle and
    ``selection.csv`` (id, index, selected_by, fk_log_weight, surrogate_pred) for ``observe``.
    ``surrogate_dir``: the round's surrogate, for a method that asks what it does not know
    (``explore_from: information``).
    """
    with np.load(particles, allow_pickle=False) as data:
        x, fk = data["x"], data["fk_log_weight"]
        pred, std = data["surrogate_pred"], data["surrogate_std"]
        lineage = data["ancestor"] if "ancestor" in data.files else np.arange(len(x))
        proposal = data["proposal"] if "proposal" in data.files else np.zeros(len(x), np.int8)
    k = spec.queries_in_round(round_)
    method = spec.method
    rng = numpy_rng(spec.seed, round_, "select")
    size = spec.items_per_question
    if (round_ == 0 or method.learner != "surrogate") and size > 1:
        groups = pairing.random_questions(x, k, size, rng)
        chosen = acquisition.Selection(indices=groups.indices, selected_by=groups.selected_by)
        question = groups.question
    else:
        scores = (
            None if round_ == 0 else {"fk_weight": fk, "surrogate": pred, "ucb": pred}[method.score]
        )
        informer = None
        if round_ > 0 and method.explore_from == "information":
            if surrogate_dir is None:
                raise ValueError(
                    f"method {method.name!r} chooses questions by information: select_round "
                    "needs the round's surrogate (surrogate_dir)"
                )
            from prefalign.learning.checkpoint import load_surrogate

            informer = load_surrogate(surrogate_dir)
        chosen = _leads(spec, round_, x, scores, pred, std, lineage, proposal, k, rng, informer)
        question = np.arange(k, dtype=np.int64)
        if size > 1:
            with np.load(particles, allow_pickle=False) as data:
                utilities = (
                    data["surrogate_utilities"] if "surrogate_utilities" in data.files else None
                )
            groups = pairing.compose_questions(
                method.pairing, chosen, x, scores, size, rng, utilities=utilities, pool=method.pool
            )
            chosen = acquisition.Selection(indices=groups.indices, selected_by=groups.selected_by)
            question = groups.question
    # shown in random order, so that a person cannot tell the top picks from the random ones
    # (a question's items too: which one is the lead is not shown by its place)
    order = _shuffled_questions(question, rng)
    idx, selected_by = chosen.indices[order], chosen.selected_by[order]
    ids = [f"r{round_:03d}-p{int(i):05d}" for i in idx]
    questions = None
    if size > 1:
        number = {q: j for j, q in enumerate(dict.fromkeys(question[order].tolist()))}
        questions = [f"r{round_:03d}-q{number[q]:02d}" for q in question[order].tolist()]
    write_queries(queries_out, ids, x[idx], form=spec.form, questions=questions)
    table = pd.DataFrame(
        {
            "id": ids,
            "index": idx.astype(np.int64),
            "selected_by": selected_by.astype(str),
            "fk_log_weight": fk[idx].astype(np.float64),
            "surrogate_pred": pred[idx].astype(np.float64),
        }
    )
    if questions is not None:
        table["question"] = questions
    write_text(selection_out, table.to_csv(index=False, float_format="%.17g"))
    return table


def _shuffled_questions(question: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of the items that keeps each question's items together: the questions in
    random order, and within a question of several items its items too."""
    if len(np.unique(question)) == len(question):  # one item per question: as it always was
        return rng.permutation(len(question))
    numbers = np.unique(question)
    order = []
    for q in rng.permutation(numbers):
        items = np.flatnonzero(question == q)
        order.extend(items[rng.permutation(len(items))].tolist())
    return np.asarray(order, dtype=np.int64)


def _leads(
    spec: CampaignSpec,
    round_: int,
    x: np.ndarray,
    scores: np.ndarray | None,
    pred: np.ndarray,
    std: np.ndarray,
    lineage: np.ndarray,
    proposal: np.ndarray,
    k: int,
    rng: np.random.Generator,
    informer: Surrogate | None = None,
) -> acquisition.Selection:
    """The method's ``k`` picks of the round (one per question): random in round 0.
    ``informer``: the surrogate whose uncertainty chooses the exploring picks
    (``explore_from: information``)."""
    method = spec.method
    if round_ == 0 or scores is None:
        return acquisition.select("random", np.zeros(len(x)), k, rng, x=x)
    kwargs: dict = {}
    if method.selection == "eps_greedy":
        kwargs["epsilon"] = (
            method.epsilon
            if method.epsilon is not None
            else acquisition.eps_greedy_epsilon(round_, spec.rounds)
        )
    if method.selection == "ucb":
        kwargs.update(ucb_std=std, kappa=method.kappa)
    if proposal.any():
        return _select_tilted_and_base(
            spec, round_, x, scores, pred, lineage, proposal, k, rng, kwargs, informer
        )
    return acquisition.select(
        method.selection,
        scores,
        k,
        rng,
        x=x,
        batch=method.batch,
        lineage=lineage,
        min_distance=method.min_distance,
        pool=method.pool,
        **kwargs,
    )


def _select_tilted_and_base(
    spec: CampaignSpec,
    round_: int,
    x: np.ndarray,
    scores: np.ndarray,
    pred: np.ndarray,
    lineage: np.ndarray,
    proposal: np.ndarray,
    k: int,
    rng: np.random.Generator,
    kwargs: dict,
    informer: Surrogate | None = None,
) -> acquisition.Selection:
    """``explore_from: base``: the exploration share of the round's questions (``floor(eps k)``
    of eps-greedy) are the base particles the surrogate ranks highest (best-of-n's questions);
    the rest come from the tilted particles by the method's score and batch rule.
    ``explore_from: information``: the exploration share are the particles, tilted or base,
    whose answers most reduce the surrogate's posterior variance over the tilted particles
    (:func:`prefalign.learning.information.information_batch`), given the top picks."""
    method = spec.method
    n_explore = 0
    if method.selection == "eps_greedy":
        n_explore = acquisition.n_random_picks(kwargs["epsilon"], k)
    tilted, base = np.flatnonzero(proposal == 0), np.flatnonzero(proposal == 1)
    parts, labels = [], []
    if k - n_explore:
        rule = "greedy" if method.selection == "eps_greedy" else method.selection
        extra = {
            key: v[tilted] if isinstance(v, np.ndarray) else v
            for key, v in kwargs.items()
            if key != "epsilon"
        }
        top = acquisition.select(
            rule,
            scores[tilted],
            k - n_explore,
            rng,
            x=x[tilted],
            batch=method.batch,
            lineage=lineage[tilted],
            min_distance=method.min_distance,
            pool=method.pool,
            **extra,
        )
        parts.append(tilted[top.indices])
        labels.append(top.selected_by)
    if n_explore and informer is not None:
        from prefalign.learning.information import information_batch

        top = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        distinct = acquisition.distinct_in_rank_order(x, np.arange(len(x)), method.min_distance)
        candidates = np.setdiff1d(distinct, top)
        picked = information_batch(
            informer, x[candidates], x[tilted], n_explore, pending=x[top] if top.size else None
        )
        parts.append(candidates[picked])
        labels.append(np.full(n_explore, "information"))
    elif n_explore:
        explore = acquisition.select(
            "greedy", pred[base], n_explore, rng, x=x[base], min_distance=method.min_distance
        )
        parts.append(base[explore.indices])
        labels.append(np.full(n_explore, "explore"))
    return acquisition.Selection(
        indices=np.concatenate(parts).astype(np.int64), selected_by=np.concatenate(labels)
    )


def oracle_round(
    spec: CampaignSpec,
    round_: int,
    queries: PathLike,
    rewards_out: PathLike,
    log: PathLike | None = None,
    *,
    runner: OracleRunner = run_oracle,
) -> pd.Series:
    """Step 3: run the oracle command on the queries; the validated rewards land in
    ``rewards_out`` (nothing is written when the oracle fails). The oracle's environment says
    which campaign and round it answers and how much budget is left after this round.
    ``runner``: what runs the command (:func:`~prefalign.io.oracle_command.run_oracle`, or
    :func:`prefalign.oracles.builtin.answer_in_process` for an in-process study)."""
    asked = sum(spec.queries_in_round(r) for r in range(round_ + 1))
    context = {
        "PREFALIGN_CAMPAIGN": spec.name,
        "PREFALIGN_ROUND": str(round_),
        "PREFALIGN_ROUNDS": str(spec.rounds),
        "PREFALIGN_BUDGET_LEFT": str(spec.budget - asked),
    }
    return runner(spec.oracle, queries, rewards_out, spec.oracle_timeout_s, log, context)


def observe_round(
    spec: CampaignSpec,
    round_: int,
    previous: PathLike | None,
    queries: PathLike,
    selection: PathLike,
    rewards: PathLike,
    out: PathLike,
    *,
    plot: PathLike | None = None,
) -> pd.DataFrame:
    """Step 4: validate the answers and append them to the cumulative observation dataset;
    ``plot``: also a picture of the round's queries with their answers."""
    asked = read_questions(queries)
    ids, x = asked.ids, asked.x
    if asked.form != spec.form:
        raise ValueError(
            f"queries file {queries} asks {asked.form!r} questions; campaign {spec.name} asks "
            f"{spec.form!r}"
        )
    answers = read_answers(rewards, asked)
    sel = pd.read_csv(selection, dtype={"id": str}).set_index("id").loc[list(ids)]
    prev = None
    if round_ > 0:
        if previous is None:
            raise ValueError(f"round {round_} needs the observations of round {round_ - 1}")
        prev, _ = read_observations(previous)
    frame = new_round_frame(
        spec.name,
        spec.seed,
        round_,
        list(ids),
        x,
        answers,
        sel["selected_by"].to_numpy(str),
        sel["fk_log_weight"].to_numpy(np.float64),
        sel["surrogate_pred"].to_numpy(np.float64),
        form=asked.form,
        questions=asked.questions.tolist(),
    )
    df = append_round(prev, frame)
    write_observations(df, out, x.shape[1:])
    if plot:
        from prefalign.reporting import render

        render.save_samples(plot, x, answers.to_numpy(), title=f"round {round_} queries")
    return df


def answer_round(
    spec: CampaignSpec,
    round_: int,
    previous: PathLike | None,
    queries: PathLike,
    selection: PathLike,
    rewards_out: PathLike,
    out: PathLike,
    log: PathLike | None = None,
    *,
    plot: PathLike | None = None,
) -> pd.DataFrame:
    """Steps 3 and 4 in one process, for a built-in (simulated) user: :func:`oracle_round`
    answered in process (:func:`prefalign.oracles.builtin.answer_in_process`; any other oracle
    runs as its command), then :func:`observe_round`. The same files as the two steps apart: a
    simulated user's answers are a function of the queries, so keeping the rewards file of a
    round whose observe step failed would save nothing but a second interpreter start."""
    from prefalign.oracles.builtin import answer_in_process

    oracle_round(spec, round_, queries, rewards_out, log, runner=answer_in_process)
    return observe_round(spec, round_, previous, queries, selection, rewards_out, out, plot=plot)


def fit_round(
    spec: CampaignSpec,
    round_: int,
    observations: PathLike,
    previous_surrogate: PathLike | None,
    out: PathLike,
    *,
    progress: bool = False,
) -> dict:
    """Step 5: fit the surrogate on all observations so far (warm-started from the previous
    round's checkpoint when the config asks) and checkpoint it; for a method whose ``learner``
    fine-tunes the base model instead, save that model in ``out``
    (:func:`prefalign.loop.finetuning.fit_learner`)."""
    if spec.method.learner != "surrogate":  # a fine-tuned model instead of a surrogate
        from prefalign.loop.finetuning import fit_learner

        return fit_learner(spec, round_, observations, previous_surrogate, out, progress=progress)
    import torch

    from prefalign.learning.checkpoint import load_surrogate, save_surrogate
    from prefalign.learning.surrogate import fit, training_set_hash

    torch.set_num_threads(spec.torch_threads)
    df, shape = read_observations(observations)
    x, y = observations_xy(df, shape)
    form, questions = str(df["form"].iloc[0]), df["question"].to_numpy(str)
    init = load_surrogate(previous_surrogate) if previous_surrogate else None
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


def propose_round(
    spec: CampaignSpec,
    round_: int,
    observations: PathLike | None,
    previous_surrogate: PathLike | None,
    surrogate_out: PathLike | None,
    particles_out: PathLike,
    queries_out: PathLike,
    selection_out: PathLike,
    *,
    progress: bool = False,
) -> dict:
    """Steps 5, 1 and 2 in one process: fit the surrogate on the observations of rounds
    0..r-1 (``observations``, warm-started from ``previous_surrogate``) into ``surrogate_out``,
    sample round r with it and select the round's queries. Round 0 has nothing to fit: it
    samples the base model. The files are those of :func:`fit_round` (with ``round_ - 1``),
    :func:`sample_round` and :func:`select_round`, byte for byte."""
    fit_report = None
    if round_ > 0:
        if observations is None or surrogate_out is None:
            raise ValueError(
                f"round {round_} needs the observations of round {round_ - 1} and a directory "
                "for the surrogate fitted on them"
            )
        fit_report = fit_round(
            spec, round_ - 1, observations, previous_surrogate, surrogate_out, progress=progress
        )
    sample_stats = sample_round(
        spec, round_, surrogate_out if round_ > 0 else None, particles_out, progress=progress
    )
    table = select_round(
        spec,
        round_,
        particles_out,
        queries_out,
        selection_out,
        surrogate_out if round_ > 0 else None,
    )
    return {"fit": fit_report, "sample": sample_stats, "queries": table["id"].tolist()}
