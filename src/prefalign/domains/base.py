"""The interface every domain implements, so that sampler, workflow and reports stay generic."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from prefalign.models.sde import VPSDE

#: A simulated user: maps a batch of samples (N, *event_shape) to rewards (N,).
OracleFn = Callable[[np.ndarray], np.ndarray]


@runtime_checkable
class Domain(Protocol):
    """A data domain with a pretrained base diffusion model.

    Attributes:
        name: registry name of the domain (``mixture2d``, ``digits``, ...).
        event_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        sde: the VP SDE the base model was trained with.
    """

    name: str
    event_shape: tuple[int, ...]
    sde: VPSDE

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Base-model score ``grad log q_t(x)`` for a batch ``x`` of shape (N, *event_shape)."""
        ...

    def oracle_names(self) -> list[str]:
        """Names of the built-in simulated users."""
        ...

    def oracle(self, name: str) -> OracleFn:
        """The simulated user called ``name``; raises ``ValueError`` listing valid names."""
        ...

    def is_valid(self, x: np.ndarray) -> np.ndarray:
        """Boolean (N,): which samples lie on the data manifold."""
        ...

    def diversity(self, x: np.ndarray) -> dict[str, float]:
        """Diversity summary of a batch of samples (e.g. modes covered, mean pairwise distance)."""
        ...
