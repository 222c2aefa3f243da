"""Two-sample distances used to compare samplers with exact samples of a target."""

from __future__ import annotations

import torch


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` between two samples (V-statistic).

    Zero in expectation-limit only for equal distributions; for finite samples compare with the
    exact-vs-exact floor at the same sample sizes.
    """
    x, y = x.double().flatten(1), y.double().flatten(1)
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)
