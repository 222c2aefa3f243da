"""The answers of a ``binary``, ``pairwise`` or ``best-of-K`` round, checked as they come, and the
answer file (``docs/feedback-forms.md``) written once every question is answered.

- :class:`BinarySession`: one answer per item, ``1`` (like) or ``0`` (dislike); the file is
  ``id,like``.
- :class:`ChoiceSession`: one answer per question, one of the ids it shows, or ``tie``
  ("can't say", pairwise only); the file is ``question,choice``.

:func:`write_answers` checks the file it wrote with :func:`prefalign.io.feedback.parse_answers`
before renaming it into place: a file the workflow would refuse is never left behind.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from prefalign.io.atomic import atomic_path
from prefalign.io.feedback import TIE, QuestionForm, parse_answers
from prefalign.oracles.human.session import AnswerError, AnswerSession

__all__ = ["BinarySession", "ChoiceSession", "write_answers"]

#: The binary answers as the file writes them.
LIKE, DISLIKE = "1", "0"


def _name(label: str, key: str) -> str:
    return f"{label} (id {key!r})"


class BinarySession(AnswerSession[str]):
    """A ``binary`` round: like (``1``) or dislike (``0``) per item; writes ``id,like``."""

    def __init__(self, form: QuestionForm, ids: Sequence[str], rewards_path: Path) -> None:
        if form.name != "binary":
            raise ValueError(f"a BinarySession asks binary questions, not {form.name}")
        super().__init__(ids, form, rewards_path)

    def parse_answer(self, key: str, raw: object) -> str:
        """``1``/``0`` (a string, or the whole number from a draft); nothing else, not ``0.5``."""
        text = raw if isinstance(raw, str) else None
        if isinstance(raw, int) and not isinstance(raw, bool):
            text = str(raw)
        if text is None or text.strip() not in (LIKE, DISLIKE):
            raise self.error(
                f"the answer to {_name(self.label(key), key)} must be {LIKE} (like) or "
                f"{DISLIKE} (dislike), got {raw!r}"
            )
        return text.strip()

    def write(self, answers: dict[str, str]) -> None:
        """Write ``id,like`` rows in item order."""
        rows = [(key, answers[key]) for key in self.keys]
        write_answers(self.rewards_path, self.form, self.keys, self.keys, rows)


class ChoiceSession(AnswerSession[str]):
    """A ``pairwise`` or ``best-of-K`` round: per question one of its ids (or ``tie`` for a
    pair); writes ``question,choice``.

    Attributes:
        groups: the item ids each question shows, in file order.
    """

    def __init__(
        self, form: QuestionForm, groups: dict[str, list[str]], rewards_path: Path
    ) -> None:
        if not form.is_choice:
            raise ValueError(
                f"a ChoiceSession asks pairwise or best-of-K questions, not {form.name}"
            )
        super().__init__(list(groups), form, rewards_path)
        self.groups = {question: tuple(items) for question, items in groups.items()}

    def options(self, key: str) -> tuple[str, ...]:
        """Every answer question ``key`` takes: its ids, then ``tie`` where allowed."""
        return self.groups[key] + ((TIE,) if self.form.allows_tie else ())

    def parse_answer(self, key: str, raw: object) -> str:
        """One of the question's ids, or ``tie`` for a pair; a third id names the ids it shows."""
        items = self.groups[key]
        if isinstance(raw, str) and raw in self.options(key):
            return raw
        shows = " and ".join(map(repr, items)) if len(items) == 2 else ", ".join(map(repr, items))
        tie = f" (or answer {TIE!r})" if self.form.allows_tie else ""
        raise self.error(
            f"{self.label(key)}: question {key!r} shows {shows}{tie}; the answer names {raw!r}"
        )

    def write(self, answers: dict[str, str]) -> None:
        """Write ``question,choice`` rows in question order."""
        ids = [item for items in self.groups.values() for item in items]
        questions = [question for question, items in self.groups.items() for _ in items]
        rows = [(key, answers[key]) for key in self.keys]
        write_answers(self.rewards_path, self.form, ids, questions, rows)


def write_answers(
    path: Path,
    form: QuestionForm,
    ids: Sequence[str],
    questions: Sequence[str],
    rows: Sequence[tuple[str, str]],
) -> None:
    """Write the answer file ``path`` atomically: the form's header, then ``rows``.

    The temporary file is read back and validated by :func:`prefalign.io.feedback.parse_answers`
    (against the items ``ids`` and their ``questions``) before it is renamed into place.

    Raises:
        OSError: the file could not be written.
        AnswerError: the rows break the contract (nothing is written; a bug of the page).
    """
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(form.header)
            writer.writerows(rows)
        text = temporary.read_text(encoding="utf-8")
        try:
            parse_answers(text, form, ids, questions, f"answers file {path}")
        except ValueError as error:  # FeedbackError: the page let a wrong answer through
            message = f"the answer file failed its check, nothing was written: {error}"
            raise AnswerError(message) from error
