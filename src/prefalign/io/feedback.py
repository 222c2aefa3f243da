"""Question forms: what the oracle is asked, and how its answer becomes one value per shown item.

A campaign asks its questions in one form (``docs/feedback-forms.md``):

============  ===========================  ============================  ==========================
form          a question shows             the answer file               value per shown item
============  ===========================  ============================  ==========================
``rate``      one item                     ``id,reward``: a number       the number
``binary``    one item                     ``id,like``: ``1`` or ``0``   1 (like) / 0 (dislike)
``pairwise``  two items                    ``question,choice``: an id    1 preferred, 0 other;
                                           of the pair, or ``tie``       0.5 each on a tie
``best-of-K`` K items (K >= 2)             ``question,choice``: one id   1 favourite, 0 others
                                           of the group
============  ===========================  ============================  ==========================

One question is one unit of budget, whatever it shows. The per-item values are what the
observation dataset stores in its ``reward`` column, beside the ``form`` and ``question`` columns:
every dataset says how it was collected, and the question's items are the rows sharing its id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prefalign.io.listing import MAX_SHOWN, duplicates, key_problems, shorten, show
from prefalign.io.rewards_csv import OracleError, csv_rows, parse_rewards

__all__ = [
    "CHOICE_HEADER",
    "FORMS",
    "TIE",
    "QuestionForm",
    "group_items",
    "parse_answers",
    "parse_form",
]

#: The forms, by name (``best-of-K`` stands for any K >= 2, e.g. ``best-of-4``).
FORMS = ("rate", "binary", "pairwise", "best-of-K")
#: The answer files' headers, by form kind.
RATE_HEADER = ("id", "reward")
BINARY_HEADER = ("id", "like")
CHOICE_HEADER = ("question", "choice")
#: A pairwise answer that prefers neither item.
TIE = "tie"
_BEST_OF = re.compile(r"best-of-([0-9]+)")


class FeedbackError(OracleError):
    """An answer, a question or a form name that breaks the feedback contract."""


@dataclass(frozen=True)
class QuestionForm:
    """One form of question: its name, how many items a question shows, how it is answered."""

    name: str  # rate | binary | pairwise | best-of-K
    items: int  # items per question: 1, 1, 2, K

    @property
    def is_choice(self) -> bool:
        """Whether the answer picks among the question's items (``pairwise``, ``best-of-K``)."""
        return self.items > 1

    @property
    def header(self) -> tuple[str, str]:
        """The answer file's header, exactly."""
        if self.name == "rate":
            return RATE_HEADER
        return BINARY_HEADER if self.name == "binary" else CHOICE_HEADER

    @property
    def allows_tie(self) -> bool:
        """Whether ``tie`` is an answer (pairwise only)."""
        return self.name == "pairwise"


def parse_form(name: str) -> QuestionForm:
    """The form called ``name``: ``rate``, ``binary``, ``pairwise`` or ``best-of-K`` (K >= 2).

    Raises:
        FeedbackError: any other name, listing the valid ones.
    """
    if name in ("rate", "binary"):
        return QuestionForm(name, 1)
    if name == "pairwise":
        return QuestionForm(name, 2)
    match = _BEST_OF.fullmatch(str(name))
    if match and int(match.group(1)) >= 2:
        return QuestionForm(str(name), int(match.group(1)))
    raise FeedbackError(
        f"unknown question form {name!r}; valid: rate, binary, pairwise, best-of-K with K >= 2 "
        "(e.g. best-of-4)"
    )


def group_items(
    ids: Sequence[str], questions: Sequence[str], form: QuestionForm, where: str
) -> dict[str, list[str]]:
    """The items of each question, in file order: ``{question: [item ids]}``.

    Raises:
        FeedbackError: a question with the wrong number of items for the form, or a question
            whose items are not next to each other in the file.
    """
    if len(ids) != len(questions):
        raise FeedbackError(f"{where}: {len(ids)} items but {len(questions)} question ids")
    groups: dict[str, list[str]] = {}
    split: list[str] = []
    previous = None
    for item, question in zip(ids, questions, strict=True):
        if question in groups and question != previous:
            split.append(question)
        groups.setdefault(question, []).append(item)
        previous = question
    if split:
        raise FeedbackError(f"{where}: the items of question(s) {show(split)} are not contiguous")
    wrong = [f"{q!r} ({len(v)})" for q, v in groups.items() if len(v) != form.items]
    if wrong:
        raise FeedbackError(
            f"{where}: a {form.name} question shows {form.items} item(s); "
            f"question(s) with another count: {shorten(wrong)}"
        )
    return groups


def _rows(text: str, header: tuple[str, str], where: str) -> list[tuple[int, str, str]]:
    """The body rows ``(line, first, second)`` of a two-column CSV with exactly ``header``."""
    unit = "question" if header == CHOICE_HEADER else "id"
    body, malformed = csv_rows(text, header, where, unit, FeedbackError)
    if malformed:
        raise FeedbackError(
            f"{where}: rows without exactly 2 fields on line(s) {malformed[:MAX_SHOWN]}"
        )
    return body


def _binary_values(text: str, ids: Sequence[str], where: str) -> dict[str, float]:
    """``id,like`` rows: 1 (like) or 0 (dislike) per item."""
    body = _rows(text, BINARY_HEADER, where)
    problems = key_problems([r[1] for r in body], list(ids), "ids")
    values: dict[str, float] = {}
    bad = []
    for _, item, answer in body:
        value = answer.strip()
        if value not in ("0", "1"):
            bad.append(f"{item!r} ({answer!r})")
            continue
        values.setdefault(item, float(value))
    if bad:
        problems.append(
            f"binary answers must be 1 (like) or 0 (dislike), got {shorten(bad)} for those ids"
        )
    if problems:
        raise FeedbackError(f"{where}: " + "; ".join(problems))
    return values


def _choice_values(
    text: str, groups: dict[str, list[str]], form: QuestionForm, where: str
) -> dict[str, float]:
    """``question,choice`` rows: 1 for the chosen item, 0 for the others (0.5 each on a tie)."""
    body = _rows(text, CHOICE_HEADER, where)
    answered = [r[1] for r in body]
    problems = []
    several = duplicates(answered)
    if several:
        chosen = {q: [c for _, qq, c in body if qq == q] for q in several[:MAX_SHOWN]}
        problems.append(
            f"one answer per question: {form.name} takes one "
            f"{'choice' if form.allows_tie else 'favourite'}, but "
            + shorten([f"{q!r} has {len(c)} ({show(c)})" for q, c in chosen.items()])
        )
    problems += key_problems(answered, list(groups), "questions", skip_duplicates=True)
    values: dict[str, float] = {}
    outside = []
    for _, question, choice in body:
        items = groups.get(question)
        if items is None or question in several:
            continue
        if form.allows_tie and choice == TIE:
            values.update({item: 0.5 for item in items})
        elif choice in items:
            values.update({item: float(item == choice) for item in items})
        else:
            shows = " and ".join(repr(i) for i in items) if len(items) == 2 else show(items)
            tie = f" (or answer {TIE!r})" if form.allows_tie else ""
            outside.append(f"question {question!r} shows {shows}{tie}; the answer names {choice!r}")
    if outside:
        problems.append(shorten(outside, sep="; "))
    if problems:
        raise FeedbackError(f"{where}: " + "; ".join(problems))
    return values


def parse_answers(
    text: str,
    form: QuestionForm,
    ids: Sequence[str],
    questions: Sequence[str],
    where: str,
) -> pd.Series:
    """Validate an answer file of any form; the value of each shown item (see the module's table).

    Args:
        text: the answer file's text.
        form: the question form the queries file asks.
        ids, questions: each shown item's id and the id of the question it belongs to (for
            ``rate`` and ``binary`` each item is its own question).
        where: names the file in error messages.

    Returns:
        Float64 series named ``reward``, indexed by item ``id`` in the order of ``ids``.

    Raises:
        FeedbackError (an :class:`~prefalign.io.queries.OracleError`): every problem found, naming the offending ids or
            questions: a wrong header, missing, duplicate or unknown rows, a binary answer other
            than 0 or 1, a choice outside its question's items, two answers to one question.
    """
    ids = [str(i) for i in ids]
    if form.name == "rate":
        return parse_rewards(text, ids, where)
    if form.name == "binary":
        values = _binary_values(text, ids, where)
    else:
        values = _choice_values(text, group_items(ids, questions, form, where), form, where)
    assert all(math.isfinite(values[i]) for i in ids)
    return pd.Series(
        [values[i] for i in ids], index=pd.Index(ids, name="id"), name="reward", dtype=np.float64
    )


def choices_table(values: pd.Series, questions: Sequence[str], form: QuestionForm) -> pd.DataFrame:
    """The answer file's rows (``question,choice``) back from per-item values: the inverse of
    :func:`parse_answers` for the choice forms (a simulated user writes its answers this way)."""
    rows = []
    groups: dict[str, list[str]] = {}
    for item, question in zip(values.index, questions, strict=True):
        groups.setdefault(str(question), []).append(str(item))
    for question, items in groups.items():
        v = values.loc[items].to_numpy(np.float64)
        if form.allows_tie and np.all(v == 0.5):
            rows.append((question, TIE))
        else:
            rows.append((question, items[int(np.argmax(v))]))
    return pd.DataFrame(rows, columns=list(CHOICE_HEADER))
