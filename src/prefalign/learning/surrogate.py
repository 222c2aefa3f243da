"""The learned surrogate reward ``r_theta(x)`` that tilts the FKC sampler.

One round of the active-learning loop fits a surrogate to the observations so far (:func:`fit`),
optionally warm-started from the previous round's checkpoint, and the round's job checkpoints it
(:mod:`prefalign.learning.checkpoint`). ``arch`` chooses what it is: an ensemble of networks
(:mod:`prefalign.learning.ensemble`: ``mlp``, ``cnn``) or a Gaussian process
(:mod:`prefalign.learning.gp`: ``gp``). Both normalise their input and put their output in the
oracle's units, so ``grad_x sum(r(x))`` is what the sampler needs.
"""

from __future__ import annotations

import numpy as np
import torch

from prefalign.learning.ensemble import (
    ACTIVATION,
    BATCH_SIZE,
    HEADS,
    NOISE_T_MAX,
    WEIGHT_DECAY,
    FitReport,
    Surrogate,
    check_observations,
    fit_ensemble,
    head_of,
    member_seeds,
    normalisation_shape,
    training_set_hash,
)
from prefalign.learning.gp import fit_gp
from prefalign.models.sde import VPSDE
from prefalign.settings import SurrogateConfig

__all__ = [
    "ACTIVATION",
    "BATCH_SIZE",
    "HEADS",
    "NOISE_T_MAX",
    "WEIGHT_DECAY",
    "FitReport",
    "Surrogate",
    "SurrogateConfig",
    "check_observations",
    "fit",
    "head_of",
    "member_seeds",
    "normalisation_shape",
    "training_set_hash",
]


def fit(
    x: np.ndarray,
    y: np.ndarray,
    config: SurrogateConfig,
    *,
    seed: int,
    init: Surrogate | None = None,
    sde: VPSDE | None = None,
    progress: bool = False,
    form: str = "rate",
    questions: np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> tuple[Surrogate, FitReport]:
    """Fit a surrogate to observations ``x`` (N, *event_shape) with answers ``y`` (N,).

    Minimises with AdamW the MSE of standardised ratings (``rate``), the binary cross-entropy
    of likes (``binary``) or the cross-entropy of each question's choice (``pairwise``,
    ``best-of-K``; see the module's docstring). Deterministic on CPU given ``seed`` (every draw
    uses a member-specific ``torch.Generator``; no global state is set).

    Args:
        x, y: training inputs and finite rewards.
        config: architecture and training settings.
        seed: seeds initial weights, bootstrap resamples, shuffles and training noise.
        init: previous surrogate; its weights are the starting point when ``config.warm_start``
            (normalisation is always recomputed from ``x``, ``y``). Must have the same
            architecture and event shape.
        sde: the domain's VP SDE; required when ``config.noise_train``.
        progress: show a tqdm bar over epochs.
        form: the question form of the answers (:mod:`prefalign.io.feedback`).
        questions: (N,) the question of each item; required for the choice forms, whose
            questions' items are contiguous rows. Ensemble members resample whole questions.
        device: where the members train (None: the CPU). The initial weights are the same on
            every device; the resamples, shuffles and noise come from a generator on the device
            (:func:`~prefalign.runtime.device_generator`), and each member's losses are read
            once, after its last epoch (after each epoch with ``progress``), so the training
            does not wait for the device batch by batch.

    Returns:
        The fitted surrogate (in eval mode) and a :class:`FitReport`.
    """
    if config.arch == "gp":  # a Gaussian process: no networks to train
        return fit_gp(x, y, config, seed=seed, form=form, questions=questions, device=device)
    return fit_ensemble(
        x,
        y,
        config,
        seed=seed,
        init=init,
        sde=sde,
        progress=progress,
        form=form,
        questions=questions,
        device=device,
    )
