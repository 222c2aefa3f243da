"""The workflow's ``propose`` job: the previous round's fit, this round's sampling and its
selection in one process (torch starts once per round)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prefalign.loop.steps.fit import fit_round
from prefalign.loop.steps.sample import sample_round
from prefalign.loop.steps.select import select_round

if TYPE_CHECKING:
    from prefalign.loop.spec import CampaignSpec

PathLike = str | os.PathLike[str]


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
