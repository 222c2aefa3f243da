"""Domains: a base diffusion model, data, simulated users (oracles), validity and diversity.

Every domain implements :class:`prefalign.domains.base.Domain`; :func:`get_domain` builds one by
name and lists the valid names when given a wrong one.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefalign.domains.base import Domain

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
