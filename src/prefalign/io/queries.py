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

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.atomic import atomic_path
from prefalign.io.feedback import group_items, parse_answers, parse_form
from prefalign.io.listing import MAX_SHOWN, duplicates
from prefalign.io.rewards_csv import (
    REWARDS_HEADER,
    OracleError,
    parse_rewards,
    read_rewards_text,
    rewards_size_limit,
    show_ids,
)

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

#: Fixed zip member timestamp, so identical queries give identical bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


# ----------------------------------------------------------------------------------------------
# helpers


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
        raise OracleError(f"{where}: duplicate ids {show_ids(dup)}")
    if x.size and not np.isfinite(x).all():
        bad = ids[~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)]
        raise OracleError(f"{where}: non-finite values in `x` for ids {show_ids(bad)}")


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

    path = Path(path)
    if not path.is_file():
        raise OracleError(f"answers file {path} does not exist")
    where = f"answers file {path}"
    ids = questions.ids.tolist()
    text = read_rewards_text(path, rewards_size_limit(ids), where)
    return parse_answers(text, parse_form(questions.form), ids, questions.questions.tolist(), where)


# ----------------------------------------------------------------------------------------------
# running the oracle
