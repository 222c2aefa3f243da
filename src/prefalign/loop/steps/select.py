"""Step 2 of a round: choose its questions (``queries.npz`` for the oracle, ``selection.csv``
for the observe step)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from prefalign import pairing
from prefalign.acquisition import Selection
from prefalign.io.atomic import write_text
from prefalign.io.queries import write_queries
from prefalign.loop.selectors import RoundParticles
from prefalign.loop.spec import CampaignSpec, resolve
from prefalign.runtime import numpy_rng

PathLike = str | os.PathLike[str]


def read_particles(path: PathLike) -> RoundParticles:
    """The arrays of a round's ``particles.npz`` that the selection reads."""
    with np.load(path, allow_pickle=False) as data:
        x = data["x"]
        return RoundParticles(
            x=x,
            fk=data["fk_log_weight"],
            pred=data["surrogate_pred"],
            std=data["surrogate_std"],
            lineage=data["ancestor"] if "ancestor" in data.files else np.arange(len(x)),
            proposal=data["proposal"] if "proposal" in data.files else np.zeros(len(x), np.int8),
            utilities=data["surrogate_utilities"] if "surrogate_utilities" in data.files else None,
        )


def select_round(
    spec: CampaignSpec,
    round_: int,
    particles: PathLike,
    queries_out: PathLike,
    selection_out: PathLike,
    surrogate_dir: PathLike | None = None,
) -> pd.DataFrame:
    """Choose the round's queries; write ``queries.npz`` (id, x) for the oracle and
    ``selection.csv`` (id, index, selected_by, fk_log_weight, surrogate_pred) for ``observe``.
    ``surrogate_dir``: the round's surrogate, for a method that asks what it does not know
    (``explore_from: information``).
    """
    found = read_particles(particles)
    x = found.x
    k = spec.queries_in_round(round_)
    resolved = resolve(spec)
    learner, selector = resolved.learner, resolved.selector
    rng = numpy_rng(spec.seed, round_, "select")
    size = spec.items_per_question
    if round_ == 0:
        surrogate_dir = learner.initial(spec)  # a population prior chooses the first questions
    if (round_ == 0 or not learner.learns_reward) and size > 1:
        groups = pairing.random_questions(x, k, size, rng)
        chosen = Selection(indices=groups.indices, selected_by=groups.selected_by)
        question = groups.question
    else:
        informer = None
        if round_ == 0 and surrogate_dir is not None:
            from prefalign.learning.checkpoint import load_surrogate

            informer = load_surrogate(surrogate_dir)
        elif round_ > 0 and selector.arm.informs:
            if surrogate_dir is None:
                raise ValueError(
                    f"method {spec.method.name!r} chooses questions by information: "
                    "select_round needs the round's surrogate (surrogate_dir)"
                )
            from prefalign.learning.checkpoint import load_surrogate

            informer = load_surrogate(surrogate_dir)
        chosen = selector.leads(spec, round_, found, k, rng, informer)
        question = np.arange(k, dtype=np.int64)
        if size > 1:
            scores = None if round_ == 0 else selector.score(found)
            groups = pairing.compose_questions(
                spec.method.pairing, chosen, x, scores, size, rng, utilities=found.utilities
            )
            chosen = Selection(indices=groups.indices, selected_by=groups.selected_by)
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
            "fk_log_weight": found.fk[idx].astype(np.float64),
            "surrogate_pred": found.pred[idx].astype(np.float64),
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
