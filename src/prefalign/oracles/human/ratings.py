"""The ratings of one round: drafts kept as the person clicks, checked, and the rewards file
written once every query is rated.

Drafts live in the server's memory (per query id), so closing the page and reopening the same URL
shows the ratings entered so far; they are lost when the command exits without a submission.
``REWARDS.csv`` is written atomically (:func:`prefalign.io.atomic.atomic_path`): the submission is
durable the moment it is renamed into place.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from prefalign.io.atomic import atomic_path
from prefalign.io.queries import REWARDS_HEADER

__all__ = ["RatingError", "RatingSession", "write_rewards"]


class RatingError(ValueError):
    """A submitted or drafted rating is malformed; the message says which and why."""


_WHOLE_NUMBER = re.compile(r"^[+-]?\d{1,9}$")


class RatingSession:
    """The server-side state of one round: the ratings entered so far and how the round ended.

    All methods are thread-safe. ``outcome`` is ``None`` while open, then ``"submitted"``
    (REWARDS.csv written) or ``"timed_out"`` (nothing written). ``done`` is set the moment
    REWARDS.csv is renamed into place: the submission is durable then, and the round ends
    whatever happens to the reply (a closed tab, a reset connection). ``replied`` is set once the
    thank-you page was sent or its sending failed.
    """

    def __init__(self, ids: Sequence[str], scale: tuple[int, int], rewards_path: Path) -> None:
        self.ids = tuple(ids)
        self.scale = scale
        self.rewards_path = rewards_path
        self.ratings: dict[str, int] = {}
        self.outcome: Literal["submitted", "timed_out"] | None = None
        self.done = threading.Event()
        self.replied = threading.Event()
        self._index = {query_id: i for i, query_id in enumerate(self.ids)}
        self._lock = threading.Lock()

    def label(self, query_id: str) -> str:
        """How the page names a query: ``Query <position>``."""
        return f"Query {self._index[query_id] + 1}"

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

    def _parse_all(self, pairs: Iterable[tuple[str, object]]) -> tuple[dict[str, int], list[str]]:
        """Parse (id, raw value) pairs; returns the valid ratings and the error messages."""
        parsed: dict[str, int] = {}
        errors: list[str] = []
        for query_id, raw in pairs:
            if query_id in parsed:
                errors.append(f"query id {query_id!r} was rated twice in one request")
                continue
            try:
                parsed[query_id] = self.parse_rating(query_id, raw)
            except RatingError as error:
                errors.append(str(error))
        return parsed, errors

    def snapshot(self) -> dict[str, int]:
        """A copy of the ratings entered so far."""
        with self._lock:
            return dict(self.ratings)

    def missing(self) -> list[str]:
        """Ids without a rating, in query order."""
        with self._lock:
            return [query_id for query_id in self.ids if query_id not in self.ratings]

    def save_draft(self, pairs: Iterable[tuple[str, object]]) -> int:
        """Keep ratings entered so far; all or nothing. Returns how many queries are rated.

        Raises:
            RatingError: any pair is malformed (nothing is kept), or the round is closed.
        """
        parsed, errors = self._parse_all(pairs)
        if errors:
            raise RatingError("; ".join(errors))
        with self._lock:
            if self.outcome is not None:
                raise RatingError("this round is closed; ratings can no longer be changed")
            self.ratings.update(parsed)
            return len(self.ratings)

    def submit(self, pairs: Iterable[tuple[str, object]]) -> list[str]:
        """Merge a submission into the ratings; write REWARDS.csv when every query is rated.

        A malformed submission changes nothing. A well-formed but incomplete one keeps its ratings
        (as a draft) and is refused. Returns the error messages: empty when the rewards were
        written (``outcome`` is then ``"submitted"``).

        Raises:
            OSError: REWARDS.csv could not be written (the ratings are kept; submit again).
        """
        parsed, errors = self._parse_all(pairs)
        if errors:
            return errors
        with self._lock:
            if self.outcome is not None:
                return ["this round is closed; ratings can no longer be changed"]
            self.ratings.update(parsed)
            missing = [query_id for query_id in self.ids if query_id not in self.ratings]
            if missing:
                if len(missing) == 1:
                    count = f"1 of {len(self.ids)} queries is"
                else:
                    count = f"{len(missing)} of {len(self.ids)} queries are"
                return [f"{count} not rated yet. Rate every query, then submit again."]
            write_rewards(self.rewards_path, self.ids, self.ratings)
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
