"""Populations of simulated users: many people, one generative model.

A *family* is the set of tastes a population's users are drawn from, each a built-in user of a
domain (:func:`prefalign.domains.get_oracle`) that is rare under the domain's base model, so
that no method finds it by chance. :func:`draw_users` draws a population from a family with a
seed: each user a taste (uniformly, with replacement: many people share a taste) and a rating
noise of their own (uniform in a range), answering through ``prefalign oracle builtin`` with a
noise seed of their own.

Families:

- ``digits-style``: a liked digit times a style (:data:`prefalign.domains.digits.STYLES`), the
  users ``{style}-{K}`` (reward: the oracle classifier's probability of ``K`` times the style's
  percentile). The tastes are those whose reward is above 0.5 on at most 4 % of base samples
  (:data:`DIGITS_TASTES`, measured on 4,096 samples of the shipped ``models/digits`` at 50
  steps, seed 1; ``python benchmarks/users.py --family digits-style`` measures them again).
  Judged by the independent evaluation classifier (``eval-{style}-{K}``), noiselessly.
- ``mixture2d-modes``: a bump on one of the 2-D mixture's two rare modes (prior weight 2 %
  each) with a width of 1, 2 or 3 mode standard deviations (``mode-K-wW``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefalign.oracles.builtin import COMMAND

#: digits-style's tastes and the share (%) of base samples whose reward is above 0.5 and 0.9:
#: every ``{style}-{K}`` with at most 4 % above 0.5 (the others, 4.1-10.0 %, are left out).
DIGITS_TASTES: dict[str, tuple[float, float]] = {
    "thick-2": (3.4, 0.1),
    "thick-3": (2.9, 0.3),
    "thick-4": (3.4, 0.1),
    "thick-5": (3.6, 0.2),
    "thick-7": (3.2, 0.0),
    "thick-9": (3.9, 0.3),
    "thin-8": (2.6, 0.2),
    "thin-9": (3.5, 0.2),
    "slant-2": (1.0, 0.0),
    "slant-3": (2.7, 0.0),
    "slant-6": (0.2, 0.0),
    "slant-9": (2.2, 0.1),
    "wide-1": (0.7, 0.0),
    "wide-2": (3.7, 0.1),
    "wide-3": (3.8, 0.2),
    "wide-7": (2.2, 0.1),
    "wide-8": (1.6, 0.0),
}
#: The largest share of base samples above 0.5 a taste may have (the rarity rule).
MAX_BASE_SHARE = 0.04


@dataclass(frozen=True)
class SimulatedUser:
    """One user of a population: a taste, a noise, and the argv that answers as them."""

    index: int
    name: str  # the taste: the domain's built-in user (e.g. ``thick-3``)
    noise_std: float  # Gaussian noise on each rating
    oracle: list[str]  # the argv answering their questions (the workflow appends the files)
    eval_oracle: list[str]  # the noiseless, independent judge of their final samples
    true_reward: str  # the noiseless taste (the `true-reward` upper bound tilts by it)
    domain_type: str  # the domain module (digits, mixture2d)
    domain_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Family:
    """The tastes a population is drawn from, on one domain."""

    domain_type: str
    tastes: tuple[str, ...]
    description: str
    evaluator_prefix: str = ""  # the judge of final samples: the taste with this prefix

    def user(self, index: int, taste: str, noise_std: float, noise_seed: int) -> SimulatedUser:
        """The user ``index`` with ``taste`` and its noise."""
        argv = [*COMMAND, self.domain_type, taste]
        if noise_std > 0:
            argv += ["--noise-std", f"{noise_std:.4f}", "--noise-seed", str(noise_seed)]
        return SimulatedUser(
            index=index,
            name=taste,
            noise_std=noise_std,
            oracle=argv,
            eval_oracle=[*COMMAND, self.domain_type, self.evaluator_prefix + taste],
            true_reward=taste,
            domain_type=self.domain_type,
            description=f"{taste} ({self.description}), rating noise {noise_std:.3f}",
        )


#: The families by name (a population's ``family``).
FAMILIES: dict[str, Family] = {
    "digits-style": Family(
        "digits",
        tuple(DIGITS_TASTES),
        "a liked digit times a style",
        evaluator_prefix="eval-",
    ),
    "mixture2d-modes": Family(
        "mixture2d",
        tuple(f"mode-{k}-w{w}" for k in (0, 4) for w in (1, 2, 3)),
        "a rare mode of the ring, a width",
    ),
}


def draw_users(
    family: str, size: int, seed: int, noise_std: tuple[float, float] = (0.0, 0.0)
) -> list[SimulatedUser]:
    """``size`` users of ``family``: each a taste drawn uniformly (with replacement) and a
    rating noise uniform in ``noise_std``, all from ``numpy.random.default_rng(seed)``; user
    ``i``'s answer noise is seeded by ``(seed, i)``. The first users of a larger population are
    the same users (drawn in order).

    Raises:
        ValueError: an unknown family (listing the valid ones), ``size < 1`` or a bad range.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown user family {family!r}; valid: {', '.join(FAMILIES)}")
    low, high = (float(v) for v in noise_std)
    if size < 1:
        raise ValueError(f"a population needs at least one user; got size {size}")
    if not 0.0 <= low <= high:
        raise ValueError(f"noise_std must be a range 0 <= low <= high; got {noise_std}")
    kind = FAMILIES[family]
    users = []
    for i in range(size):
        rng = np.random.default_rng([seed, i])  # user i is the same in any larger population
        taste = kind.tastes[int(rng.integers(len(kind.tastes)))]
        noise = float(rng.uniform(low, high)) if high > low else low
        noise_seed = int(np.random.default_rng([seed, i, 1]).integers(2**31))
        users.append(kind.user(i, taste, round(noise, 4), noise_seed))
    return users
