"""Steps 3 and 4 of a round: the oracle answers the questions, and the answers join the
campaign's observation dataset (never torch: each is its own short-lived process)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from prefalign.io.observations import (
    append_round,
    new_round_frame,
    read_observations,
    write_observations,
)
from prefalign.io.oracle_command import run_oracle
from prefalign.io.queries import read_answers, read_questions

if TYPE_CHECKING:
    from prefalign.loop.spec import CampaignSpec

PathLike = str | os.PathLike[str]
#: Runs an oracle argv on a queries file: ``run_oracle``'s signature and result.
OracleRunner = Callable[..., pd.Series]


def oracle_round(
    spec: CampaignSpec,
    round_: int,
    queries: PathLike,
    rewards_out: PathLike,
    log: PathLike | None = None,
    *,
    runner: OracleRunner = run_oracle,
) -> pd.Series:
    """Run the oracle command on the queries; the validated rewards land in
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
    """Validate the answers and append them to the cumulative observation dataset;
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
