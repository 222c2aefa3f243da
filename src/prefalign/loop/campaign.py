"""Algorithm 1 of the draft paper ("Budget-Constrained Feynman-Kac Diffusion") in one process.

:func:`run_campaign` runs a campaign's rounds with the same per-round functions the workflow's
jobs call (:mod:`prefalign.loop.steps`: ``sample_round``, ``select_round``, ``oracle_round``,
``observe_round``, ``fit_round``), writing the same files; the workflow
runs each round as DAG stages instead (``propose`` -> ``oracle`` -> ``observe``). Line by line:

============================================================  =====================================
Algorithm 1                                                    here
============================================================  =====================================
Initialize CNN f_θ; total_steps <- B / k                      ``spec.surrogate``; ``spec.rounds``
Cold start: sample k particles, baseline diffusion             round 0: ``sample_round`` (base
                                                               model), ``select_round`` (random k)
Observe true rewards                                           ``oracle_round`` + ``observe_round``
Train CNN: f_θ <- optimize(...)                                ``fit_round`` (round 0's data)
while B > 0: sample N particles with FKC (Algorithm 2)         ``sample_round(spec, r, surrogate)``
  (:func:`prefalign.sampling.step.fkc_step` per time step)
ε-greedy selection: ε = 0.8 - 0.7 step / total_steps, top by   ``select_round`` (the method's rule,
  w, random rest                                               :mod:`prefalign.acquisition`)
Observe true rewards; update CNN                               ``oracle_round``, ``observe_round``;
                                                               ``fit_round`` (warm start)
B <- B - k, step <- step + 1                                   the next ``r``
return f_θ                                                     ``CampaignRun.surrogate``
============================================================  =====================================
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefalign.io.oracle_command import run_oracle
from prefalign.loop import steps
from prefalign.loop.spec import CampaignSpec
from prefalign.loop.steps import BaseDrawCache, OracleRunner


@dataclass
class CampaignRun:
    """What :func:`run_campaign` did."""

    metrics: Any  # reporting.metrics.round_metrics of the observations, a row per round run
    surrogate: Path | None  # the last surrogate checkpoint fitted (None if none was)
    fit_seconds: float  # sum of the fits' own wall times (FitReport.seconds)
    seconds: float  # wall time of the whole campaign


def run_campaign(
    spec: CampaignSpec,
    workdir: Path,
    *,
    runner: OracleRunner = run_oracle,
    base_draws: BaseDrawCache | None = None,
    fit: bool = True,
    fit_last: bool = False,
    stop: Callable[[Any], bool] | None = None,
) -> CampaignRun:
    """Algorithm 1: ``spec.rounds`` rounds of sample -> select -> answer -> observe -> fit.

    Args:
        spec: the campaign.
        workdir: emptied, then holds ``round<r>/`` (particles, queries, selection, rewards),
            ``observations-round<r>.parquet`` and ``surrogate-round<r>/`` (fitted on rounds 0..r).
        runner: runs the oracle on a round's queries (default: the oracle command, as the
            workflow's ``query`` job; :func:`prefalign.oracles.builtin.answer_in_process`
            answers built-in users in this process).
        base_draws: a cache of base-model draws shared with other campaigns of this process.
        fit: fit a surrogate after each round (``False``: every round samples the base model).
        fit_last: also fit after the last round (what the final evaluation needs).
        stop: called with the round metrics after each round; ``True`` ends the campaign.
    """
    from prefalign.reporting.metrics import round_metrics

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    start = time.perf_counter()
    prev_obs: Path | None = None
    prev_sur: Path | None = None
    metrics = None
    fit_seconds = 0.0
    for r in range(spec.rounds):
        d = workdir / f"round{r}"
        d.mkdir()
        particles, queries = d / "particles.npz", d / "queries.npz"
        selection, rewards = d / "selection.csv", d / "rewards.csv"
        # FKC tilted by f_θ (round 0: the base model)
        steps.sample_round(spec, r, prev_sur, particles, base_draws=base_draws)
        steps.select_round(spec, r, particles, queries, selection, prev_sur)
        steps.oracle_round(spec, r, queries, rewards, runner=runner)
        obs = workdir / f"observations-round{r}.parquet"
        df = steps.observe_round(spec, r, prev_obs, queries, selection, rewards, obs)
        prev_obs = obs
        metrics = round_metrics(df)
        if stop is not None and stop(metrics):
            break
        if fit and (fit_last or r + 1 < spec.rounds):
            sur = workdir / f"surrogate-round{r}"
            fit_seconds += steps.fit_round(spec, r, obs, prev_sur, sur)["seconds"]
            prev_sur = sur
    return CampaignRun(metrics, prev_sur, fit_seconds, time.perf_counter() - start)
