"""Domains: a base diffusion model, data, simulated users (oracles), validity and diversity.

One module is one domain: ``prefalign.domains.<name>`` defines ``DOMAIN``, a class implementing
:class:`prefalign.domains.base.Domain` (built with the config's ``options``), and optionally
``make_oracle(user, noise_std=, seed=)``, its simulated users without the diffusion model. Adding a
domain is adding its module: :func:`available_domains` finds it, :func:`get_domain` builds it and
lists the valid names when given a wrong one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import pkgutil
from types import ModuleType
from typing import Any

import numpy as np

from prefalign.domains.base import Domain, OracleFn


def available_domains() -> list[str]:
    """The domains there are: every module of this package but :mod:`.base` (found without
    importing any, so that light domains don't load heavy dependencies)."""
    return list(_domain_modules())


@functools.cache
def _domain_modules() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"))


def domain_module(name: str) -> ModuleType:
    """The module of domain ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in available_domains():
        raise ValueError(f"unknown domain {name!r}; valid: {', '.join(available_domains())}")
    return importlib.import_module(f"{__name__}.{name}")


def get_domain(name: str, options: dict[str, Any] | None = None, device: Any = None) -> Domain:
    """Build the domain ``name`` with keyword ``options``, its model on torch ``device``
    (None: the domain's default, the CPU).

    Raises:
        ValueError: for an unknown name (listing the valid ones) or unknown options.
    """
    factory = domain_module(name).DOMAIN
    options = dict(options or {})
    if device is not None:
        if "device" in options:
            raise ValueError(
                f"bad options for domain {name!r}: 'device' is the config's top-level setting, "
                "not a domain option"
            )
        options["device"] = str(device)
    try:
        return factory(**options)
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
    module = domain_module(name)
    if hasattr(module, "make_oracle"):
        return module.make_oracle(user, noise_std=noise_std, seed=noise_seed)
    oracle = get_domain(name, options).oracle(user)
    if noise_std <= 0:
        return oracle
    return with_answer_noise(oracle, noise_std, noise_seed, f"{name}_{user}")


def with_answer_noise(reward: OracleFn, noise_std: float, seed: int, name: str) -> OracleFn:
    """A simulated user answering ``reward(x)`` (float64) plus :func:`answer_noise`, named
    ``name``.

    Raises:
        ValueError: a negative ``noise_std``.
    """
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")

    def oracle(x: np.ndarray) -> np.ndarray:
        r = np.asarray(reward(x), dtype=np.float64)
        return r + answer_noise(x, noise_std, seed) if noise_std > 0 else r

    oracle.__name__ = name
    return oracle


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
