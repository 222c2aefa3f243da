"""The rewards CSV an oracle writes (``id,reward``, one row per query): its size limit, its
parsing and validation, and :class:`OracleError`, the error of every broken file contract.
The other answer forms (:mod:`prefalign.io.feedback`) and the queries file
(:mod:`prefalign.io.queries`) build on it."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.listing import MAX_SHOWN, duplicates, key_problems, shorten, show

#: Header the rewards CSV must have, exactly.
REWARDS_HEADER = ("id", "reward")
#: A rewards file may hold this many bytes, plus :data:`_REWARDS_BYTES_PER_ROW` per query and
#: its id's length (a row is ``id,reward``; 64 bytes leave room for any float and CRLF).
_REWARDS_BASE_BYTES = 1 << 20
_REWARDS_BYTES_PER_ROW = 64


def show_ids(ids) -> str:
    """``'a', 'b', 'c'`` for the first few ids, then ``... and N more``."""
    return show(ids, lambda i: repr(str(i)))


class OracleError(ValueError):
    """The oracle failed, or a queries/rewards file breaks the contract."""


def rewards_size_limit(expected_ids: Sequence[str]) -> int:
    """The largest rewards file accepted for these query ids, in bytes: 1 MiB plus 64 bytes and
    the id's length per query (a valid file is far smaller; a bigger one is refused unread)."""
    ids = [str(i) for i in expected_ids]
    return (
        _REWARDS_BASE_BYTES
        + _REWARDS_BYTES_PER_ROW * len(ids)
        + sum(len(i.encode("utf-8")) for i in ids)
    )


def read_rewards_text(path: Path, limit: int, where: str) -> str:
    """The text of a rewards file, never reading more than ``limit + 1`` bytes of it."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(limit + 1) if size <= limit else b""
    except OSError as exc:
        raise OracleError(f"{where} is not readable: {exc}") from exc
    if size > limit or len(data) > limit:
        raise OracleError(
            f"{where} is {max(size, len(data))} bytes, larger than the limit of {limit} bytes "
            "for this round's queries (one `id,reward` row per query); it was not read"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OracleError(f"{where} is not readable UTF-8 text: {exc}") from exc


def csv_rows(
    text: str,
    header: tuple[str, str],
    where: str,
    unit: str,
    error: type[OracleError] = OracleError,
) -> tuple[list[tuple[int, str, str]], list[int]]:
    """The rows of a two-column answer file with exactly ``header``: ``(line, first, second)``
    for each row of two fields, and the line numbers of rows with another count (blank lines
    are skipped). ``unit`` is what a row stands for (``id``, ``question``) in the message.

    Raises:
        error: the text is empty, is not valid CSV, or has another header.
    """
    if not text.strip():
        raise error(
            f"{where} is empty; expected a header `{','.join(header)}` and one row per {unit}"
        )
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise error(f"{where} is not valid CSV: {exc}") from exc
    if tuple(rows[0]) != header:
        raise error(
            f"{where} has header {','.join(rows[0])!r}; expected exactly {','.join(header)!r}"
        )
    body, malformed = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:  # blank line
            continue
        if len(row) != 2:
            malformed.append(line)
            continue
        body.append((line, row[0], row[1]))
    return body, malformed


def parse_rewards(text: str, expected_ids: Sequence[str], where: str) -> pd.Series:
    """Validate the text of a rewards CSV; ``where`` names its source in error messages."""
    expected = [str(i) for i in expected_ids]
    dup_expected = duplicates(expected)
    if dup_expected:
        raise ValueError(f"expected_ids contains duplicates: {show_ids(dup_expected)}")
    body, malformed = csv_rows(text, REWARDS_HEADER, where, "id")
    problems: list[str] = []
    ids = [item for _, item, _ in body]
    texts = [value for _, _, value in body]
    if malformed:
        problems.append(f"rows without exactly 2 fields on line(s) {malformed[:MAX_SHOWN]}")

    problems += key_problems(ids, expected, "ids")

    values: dict[str, float] = {}
    non_numeric: list[str] = []
    non_finite: list[str] = []
    for i, t in zip(ids, texts, strict=True):
        try:
            v = float(t)
        except ValueError:
            non_numeric.append(f"{i!r} ({t!r})")
            continue
        if not math.isfinite(v):
            non_finite.append(f"{i!r} ({t.strip()})")
            continue
        values.setdefault(i, v)
    if non_numeric:
        problems.append(f"non-numeric rewards for {shorten(non_numeric)}")
    if non_finite:
        problems.append(f"non-finite rewards (NaN/inf) for {shorten(non_finite)}")

    if problems:
        raise OracleError(f"{where}: " + "; ".join(problems))
    return pd.Series(
        [values[i] for i in expected],
        index=pd.Index(expected, name="id"),
        name="reward",
        dtype=np.float64,
    )
