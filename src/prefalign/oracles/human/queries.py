"""One round's queries as the rating page shows them: points or images, checked before serving.

The file is read and validated by the shared loader, :func:`prefalign.io.queries.read_queries`;
:func:`load_queries` adds what only this oracle needs (at least one query, a shape it can draw)
and words the loader's errors the way this oracle has always worded them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from prefalign.io.queries import OracleError, read_queries

__all__ = ["Queries", "QueriesError", "QueryKind", "load_queries"]

QueryKind = Literal["points2d", "image"]


class QueriesError(ValueError):
    """The queries file cannot be shown to a person (unreadable, wrong arrays or shapes)."""


@dataclass(frozen=True)
class Queries:
    """One round's queries.

    Attributes:
        ids: the query ids, in file order, unique.
        x: float32 array of shape (k, 2) (points) or (k, H, W) / (k, C, H, W) (images).
        kind: ``points2d`` or ``image``.
    """

    ids: tuple[str, ...]
    x: np.ndarray
    kind: QueryKind

    def __len__(self) -> int:
        return len(self.ids)


#: The shared loader's messages, reworded as this oracle words them (its tests and users quote
#: these): ``(pattern, replacement)``, the first pattern that matches the whole message wins; a
#: message no pattern matches is passed on as it is.
_REWORDINGS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), replacement)
    for pattern, replacement in (
        (
            r"queries file (.*) is not a readable \.npz file: (.*)",
            r"cannot read queries file \1: \2",
        ),
        (
            r"(queries file .*) lacks array\(s\) \[(.*)\]; it has (.*)",
            r"\1 lacks array(s) \2; it holds \3",
        ),
        (
            r"(queries file .*): `id` must be (?:1-D|unicode strings), got (.*)",
            r"\1: 'id' must be a 1-D unicode string array, got \2",
        ),
        (
            r"(queries file .*): `x` must be numeric, got (.*)",
            r"\1: 'x' must be numeric, got dtype \2",
        ),
        (
            r"(queries file .*): (\d+) ids but (\d+) rows of `x`",
            r"\1: 'x' must have one row per id (\2), got \3 rows",
        ),
        (
            r"(queries file .*): `x` must have a leading query axis, got a scalar",
            r"\1: 'x' must have one row per id, got a scalar",
        ),
        (r"(queries file .*): duplicate ids (.*)", r"\1: duplicate ids [\2]"),
    )
)


def _reworded(message: str) -> str:
    """``message`` of the shared loader in this oracle's words (see :data:`_REWORDINGS`)."""
    for pattern, replacement in _REWORDINGS:
        match = pattern.fullmatch(message)
        if match:
            return match.expand(replacement)
    return message


def load_queries(path: str | os.PathLike[str]) -> Queries:
    """Read and check a queries ``.npz`` file (arrays ``id`` and ``x``; no pickles).

    Raises:
        QueriesError: the file is unreadable, lacks an array, or holds ids or shapes this oracle
            cannot show (no queries, duplicate ids, non-finite values, shapes other than points
            or images).
    """
    path = Path(path)
    try:
        ids_array, x = read_queries(path)
    except OracleError as error:
        raise QueriesError(_reworded(str(error))) from error
    ids = tuple(str(value) for value in ids_array.tolist())
    if not ids:
        raise QueriesError(f"queries file {path} holds no queries")
    return Queries(ids=ids, x=x, kind=_query_kind(x.shape, path))


def _query_kind(shape: tuple[int, ...], path: Path) -> QueryKind:
    """Which picture a query of this shape becomes; raises QueriesError for other shapes."""
    if len(shape) == 2 and shape[1] == 2:
        return "points2d"
    if len(shape) == 3 and min(shape[1:]) > 0:
        return "image"
    if len(shape) == 4 and shape[1] in (1, 3) and min(shape[2:]) > 0:
        return "image"
    raise QueriesError(
        f"queries file {path}: cannot show queries of shape {shape}; the human oracle shows "
        "2-D points (k, 2) and images (k, H, W) or (k, C, H, W) with C = 1 (grey) or 3 (RGB)"
    )
