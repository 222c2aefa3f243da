"""Questions chosen for what they teach the sampler the user takes home.

The aligned sampler draws from ``q_0(x) exp(lam r_theta(x))``: what matters is the surrogate's
error *where that distribution puts its mass*. :func:`information_batch` picks, among the
round's candidate particles, the batch whose answers most reduce the surrogate's posterior
variance integrated over particles drawn by FKC at the tilt: BoTorch's
``qNegIntegratedPosteriorVariance`` with those particles as its integration points, maximised
over the candidates by ``optimize_acqf_discrete``'s greedy sequential conditioning.

For a Gaussian-process surrogate of ratings the posterior after an answer does not depend on
its value, so each greedy step is a rank-one update of the joint posterior covariance of the
candidates and the targets: an answer at ``c`` (noise variance ``s^2``) lowers the variance at a
target ``m`` by ``Sigma(m, c)^2 / (Sigma(c, c) + s^2)``. That is computed here in closed form
(the same picks as BoTorch's, ``tests/test_gp.py``, in milliseconds instead of the seconds its
batch of fantasy models takes per round on digits).
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
    ``pending`` still to come (greedy, as ``optimize_acqf_discrete``; ties to the lower index).

    Args:
        surrogate: a fitted :class:`~prefalign.learning.gp.GPSurrogate` of ratings.
        candidates: (C, *event_shape) the particles that may be asked about.
        targets: (M, *event_shape) the integration points (samples of the tilted target).
        q: how many to pick, ``1 <= q <= C``.
        pending: (P, *event_shape) particles already chosen for the round, or None.
    """
    if getattr(surrogate, "head", None) != "rate" or not hasattr(surrogate, "predictive"):
        raise ValueError(
            "information-directed questions need a Gaussian-process surrogate of ratings "
            "(surrogate.arch: gp, form: rate)"
        )
    if not 1 <= q <= len(candidates):
        raise ValueError(f"cannot pick {q} of {len(candidates)} candidates")
    device = surrogate.train_x.device

    def features(x: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
        return surrogate.features(x)

    predictive = surrogate.predictive()
    n_pending = 0 if pending is None else len(pending)
    with torch.no_grad():
        asked = features(candidates if not n_pending else np.concatenate([pending, candidates]))
        at = features(targets)
        joint = predictive.covariance(asked, asked)  # (P + C, P + C)
        to_targets = predictive.covariance(asked, at)  # (P + C, M)
        noise = predictive.noise * predictive.scale**2

        def condition(i: int) -> None:
            """The posterior after an answer at ``asked[i]`` (a rank-one update)."""
            nonlocal joint, to_targets
            denominator = joint[i, i] + noise
            column = joint[:, i].clone()
            to_targets = to_targets - torch.outer(column, to_targets[i]) / denominator
            joint = joint - torch.outer(column, column) / denominator

        for i in range(n_pending):
            condition(i)
        taken: list[int] = []
        for _ in range(q):
            gain = (to_targets[n_pending:] ** 2).sum(dim=1) / (joint.diagonal()[n_pending:] + noise)
            if taken:
                gain[taken] = -torch.inf
            best = int(torch.argmax(gain))
            taken.append(best)
            condition(n_pending + best)
    return np.asarray(taken, dtype=np.int64)
