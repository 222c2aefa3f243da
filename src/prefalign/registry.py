"""Looking a name up in one of the registries (selection rules, learners, scores, arms...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def named(registry: Mapping[str, T], what: str, name: str) -> T:
    """``registry[name]``.

    Raises:
        ValueError: no such name; the message names the setting ``what`` and lists the valid
            names in the registry's order.
    """
    if name not in registry:
        raise ValueError(f"{what} must be one of {', '.join(registry)}; got {name!r}")
    return registry[name]
