"""The answers of one round, whatever its form: drafts kept as the person clicks, checked, and the
answer file written once every question is answered.

:class:`AnswerSession` holds what every form shares: the answers so far, keyed by what is answered
(a query id for ``rate`` and ``binary``, a question id for ``pairwise`` and ``best-of-K``), the
all-or-nothing drafts, the refusal of an incomplete or malformed submission, and how the round
ended. A subclass says how one answer is checked and how the file is written
(:class:`~prefalign.oracles.human.ratings.RatingSession`,
:class:`~prefalign.oracles.human.answers.BinarySession`,
:class:`~prefalign.oracles.human.answers.ChoiceSession`).

Drafts live in the server's memory, so closing the page and reopening the same URL shows the
answers entered so far; they are lost when the command exits without a submission. The file is
written atomically (:func:`prefalign.io.atomic.atomic_path`): the submission is durable the moment
it is renamed into place.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Generic, Literal, TypeVar

from prefalign.io.feedback import QuestionForm
from prefalign.oracles.human.wording import Wording, wording

__all__ = ["AnswerError", "AnswerSession"]

Value = TypeVar("Value")


class AnswerError(ValueError):
    """A submitted or drafted answer is malformed; the message says which and why."""


class AnswerSession(ABC, Generic[Value]):
    """The server-side state of one round: the answers entered so far and how the round ended.

    All methods are thread-safe. ``outcome`` is ``None`` while open, then ``"submitted"`` (the
    file written) or ``"timed_out"`` (nothing written). ``done`` is set the moment the file is
    renamed into place: the submission is durable then, and the round ends whatever happens to
    the reply (a closed tab, a reset connection). ``replied`` is set once the thank-you page was
    sent or its sending failed.

    Attributes:
        keys: what is answered, in file order (query ids, or question ids).
        form: the question form.
        words: how the page and the messages name things (:mod:`~.wording`).
        rewards_path: the answer file to write.
    """

    #: The error raised by :meth:`parse_answer` and :meth:`save_draft`.
    error: type[AnswerError] = AnswerError

    def __init__(self, keys: Sequence[str], form: QuestionForm, rewards_path: Path) -> None:
        self.keys = tuple(keys)
        self.form = form
        self.words: Wording = wording(form)
        self.rewards_path = rewards_path
        self.answers: dict[str, Value] = {}
        self.outcome: Literal["submitted", "timed_out"] | None = None
        self.done = threading.Event()
        self.replied = threading.Event()
        self._index = {key: i for i, key in enumerate(self.keys)}
        self._lock = threading.Lock()

    # -- what a form says ---------------------------------------------------------------------

    def label(self, key: str) -> str:
        """How the page names what ``key`` stands for, by its position: ``Query 3``,
        ``Question 3``."""
        return f"{self.words.item.capitalize()} {self._index[key] + 1}"

    @abstractmethod
    def parse_answer(self, key: str, raw: object) -> Value:
        """Check one answer to a known ``key``; raises :attr:`error` naming it and why."""

    @abstractmethod
    def write(self, answers: dict[str, Value]) -> None:
        """Write the answer file (every key answered) atomically; raises OSError."""

    # -- shared -------------------------------------------------------------------------------

    def _check(self, key: str, raw: object) -> Value:
        if key not in self._index:
            raise self.error(f"unknown {self.words.key_name} {key!r}")
        return self.parse_answer(key, raw)

    def _parse_all(self, pairs: Iterable[tuple[str, object]]) -> tuple[dict[str, Value], list[str]]:
        """Parse (key, raw value) pairs; returns the valid answers and the error messages."""
        parsed: dict[str, Value] = {}
        errors: list[str] = []
        for key, raw in pairs:
            if key in parsed:
                words = self.words
                errors.append(f"{words.key_name} {key!r} was {words.answered} twice in one request")
                continue
            try:
                parsed[key] = self._check(key, raw)
            except AnswerError as error:
                errors.append(str(error))
        return parsed, errors

    def _closed(self) -> str:
        return f"this round is closed; {self.words.answers} can no longer be changed"

    def snapshot(self) -> dict[str, Value]:
        """A copy of the answers entered so far."""
        with self._lock:
            return dict(self.answers)

    def missing(self) -> list[str]:
        """Keys without an answer, in file order."""
        with self._lock:
            return [key for key in self.keys if key not in self.answers]

    def save_draft(self, pairs: Iterable[tuple[str, object]]) -> int:
        """Keep answers entered so far; all or nothing. Returns how many keys are answered.

        Raises:
            AnswerError: any pair is malformed (nothing is kept), or the round is closed.
        """
        parsed, errors = self._parse_all(pairs)
        if errors:
            raise self.error("; ".join(errors))
        with self._lock:
            if self.outcome is not None:
                raise self.error(self._closed())
            self.answers.update(parsed)
            return len(self.answers)

    def submit(self, pairs: Iterable[tuple[str, object]]) -> list[str]:
        """Merge a submission into the answers; write the file when every key is answered.

        A malformed submission changes nothing. A well-formed but incomplete one keeps its answers
        (as a draft) and is refused. Returns the error messages: empty when the file was written
        (``outcome`` is then ``"submitted"``).

        Raises:
            OSError: the file could not be written (the answers are kept; submit again).
        """
        parsed, errors = self._parse_all(pairs)
        if errors:
            return errors
        words = self.words
        with self._lock:
            if self.outcome is not None:
                return [self._closed()]
            self.answers.update(parsed)
            missing = [key for key in self.keys if key not in self.answers]
            if missing:
                total = len(self.keys)
                if len(missing) == 1:
                    count = f"1 of {total} {words.items} is"
                else:
                    count = f"{len(missing)} of {total} {words.items} are"
                return [
                    f"{count} not {words.answered} yet. {words.verb} every {words.item}, "
                    "then submit again."
                ]
            try:
                self.write(self.answers)
            except AnswerError as error:  # the file failed its own check: nothing written
                return [str(error)]
            self.outcome = "submitted"
            self.done.set()
            return []

    def close_on_timeout(self) -> bool:
        """Close the round because time ran out; False when a submission got there first."""
        with self._lock:
            if self.outcome is not None:
                return False
            self.outcome = "timed_out"
            return True
