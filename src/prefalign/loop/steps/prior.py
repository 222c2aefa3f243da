"""The workflow's ``population_prior`` job: the population prior fitted on the training users'
observation datasets (:mod:`prefalign.learning.population`), saved as a surrogate checkpoint
that a held-out user's campaign starts from (learner ``population``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from prefalign.learning.population import PriorReport

PathLike = str | os.PathLike[str]


def fit_prior_files(
    observations: Sequence[PathLike],
    out: PathLike,
    *,
    seed: int,
    progress: bool = False,
) -> PriorReport:
    """Fit the population prior on the training users' observation datasets (one parquet each:
    a user's every rating, :mod:`prefalign.io.observations`) and save it in ``out``, a
    surrogate checkpoint with no answers of its own; returns the fit's report.

    Raises:
        ValueError: a dataset of answers other than ratings, fewer than 3 users (and the
            errors of :func:`prefalign.learning.population.fit_prior`), naming the file.
    """
    from prefalign.io.observations import observations_xy, read_observations
    from prefalign.learning.checkpoint import save_population
    from prefalign.learning.population import fit_prior

    users, names = [], []
    for path in observations:
        df, shape = read_observations(path)
        forms = sorted(set(df["form"].astype(str)))
        if forms != ["rate"]:
            raise ValueError(
                f"{path}: a population prior is fitted on ratings (form 'rate'); got {forms}"
            )
        users.append(observations_xy(df, shape))
        names.append(str(path))
    prior, report = fit_prior(users, seed=seed, progress=progress)
    save_population(prior, out, report=report.to_dict(), users=names)
    return report
