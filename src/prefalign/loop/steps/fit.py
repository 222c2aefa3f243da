"""Step 5 of a round: learn from every answer so far (the method's learner) and save it."""

from __future__ import annotations

import os

from prefalign.loop.spec import CampaignSpec, resolve

PathLike = str | os.PathLike[str]


def fit_round(
    spec: CampaignSpec,
    round_: int,
    observations: PathLike,
    previous: PathLike | None,
    out: PathLike,
    *,
    progress: bool = False,
) -> dict:
    """Fit the method's learner on the observations of rounds ``0..round_`` (from ``previous``,
    the last round's output, where it warm-starts) and save it in ``out``: a surrogate
    checkpoint, or a fine-tuned model directory (:mod:`prefalign.loop.learners`). Returns the
    fit's record."""
    return resolve(spec).learner.fit(spec, round_, observations, previous, out, progress=progress)
