"""Questions chosen for what they teach the sampler the user takes home.

The aligned sampler draws from ``q_0(x) exp(lam r_theta(x))``: what matters is the surrogate's
error *where that distribution puts its mass*. :func:`information_batch` picks, among the
round's candidate particles, the batch whose answers most reduce the surrogate's posterior
variance integrated over particles drawn by FKC at the tilt (BoTorch's
``qNegIntegratedPosteriorVariance`` with those particles as its integration points, maximised
over the candidates by ``optimize_acqf_discrete``: greedy sequential conditioning on the
fantasised batch). For a Gaussian-process surrogate on ratings the posterior variance after an
answer does not depend on the answer's value, so the fantasies are exact.
"""

from __future__ import annotations

import numpy as np
import torch


def information_batch(
    surrogate,
    candidates: np.ndarray,
    targets: np.ndarray,
    q: int,
    *,
    pending: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of ``q`` distinct candidates, in the order chosen, that most reduce the GP
    surrogate's posterior variance integrated over ``targets``, given the answers to
    ``pending`` still to come.

    Args:
        surrogate: a fitted :class:`~prefalign.learning.gp.GPSurrogate` of ratings.
        candidates: (C, *event_shape) the particles that may be asked about.
        targets: (M, *event_shape) the integration points (samples of the tilted target).
        q: how many to pick, ``1 <= q <= C``.
        pending: (P, *event_shape) particles already chosen for the round, or None.
    """
    from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
    from botorch.optim.optimize import optimize_acqf_discrete

    if getattr(surrogate, "head", None) != "rate" or not hasattr(surrogate, "features"):
        raise ValueError(
            "information-directed questions need a Gaussian-process surrogate of ratings "
            "(surrogate.arch: gp, form: rate)"
        )
    if not 1 <= q <= len(candidates):
        raise ValueError(f"cannot pick {q} of {len(candidates)} candidates")

    def features(x: np.ndarray) -> torch.Tensor:
        return surrogate.features(torch.as_tensor(np.asarray(x), dtype=torch.float64)).detach()

    choices = features(candidates)
    acquisition = qNegIntegratedPosteriorVariance(surrogate.model, mc_points=features(targets))
    if pending is not None and len(pending):
        acquisition.set_X_pending(features(pending))
    with torch.no_grad():
        picked, _ = optimize_acqf_discrete(acquisition, q=q, choices=choices, unique=True)
    # back to indices: the first candidate (not yet taken) whose features are the row picked
    taken: list[int] = []
    for row in picked:
        same = torch.nonzero(torch.all(choices == row, dim=1)).flatten().tolist()
        index = next(i for i in same if i not in taken)
        taken.append(index)
    return np.asarray(taken, dtype=np.int64)
