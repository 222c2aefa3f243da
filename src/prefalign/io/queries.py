"""A round's queries file and the oracle's rewards file (``shared/docs/design.md``, "Contracts").

- queries: ``.npz`` with arrays ``id`` (unicode strings, unique) and ``x`` (float32, shape
  ``(n, *event_shape)``), written by :func:`write_queries`, read by :func:`read_queries`;
  the same queries give the same bytes. A file whose questions are not ratings also holds
  ``form`` (a 0-d unicode array: ``binary``, ``pairwise``, ``best-of-K``) and ``question`` (the
  question id of each item; a question's items are contiguous), read by :func:`read_questions`
  (:mod:`prefalign.io.feedback`); without them every item is its own ``rate`` question.
- rewards: CSV with header exactly ``id,reward`` and one row per query id, finite floats, read
  and validated by :func:`read_rewards`; a file over :func:`rewards_size_limit` is refused before
  it is read.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.atomic import atomic_path
from prefalign.io.listing import MAX_SHOWN, duplicates, key_problems, shorten, show

__all__ = [
    "REWARDS_HEADER",
    "OracleError",
    "Questions",
    "read_answers",
    "read_queries",
    "read_questions",
    "read_rewards",
    "rewards_size_limit",
    "write_queries",
]

StrPath = str | os.PathLike[str]

#: Header the rewards CSV must have, exactly.
REWARDS_HEADER = ("id", "reward")
#: A rewards file may hold this many bytes, plus :data:`_REWARDS_BYTES_PER_ROW` per query and
#: its id's length (a row is ``id,reward``; 64 bytes leave room for any float and CRLF).
_REWARDS_BASE_BYTES = 1 << 20
_REWARDS_BYTES_PER_ROW = 64
#: Fixed zip member timestamp, so identical queries give identical bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class OracleError(ValueError):
    """The oracle failed, or a queries/rewards file breaks the contract."""


# ----------------------------------------------------------------------------------------------
# helpers


def _show_ids(ids: Iterable[object]) -> str:
    """``'a', 'b', 'c'`` for the first few ids, then ``... and N more``."""
    return show(ids, lambda i: repr(str(i)))


# ----------------------------------------------------------------------------------------------
# queries


def _check_queries(ids: np.ndarray, x: np.ndarray, where: str) -> None:
    if ids.ndim != 1:
        raise OracleError(f"{where}: `id` must be 1-D, got shape {ids.shape}")
    if x.ndim < 1:
        raise OracleError(f"{where}: `x` must have a leading query axis, got a scalar")
    if ids.shape[0] != x.shape[0]:
        raise OracleError(f"{where}: {ids.shape[0]} ids but {x.shape[0]} rows of `x`")
    empty = [i for i, v in enumerate(ids.tolist()) if v == ""]
    if empty:
        raise OracleError(f"{where}: empty id at position(s) {empty[:MAX_SHOWN]}")
    dup = duplicates(ids.tolist())
    if dup:
        raise OracleError(f"{where}: duplicate ids {_show_ids(dup)}")
    if x.size and not np.isfinite(x).all():
        bad = ids[~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)]
        raise OracleError(f"{where}: non-finite values in `x` for ids {_show_ids(bad)}")


def write_queries(
    path: StrPath,
    ids: Sequence[str],
    x: np.ndarray,
    *,
    form: str = "rate",
    questions: Sequence[str] | None = None,
) -> None:
    """Write the queries file: an ``.npz`` with arrays ``id`` (unicode) and ``x`` (float32), and
    for a form other than ``rate`` also ``form`` and ``question``.

    The file is written atomically (a temporary file in the same directory, then
    :func:`os.replace`) and deterministically (fixed zip timestamps, no compression), so the same
    queries always give the same bytes.

    Args:
        path: destination, conventionally ``queries.npz``.
        ids: one unique, non-empty string per query.
        x: array of shape ``(len(ids), *event_shape)``; cast to float32, must be finite.
        form: the question form (:func:`prefalign.io.feedback.parse_form`).
        questions: the question id of each item (contiguous groups of the form's size);
            None: each item is its own question, named by its id.

    Raises:
        OracleError: ids not unique, empty, or not matching ``x``; non-finite ``x``; questions
            that do not fit the form.
    """
    from prefalign.io.feedback import group_items, parse_form

    path = Path(path)
    id_arr = np.asarray([str(i) for i in ids], dtype=np.str_)
    if id_arr.size == 0:
        id_arr = id_arr.astype("<U1")
    x_arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    where = f"queries for {path}"
    _check_queries(id_arr, x_arr, where)
    arrays = [("id", id_arr), ("x", x_arr)]
    parsed = parse_form(form)
    question_list = [str(q) for q in (id_arr.tolist() if questions is None else questions)]
    group_items(id_arr.tolist(), question_list, parsed, where)
    if parsed.name != "rate":
        question_arr = np.asarray(question_list, dtype=np.str_)
        arrays += [("form", np.asarray(parsed.name, dtype=np.str_)), ("question", question_arr)]
    path.parent.mkdir(parents=True, exist_ok=True)

    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as fh,
        zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED) as zf,
    ):
        for name, arr in arrays:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def read_queries(path: StrPath) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a queries file written by :func:`write_queries` (or by anyone).

    Never unpickles: object arrays are rejected.

    Returns:
        ``(ids, x)``: ``ids`` a 1-D unicode array of unique strings, ``x`` float32 of shape
        ``(len(ids), *event_shape)``.

    Raises:
        OracleError: missing or unreadable file, missing ``id``/``x`` arrays, wrong dtypes,
            duplicate ids, lengths that differ, non-finite ``x``.
    """
    path = Path(path)
    if not path.is_file():
        raise OracleError(f"queries file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("id", "x") if k not in npz.files]
            if missing:
                raise OracleError(
                    f"queries file {path} lacks array(s) {missing}; it has {sorted(npz.files)}"
                )
            ids = npz["id"]
            x = npz["x"]
    except OracleError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise OracleError(f"queries file {path} is not a readable .npz file: {exc}") from exc
    if ids.dtype.kind != "U":
        raise OracleError(f"queries file {path}: `id` must be unicode strings, got {ids.dtype}")
    if x.dtype.kind not in "fiu":
        raise OracleError(f"queries file {path}: `x` must be numeric, got {x.dtype}")
    x = x.astype(np.float32, copy=False)
    _check_queries(ids, x, f"queries file {path}")
    return ids, x


@dataclass(frozen=True)
class Questions:
    """A queries file as the oracle sees it: the items and the questions they belong to."""

    ids: np.ndarray  # (n,) unicode, unique
    x: np.ndarray  # (n, *event_shape) float32
    form: str  # rate | binary | pairwise | best-of-K
    questions: np.ndarray  # (n,) unicode: the question of each item (its id for rate/binary)

    @property
    def n_questions(self) -> int:
        """Questions asked: units of budget."""
        return len(dict.fromkeys(self.questions.tolist()))


def read_questions(path: StrPath) -> Questions:
    """Read a queries file with its question form (``rate`` when the file names none).

    Raises:
        OracleError: as :func:`read_queries`, and a ``form`` that is not a form, a ``question``
            array that does not match the ids or whose groups do not fit the form.
    """
    from prefalign.io.feedback import group_items, parse_form

    ids, x = read_queries(path)
    where = f"queries file {path}"
    with np.load(path, allow_pickle=False) as npz:
        form = npz["form"] if "form" in npz.files else np.asarray("rate")
        questions = npz["question"] if "question" in npz.files else ids
    if form.dtype.kind != "U" or form.ndim != 0:
        raise OracleError(
            f"{where}: `form` must be one unicode string, got {form.dtype} {form.shape}"
        )
    if questions.dtype.kind != "U" or questions.shape != ids.shape:
        raise OracleError(
            f"{where}: `question` must be unicode with one entry per id ({ids.shape[0]}), got "
            f"{questions.dtype} {questions.shape}"
        )
    parsed = parse_form(str(form))
    group_items(ids.tolist(), questions.tolist(), parsed, where)
    return Questions(ids=ids, x=x, form=parsed.name, questions=questions)


# ----------------------------------------------------------------------------------------------
# rewards


def read_rewards(path: StrPath, expected_ids: Sequence[str]) -> pd.Series:
    """Read and validate a rewards CSV against the ids that were queried.

    The file must have the header ``id,reward`` exactly and one row per expected id, each with a
    finite float reward. All problems found are reported together in one message that names
    each problem and the first few offending ids.

    Args:
        path: the rewards CSV.
        expected_ids: the query ids (unique), e.g. ``read_queries(...)[0]``.

    Returns:
        Float64 series named ``reward``, indexed by ``id`` in the order of ``expected_ids``.

    Raises:
        OracleError: missing or empty file, wrong header, malformed rows, missing, duplicate or
            unknown ids, non-numeric or non-finite rewards.
    """
    path = Path(path)
    if not path.is_file():
        raise OracleError(f"rewards file {path} does not exist")
    where = f"rewards file {path}"
    text = read_rewards_text(path, rewards_size_limit(expected_ids), where)
    return parse_rewards(text, expected_ids, where)


def read_answers(path: StrPath, questions: Questions) -> pd.Series:
    """Read and validate the oracle's answer file for ``questions`` in their form
    (:func:`prefalign.io.feedback.parse_answers`): one value per shown item.

    Raises:
        OracleError: a missing, oversized or unreadable file, and every problem
            :func:`~prefalign.io.feedback.parse_answers` finds.
    """
    from prefalign.io.feedback import parse_answers, parse_form

    path = Path(path)
    if not path.is_file():
        raise OracleError(f"answers file {path} does not exist")
    where = f"answers file {path}"
    ids = questions.ids.tolist()
    text = read_rewards_text(path, rewards_size_limit(ids), where)
    return parse_answers(text, parse_form(questions.form), ids, questions.questions.tolist(), where)


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
        raise ValueError(f"expected_ids contains duplicates: {_show_ids(dup_expected)}")
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


# ----------------------------------------------------------------------------------------------
# running the oracle
