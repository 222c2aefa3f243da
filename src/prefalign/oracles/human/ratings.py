"""The ratings of a ``rate`` round: drafts kept as the person clicks, checked, and the rewards
file written once every query is rated.

Drafts live in the server's memory (per query id), so closing the page and reopening the same URL
shows the ratings entered so far; they are lost when the command exits without a submission
(:class:`~prefalign.oracles.human.session.AnswerSession`). ``REWARDS.csv`` is written atomically
(:func:`prefalign.io.atomic.atomic_path`): the submission is durable the moment it is renamed into
place.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from prefalign.io.atomic import atomic_path
from prefalign.io.feedback import QuestionForm
from prefalign.io.queries import REWARDS_HEADER
from prefalign.oracles.human.session import AnswerError, AnswerSession

__all__ = ["RatingError", "RatingSession", "write_rewards"]


class RatingError(AnswerError):
    """A submitted or drafted rating is malformed; the message says which and why."""


_WHOLE_NUMBER = re.compile(r"^[+-]?\d{1,9}$")
_RATE = QuestionForm("rate", 1)


class RatingSession(AnswerSession[int]):
    """The server-side state of a ``rate`` round: the ratings entered so far (per query id, a
    whole number of the scale) and how the round ended (:class:`AnswerSession`).

    ``REWARDS.csv`` (``id,reward``) is written once every query is rated.
    """

    error = RatingError

    def __init__(self, ids: Sequence[str], scale: tuple[int, int], rewards_path: Path) -> None:
        super().__init__(ids, _RATE, rewards_path)
        self.scale = scale

    @property
    def ids(self) -> tuple[str, ...]:
        """The query ids, in file order."""
        return self.keys

    @property
    def ratings(self) -> dict[str, int]:
        """The ratings entered so far (the live dict; read :meth:`snapshot` from other threads)."""
        return self.answers

    def parse_rating(self, query_id: str, raw: object) -> int:
        """Check one rating: a known id and a whole number within the scale.

        Raises:
            RatingError: the id is unknown or the value is not a whole number of the scale.
        """
        low, high = self.scale
        if query_id not in self._index:
            raise RatingError(f"unknown query id {query_id!r}")
        name = f"{self.label(query_id)} (id {query_id!r})"
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise RatingError(f"the rating of {name} must be a whole number, got {raw!r}")
        text = str(raw).strip()
        if not _WHOLE_NUMBER.match(text):
            raise RatingError(
                f"the rating of {name} is {text!r}, not a whole number from {low} to {high}"
            )
        value = int(text)
        if not low <= value <= high:
            raise RatingError(f"the rating of {name} is {value}, outside the scale {low} to {high}")
        return value

    def parse_answer(self, key: str, raw: object) -> int:
        """One rating (:meth:`parse_rating`)."""
        return self.parse_rating(key, raw)

    def write(self, answers: dict[str, int]) -> None:
        """Write REWARDS.csv (:func:`write_rewards`)."""
        write_rewards(self.rewards_path, self.ids, answers)


def write_rewards(path: Path, ids: Sequence[str], ratings: dict[str, int]) -> None:
    """Write ``id,reward`` rows (query order, rewards as floats) atomically: temp file + replace."""
    with (
        atomic_path(path) as temporary,
        open(temporary, "w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REWARDS_HEADER)
        for query_id in ids:
            writer.writerow([query_id, repr(float(ratings[query_id]))])
