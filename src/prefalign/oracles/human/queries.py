"""One round's queries as the page shows them: points or images, in questions of a form, checked
before serving.

The file is read and validated by the shared loader, :func:`prefalign.io.queries.read_questions`
(the items, the question form and the question of each item, ``docs/feedback-forms.md``);
:func:`load_queries` adds what only this oracle needs (at least one query, a shape it can draw)
and words the loader's errors the way this oracle has always worded them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from prefalign.io.feedback import TIE, QuestionForm, group_items, parse_form
from prefalign.io.queries import OracleError, read_questions

__all__ = ["Queries", "QueriesError", "QueryKind", "load_queries"]

QueryKind = Literal["points2d", "image"]


class QueriesError(ValueError):
    """The queries file cannot be shown to a person (unreadable, wrong arrays or shapes)."""


@dataclass(frozen=True)
class Queries:
    """One round's queries.

    Attributes:
        ids: the query (item) ids, in file order, unique.
        x: float32 array of shape (k, 2) (points) or (k, H, W) / (k, C, H, W) (images).
        kind: ``points2d`` or ``image``.
        form: the question form (``rate`` for a file that names none).
        questions: the question id of each item (its own id for ``rate`` and ``binary``);
            empty: each item is its own question.
    """

    ids: tuple[str, ...]
    x: np.ndarray
    kind: QueryKind
    form: QuestionForm = field(default_factory=lambda: parse_form("rate"))
    questions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.questions:
            object.__setattr__(self, "questions", self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def groups(self) -> dict[str, list[str]]:
        """The item ids of each question, in file order: ``{question: [ids]}``."""
        return group_items(self.ids, self.questions, self.form, "queries")

    @property
    def n_questions(self) -> int:
        """How many questions the round asks (units of budget)."""
        return len(dict.fromkeys(self.questions))


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
            or images), or questions that do not fit its form (``form``, ``question``).
    """
    path = Path(path)
    try:
        read = read_questions(path)
    except OracleError as error:
        raise QueriesError(_reworded(str(error))) from error
    ids = tuple(str(value) for value in read.ids.tolist())
    if not ids:
        raise QueriesError(f"queries file {path} holds no queries")
    form = parse_form(read.form)
    if form.allows_tie and TIE in ids:
        raise QueriesError(
            f"queries file {path}: a {form.name} item has the id {TIE!r}, which the answer "
            f'file reserves for "can\'t say"; rename it'
        )
    questions = tuple(str(value) for value in read.questions.tolist())
    return Queries(
        ids=ids, x=read.x, kind=_query_kind(read.x.shape, path), form=form, questions=questions
    )


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
