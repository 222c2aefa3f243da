"""Domains: a base diffusion model, data, simulated users (oracles), validity and diversity.

Every domain implements :class:`prefalign.domains.base.Domain`; :func:`get_domain` builds one by
name and lists the valid names when given a wrong one.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import numpy as np

from prefalign.domains.base import Domain, OracleFn

#: name -> "module:class"; imported lazily so that light domains don't load heavy dependencies.
DOMAINS: dict[str, str] = {
    "mixture2d": "prefalign.domains.mixture2d:Mixture2D",
    "digits": "prefalign.domains.digits:DigitsDomain",
    "pretrained": "prefalign.domains.pretrained:PretrainedDomain",
}


def get_domain(name: str, options: dict[str, Any] | None = None) -> Domain:
    """Build the domain ``name`` with keyword ``options``.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or unknown options.
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; valid: {', '.join(DOMAINS)}")
    module, cls = DOMAINS[name].split(":")
    factory = getattr(importlib.import_module(module), cls)
    try:
        return factory(**(options or {}))
    except TypeError as err:
        raise ValueError(f"bad options for domain {name!r}: {err}") from err


def get_oracle(
    name: str,
    user: str,
    options: dict[str, Any] | None = None,
    *,
    noise_std: float = 0.0,
    noise_seed: int = 0,
) -> OracleFn:
    """The simulated user ``user`` of domain ``name``, without loading the domain's model.

    Image domains expose ``make_oracle(user, noise_std=, seed=)`` at module level (their users
    need classifiers, not the diffusion model); the mixture domain builds its users from its
    options. Answer noise is seeded per query (see :func:`answer_noise`).
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; valid: {', '.join(DOMAINS)}")
    module = importlib.import_module(DOMAINS[name].split(":")[0])
    if hasattr(module, "make_oracle"):
        return module.make_oracle(user, noise_std=noise_std, seed=noise_seed)
    oracle = get_domain(name, options).oracle(user)
    if noise_std <= 0:
        return oracle
    return lambda x: oracle(x) + answer_noise(x, noise_std, noise_seed)


def answer_noise(x: np.ndarray, noise_std: float, seed: int) -> np.ndarray:
    """Gaussian answer noise (N,), reproducible per query: the draw for sample ``x_i`` is seeded by
    ``(seed, blake2b(float32 bytes of x_i))``, so the same query gets the same answer in any
    batch, order or round, and different queries get independent noise."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    noise = np.empty(len(x))
    for i, row in enumerate(x):
        key = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
        noise[i] = np.random.default_rng([seed, key]).normal(0.0, noise_std)
    return noise
