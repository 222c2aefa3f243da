"""The cumulative observation dataset of one campaign (``shared/docs/design.md``, "Contracts").

One row per query ever answered; the file of round ``r`` holds rounds ``0..r``. Columns:

=================  ==================  ==========================================================
column             type                meaning
=================  ==================  ==========================================================
``campaign``       str                 campaign name (domain × method), one value per file
``seed``           int64               campaign seed, one value per file
``round``          int64               active-learning round, 0 = cold start; rounds 0..R
``id``             str                 query id, unique across the whole dataset
``x``              list<float32>       the sample, flattened; its shape is the file's
                                       ``event_shape`` schema metadata (JSON list)
``reward``         float64             the oracle's answer for this item, finite: the rating
                                       (``rate``), 1/0 (``binary``: like/dislike), 1 for the
                                       chosen item and 0 for the others (``pairwise``,
                                       ``best-of-K``; 0.5 each on a pairwise tie)
``selected_by``    str                 how the query was chosen: ``top``, ``random``, ``ucb``, ...
``fk_log_weight``  float64             FK (path) log-weight at selection time; NaN when none
``surrogate_pred`` float64             surrogate prediction at selection time; NaN when none
``form``           str                 the question form (:mod:`prefalign.io.feedback`), one value
                                       per file
``question``       str                 the question the item was shown in (its ``id`` for
                                       ``rate`` and ``binary``); a question lies in one round
=================  ==================  ==========================================================

Files of format ``observations/1`` (before question forms) have no ``form`` and ``question``
columns; they read as ``rate`` questions of one item each.

The file is Parquet, written atomically (temporary file, fsync, :func:`os.replace`) and
deterministically: the same data always gives the same bytes, so DVC hashes of identical runs
match. In memory the dataset is a :class:`pandas.DataFrame` with those columns (``x`` holds 1-D
float32 arrays) and ``df.attrs["event_shape"]`` set.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prefalign.io.atomic import atomic_path
from prefalign.io.json_text import parse_json
from prefalign.io.listing import duplicates, show

__all__ = [
    "COLUMNS",
    "ObservationError",
    "append_round",
    "new_round_frame",
    "observations_xy",
    "read_observations",
    "write_observations",
]

StrPath = str | os.PathLike[str]

#: Column order of the dataset, in memory and on disk.
COLUMNS = (
    "campaign",
    "seed",
    "round",
    "id",
    "x",
    "reward",
    "selected_by",
    "fk_log_weight",
    "surrogate_pred",
    "form",
    "question",
)
#: Columns added by format ``observations/2``; a version-1 file lacks them.
_V2_COLUMNS = ("form", "question")
#: Parquet schema metadata key holding the event shape as a JSON list.
EVENT_SHAPE_KEY = "event_shape"
#: Parquet schema metadata key naming the file format and its version.
FORMAT_KEY = "prefalign_format"
FORMAT_VERSION = "observations/2"

_SCHEMA = pa.schema(
    [
        pa.field("campaign", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("round", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("x", pa.list_(pa.field("element", pa.float32(), nullable=False)), nullable=False),
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("selected_by", pa.string(), nullable=False),
        pa.field("fk_log_weight", pa.float64(), nullable=False),
        pa.field("surrogate_pred", pa.float64(), nullable=False),
        pa.field("form", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
    ]
)
_STR_COLUMNS = ("campaign", "id", "selected_by", "form", "question")
_INT_COLUMNS = ("seed", "round")
_FLOAT_COLUMNS = ("reward", "fk_log_weight", "surrogate_pred")


class ObservationError(ValueError):
    """The observation dataset, or a round about to be added to it, is invalid."""


# ----------------------------------------------------------------------------------------------
# helpers


def _check_event_shape(event_shape: Sequence[int]) -> tuple[int, ...]:
    """``event_shape`` as a tuple of positive ints, or an error saying what is wrong with it."""
    try:
        dims = list(event_shape)
    except TypeError:
        dims = None
    if (
        not dims
        or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in dims)
        or any(d <= 0 for d in dims)
    ):
        raise ObservationError(
            f"event_shape must be a non-empty sequence of positive ints, got {event_shape!r}"
        )
    return tuple(int(d) for d in dims)


def _frame(columns: dict[str, object], event_shape: tuple[int, ...]) -> pd.DataFrame:
    """The canonical in-memory dataset: fixed column order and dtypes, ``attrs['event_shape']``.

    ``columns['x']`` is a float32 array of shape ``(n, prod(event_shape))``.
    """
    x2d = np.asarray(columns["x"], dtype=np.float32)
    n = x2d.shape[0]
    data: dict[str, pd.Series] = {}
    for name in COLUMNS:
        if name == "x":
            values = np.empty(n, dtype=object)
            for i in range(n):
                values[i] = x2d[i]
            data[name] = pd.Series(values, dtype=object)
        elif name in _STR_COLUMNS:
            data[name] = pd.Series(np.asarray(columns[name], dtype=object), dtype=str)
        elif name in _INT_COLUMNS:
            data[name] = pd.Series(np.asarray(columns[name], dtype=np.int64))
        else:
            data[name] = pd.Series(np.asarray(columns[name], dtype=np.float64))
    df = pd.DataFrame(data, columns=list(COLUMNS))
    df.attrs[EVENT_SHAPE_KEY] = event_shape
    return df


def _x_matrix(df: pd.DataFrame, event_shape: tuple[int, ...], where: str) -> np.ndarray:
    """Stack the ``x`` column into ``(n, prod(event_shape))`` float32, checking every length."""
    d = math.prod(event_shape)
    n = len(df)
    out = np.empty((n, d), dtype=np.float32)
    bad: list[str] = []
    for i, (row_id, value) in enumerate(zip(df["id"], df["x"], strict=True)):
        arr = np.asarray(value, dtype=np.float32)
        if arr.size != d:
            bad.append(str(row_id))
            continue
        out[i] = arr.reshape(-1)
    if bad:
        raise ObservationError(
            f"{where}: x of ids {show(bad)} does not have {d} values (event shape {event_shape})"
        )
    return out


def _validate(
    df: pd.DataFrame, event_shape: tuple[int, ...], where: str, *, cumulative: bool
) -> np.ndarray:
    """Check a dataset; return its ``x`` as a 2-D float32 array.

    ``cumulative``: the rounds must start at 0 (a whole dataset), not just be consecutive (a
    single round to append).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in COLUMNS]
    if missing or extra:
        raise ObservationError(
            f"{where}: columns must be exactly {list(COLUMNS)}; missing {missing}, unexpected {extra}"
        )
    attrs_shape = df.attrs.get(EVENT_SHAPE_KEY)
    if attrs_shape is not None and tuple(attrs_shape) != event_shape:
        raise ObservationError(
            f"{where}: event shape {tuple(attrs_shape)} of the data differs from {event_shape}"
        )
    if len(df) == 0:
        return np.empty((0, math.prod(event_shape)), dtype=np.float32)

    for name in (*_STR_COLUMNS, *_INT_COLUMNS, "x"):  # float columns: checked below
        if df[name].isna().any():
            raise ObservationError(f"{where}: column {name!r} has missing values")
    for name in _STR_COLUMNS:
        bad = [v for v in df[name] if not isinstance(v, str) or v == ""]
        if bad:
            raise ObservationError(
                f"{where}: column {name!r} needs non-empty strings, got {bad[:3]}"
            )
    for name in _INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(df[name]):
            raise ObservationError(
                f"{where}: column {name!r} must be integers, is {df[name].dtype}"
            )
    for name in _FLOAT_COLUMNS:
        if not pd.api.types.is_numeric_dtype(df[name]) or pd.api.types.is_bool_dtype(df[name]):
            raise ObservationError(f"{where}: column {name!r} must be numeric, is {df[name].dtype}")

    for name in ("campaign", "seed"):
        values = pd.unique(df[name])
        if len(values) != 1:
            raise ObservationError(
                f"{where}: one {name} per dataset, found {len(values)}: {show(list(values))}"
            )
    rounds = df["round"].to_numpy(np.int64)
    if (np.diff(rounds) < 0).any():
        raise ObservationError(f"{where}: rows are not in round order")
    present = np.unique(rounds)
    first = 0 if cumulative else present[0]
    if present[0] < 0 or not np.array_equal(present, np.arange(first, first + len(present))):
        start = "0, 1, 2, ..." if cumulative else "consecutive non-negative integers"
        raise ObservationError(f"{where}: rounds must be {start}; got {present.tolist()}")

    dup = duplicates(df["id"].tolist())
    if dup:
        raise ObservationError(f"{where}: duplicate ids {show(dup)}")
    reward = df["reward"].to_numpy(np.float64)
    bad_reward = ~np.isfinite(reward)
    if bad_reward.any():
        raise ObservationError(
            f"{where}: non-finite rewards for ids {show(df['id'][bad_reward].tolist())}"
        )
    for name in ("fk_log_weight", "surrogate_pred"):
        inf = np.isinf(df[name].to_numpy(np.float64))
        if inf.any():
            raise ObservationError(
                f"{where}: infinite {name} for ids {show(df['id'][inf].tolist())} "
                "(NaN is allowed for 'no value', infinity is not)"
            )
    _check_answers(df, where)
    x2d = _x_matrix(df, event_shape, where)
    bad_x = ~np.isfinite(x2d).all(axis=1)
    if bad_x.any():
        raise ObservationError(f"{where}: non-finite x for ids {show(df['id'][bad_x].tolist())}")
    return x2d


def _check_answers(df: pd.DataFrame, where: str) -> None:
    """One form per dataset; each question in one round, with the form's number of items and
    values its answer can give (0/1 for binary; one chosen item, or a pairwise tie)."""
    from prefalign.io.feedback import FeedbackError, group_items, parse_form

    forms = pd.unique(df["form"])
    if len(forms) != 1:
        raise ObservationError(f"{where}: one form per dataset, found {show(list(forms))}")
    try:
        form = parse_form(str(forms[0]))
    except FeedbackError as exc:
        raise ObservationError(f"{where}: {exc}") from exc
    reward = df["reward"].to_numpy(np.float64)
    if form.name == "binary" and not np.isin(reward, (0.0, 1.0)).all():
        bad = df["id"][~np.isin(reward, (0.0, 1.0))].tolist()
        raise ObservationError(f"{where}: binary answers other than 0 or 1 for ids {show(bad)}")
    if not form.is_choice:
        same = df["question"].to_numpy(str) == df["id"].to_numpy(str)
        if not same.all():
            raise ObservationError(
                f"{where}: a {form.name} question is its item: question differs from id for "
                f"ids {show(df['id'][~same].tolist())}"
            )
        return
    spans = df.groupby("question", sort=False)["round"].nunique()
    if (spans > 1).any():
        raise ObservationError(
            f"{where}: question(s) {show(spans.index[spans > 1].tolist())} span several rounds"
        )
    try:
        groups = group_items(df["id"].tolist(), df["question"].tolist(), form, where)
    except FeedbackError as exc:
        raise ObservationError(str(exc)) from exc
    values = pd.Series(reward, index=df["id"].to_numpy(str))
    bad = []
    for question, items in groups.items():
        v = values.loc[items].to_numpy()
        one_choice = np.isin(v, (0.0, 1.0)).all() and v.sum() == 1.0
        tie = form.allows_tie and np.all(v == 0.5)
        if not (one_choice or tie):
            bad.append(question)
    if bad:
        raise ObservationError(
            f"{where}: the answers to question(s) {show(bad)} do not choose one item "
            f"(1 for the chosen, 0 for the others{'; 0.5 each for a tie' if form.allows_tie else ''})"
        )


def _event_shape_of(df: pd.DataFrame, where: str) -> tuple[int, ...]:
    shape = df.attrs.get(EVENT_SHAPE_KEY)
    if shape is None:
        raise ObservationError(
            f"{where}: the frame has no attrs['event_shape']; build it with new_round_frame "
            "or read_observations"
        )
    return _check_event_shape(shape)


def _as_column(name: str, value: object, n: int, dtype: type) -> np.ndarray:
    """Broadcast a scalar, or check the length of a per-query sequence."""
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 0:
        return np.full(n, arr.item(), dtype=dtype)
    if arr.shape != (n,):
        raise ObservationError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    return arr


# ----------------------------------------------------------------------------------------------
# building the dataset


def new_round_frame(
    campaign: str,
    seed: int,
    round: int,
    ids: Sequence[str],
    x: np.ndarray,
    rewards: pd.Series | Sequence[float] | np.ndarray,
    selected_by: str | Sequence[str],
    fk_log_weight: float | Sequence[float] | np.ndarray,
    surrogate_pred: float | Sequence[float] | np.ndarray | None,
    *,
    form: str = "rate",
    questions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The observations of one round, as a frame ready for :func:`append_round`.

    Args:
        campaign: campaign name, non-empty.
        seed: campaign seed.
        round: the round number (0 = cold start).
        ids: the query ids, unique, one per row of ``x``.
        x: the queried samples, shape ``(n, *event_shape)``; stored flattened as float32.
        rewards: the oracle's answers: a series indexed by id (as from
            :func:`prefalign.io.queries.read_rewards`; aligned by id, must cover exactly ``ids``), or
            a sequence in the order of ``ids``. Must be finite.
        selected_by: how each query was chosen (``top``/``random``/``ucb``...), one string for all
            or one per query.
        fk_log_weight: FK log-weight of each query at selection time (scalar broadcasts; NaN for
            none).
        surrogate_pred: surrogate prediction at selection time; None or NaN where there is no
            surrogate yet (round 0).
        form: the question form the answers were given in (:mod:`prefalign.io.feedback`).
        questions: the question of each item (None: its id, as for ``rate`` and ``binary``).

    Returns:
        The frame, with ``attrs['event_shape'] == x.shape[1:]``.

    Raises:
        ObservationError: inconsistent lengths, ids not matching the rewards, duplicate ids,
            non-finite rewards or x.
    """
    x_arr = np.asarray(x, dtype=np.float32)
    if x_arr.ndim < 2:
        raise ObservationError(f"x must have shape (n, *event_shape), got {x_arr.shape}")
    n = x_arr.shape[0]
    event_shape = _check_event_shape(x_arr.shape[1:])
    id_list = [str(i) for i in ids]
    if len(id_list) != n:
        raise ObservationError(f"{len(id_list)} ids but {n} rows of x")
    dup = duplicates(id_list)
    if dup:
        raise ObservationError(f"duplicate ids {show(dup)}")

    if isinstance(rewards, pd.Series):
        index = [str(i) for i in rewards.index]
        dup_r = duplicates(index)
        if dup_r:
            raise ObservationError(f"rewards has duplicate ids {show(dup_r)}")
        missing = [i for i in id_list if i not in set(index)]
        unknown = [i for i in index if i not in set(id_list)]
        if missing or unknown:
            raise ObservationError(
                f"rewards do not match the ids: missing {show(missing)}; unknown {show(unknown)}"
            )
        reward = pd.Series(rewards.to_numpy(np.float64), index=index).loc[id_list].to_numpy()
    else:
        reward = _as_column("rewards", rewards, n, np.float64)
        if np.ndim(rewards) == 0:
            raise ObservationError("rewards must have one value per query, got a scalar")

    if isinstance(round, bool) or not isinstance(round, int | np.integer) or round < 0:
        raise ObservationError(f"round must be a non-negative int, got {round!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ObservationError(f"seed must be an int, got {seed!r}")
    columns: dict[str, object] = {
        "campaign": [str(campaign)] * n,
        "seed": np.full(n, seed, dtype=np.int64),
        "round": np.full(n, round, dtype=np.int64),
        "id": id_list,
        "x": x_arr.reshape(n, -1),
        "reward": reward,
        "selected_by": _as_column("selected_by", selected_by, n, object).astype(str).tolist(),
        "fk_log_weight": _as_column("fk_log_weight", fk_log_weight, n, np.float64),
        "surrogate_pred": _as_column(
            "surrogate_pred", np.nan if surrogate_pred is None else surrogate_pred, n, np.float64
        ),
        "form": [str(form)] * n,
        "question": id_list if questions is None else [str(q) for q in questions],
    }
    if len(columns["question"]) != n:
        raise ObservationError(f"{len(columns['question'])} questions but {n} rows of x")
    df = _frame(columns, event_shape)
    _validate(df, event_shape, f"round {round} of campaign {campaign!r}", cumulative=False)
    return df


def append_round(previous: pd.DataFrame | None, round_frame: pd.DataFrame) -> pd.DataFrame:
    """Append one round to the cumulative dataset, checking that it belongs there.

    Args:
        previous: the dataset of rounds ``0..r-1`` (from :func:`read_observations` or an earlier
            :func:`append_round`), or None (or empty) before the cold start.
        round_frame: the new round, from :func:`new_round_frame`.

    Returns:
        A new frame holding rounds ``0..r``; the inputs are not modified.

    Raises:
        ObservationError: the new frame holds several rounds or a round other than
            ``max(previous round) + 1`` (0 when there is no previous), an id already observed,
            another campaign, seed or event shape, non-finite rewards.
    """
    shape = _event_shape_of(round_frame, "round_frame")
    _validate(round_frame, shape, "round_frame", cumulative=False)
    if len(round_frame) == 0:
        raise ObservationError("round_frame is empty: a round needs at least one observation")
    rounds = pd.unique(round_frame["round"])
    if len(rounds) != 1:
        raise ObservationError(f"round_frame must hold one round, holds {sorted(rounds)}")
    new_round = int(rounds[0])

    if previous is None or len(previous) == 0:
        if previous is not None and EVENT_SHAPE_KEY in previous.attrs:
            prev_shape = _event_shape_of(previous, "previous")
            if prev_shape != shape:
                raise ObservationError(
                    f"event shape {shape} of the new round differs from {prev_shape} of the dataset"
                )
        if new_round != 0:
            raise ObservationError(
                f"the first round of a dataset must be round 0, got round {new_round}"
            )
        out = round_frame.copy()
        out.attrs[EVENT_SHAPE_KEY] = shape
        return out

    prev_shape = _event_shape_of(previous, "previous")
    _validate(previous, prev_shape, "previous observations", cumulative=True)
    if prev_shape != shape:
        raise ObservationError(
            f"event shape {shape} of round {new_round} differs from {prev_shape} of the dataset"
        )
    last = int(previous["round"].max())
    if new_round != last + 1:
        raise ObservationError(
            f"round {new_round} cannot follow round {last}: expected round {last + 1}"
        )
    for name in ("campaign", "seed", "form"):
        old, new = (str(f[name].iloc[0]) for f in (previous, round_frame))
        if old != new:
            raise ObservationError(
                f"round {new_round} has {name} {new!r} but the dataset has {name} {old!r}"
            )
    seen = set(previous["id"].tolist())
    again = [i for i in round_frame["id"].tolist() if i in seen]
    if again:
        raise ObservationError(
            f"ids of round {new_round} already observed in earlier rounds: {show(again)}"
        )
    asked = set(previous["question"].tolist())
    again = [q for q in dict.fromkeys(round_frame["question"].tolist()) if q in asked]
    if again:
        raise ObservationError(
            f"questions of round {new_round} already asked in earlier rounds: {show(again)}"
        )
    out = pd.concat([previous, round_frame], ignore_index=True)
    out.attrs = {EVENT_SHAPE_KEY: shape}
    return out


# ----------------------------------------------------------------------------------------------
# files


def _table(df: pd.DataFrame, event_shape: tuple[int, ...], x2d: np.ndarray) -> pa.Table:
    n, d = x2d.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32) if n else [0], pa.int32())
    x_col = pa.ListArray.from_arrays(
        offsets, pa.array(x2d.reshape(-1), pa.float32()), type=_SCHEMA.field("x").type
    )
    arrays: list[pa.Array] = []
    for field in _SCHEMA:
        if field.name == "x":
            arrays.append(x_col)
        elif field.name in _STR_COLUMNS:
            arrays.append(pa.array([str(v) for v in df[field.name]], pa.string()))
        elif field.name in _INT_COLUMNS:
            arrays.append(pa.array(df[field.name].to_numpy(np.int64), pa.int64()))
        else:
            arrays.append(pa.array(df[field.name].to_numpy(np.float64), pa.float64()))
    metadata = {
        EVENT_SHAPE_KEY: json.dumps(list(event_shape)),
        FORMAT_KEY: FORMAT_VERSION,
    }
    return pa.Table.from_arrays(arrays, schema=_SCHEMA.with_metadata(metadata))


def write_observations(df: pd.DataFrame, path: StrPath, event_shape: Sequence[int]) -> None:
    """Validate the dataset and write it to ``path`` as Parquet, atomically and reproducibly.

    The file goes to a temporary name in the same directory, is fsynced, then renamed over
    ``path``: a failure leaves any previous file intact. The bytes depend only on the data
    (no timestamps, fixed schema, compression and row grouping).

    Args:
        df: the cumulative dataset (rounds ``0..r``).
        path: destination file, conventionally ``observations.parquet``.
        event_shape: shape of one sample; ``prod(event_shape)`` values per row of ``x``.

    Raises:
        ObservationError: the dataset is invalid (see :func:`append_round`) or does not match
            ``event_shape``.
    """
    path = Path(path)
    shape = _check_event_shape(event_shape)
    x2d = _validate(df, shape, f"observations for {path}", cumulative=True)
    table = _table(df, shape, x2d)
    path.parent.mkdir(parents=True, exist_ok=True)

    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=3,
            row_group_size=max(len(df), 1),
            write_statistics=True,
            use_dictionary=True,
        )


def _check_schema(schema: pa.Schema, where: str) -> tuple[int, ...]:
    names = list(schema.names)
    if not any(c in names for c in _V2_COLUMNS):  # observations/1, before question forms
        names += list(_V2_COLUMNS)
    if sorted(names) != sorted(COLUMNS) or len(names) != len(COLUMNS):
        missing = [c for c in COLUMNS if c not in names]
        extra = [c for c in names if c not in COLUMNS]
        raise ObservationError(
            f"{where}: columns must be exactly {list(COLUMNS)}; missing {missing}, unexpected {extra}"
        )
    for field in _SCHEMA:
        if field.name not in schema.names:  # a version-1 file's form and question
            continue
        got = schema.field(field.name).type
        if field.name == "x":
            ok = (pa.types.is_list(got) or pa.types.is_large_list(got)) and pa.types.is_float32(
                got.value_type
            )
        elif field.name in _STR_COLUMNS:
            ok = pa.types.is_string(got) or pa.types.is_large_string(got)
        else:
            ok = got == field.type
        if not ok:
            raise ObservationError(
                f"{where}: column {field.name!r} has type {got}, expected {field.type}"
            )
    raw = (schema.metadata or {}).get(EVENT_SHAPE_KEY.encode())
    if raw is None:
        raise ObservationError(f"{where}: schema metadata lacks {EVENT_SHAPE_KEY!r}")
    shape = parse_json(raw, ObservationError, f"{where}: the {EVENT_SHAPE_KEY!r} metadata {raw!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise ObservationError(f"{where}: {EVENT_SHAPE_KEY!r} must be a JSON list of ints: {shape}")
    return _check_event_shape(shape)


def read_observations(path: StrPath) -> tuple[pd.DataFrame, tuple[int, ...]]:
    """Read and validate a dataset written by :func:`write_observations`.

    Returns:
        ``(df, event_shape)``; ``df.attrs['event_shape'] == event_shape``.

    Raises:
        ObservationError: naming ``path``: missing file, not Parquet, wrong schema or metadata,
            invalid data (see :func:`append_round`).
    """
    path = Path(path)
    where = f"observations file {path}"
    if not path.is_file():
        raise ObservationError(f"{where} does not exist")
    try:
        table = pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ObservationError(f"{where} is not a readable Parquet file: {exc}") from exc
    shape = _check_schema(table.schema, where)
    if "form" not in table.schema.names:  # observations/1: rate questions of one item each
        table = table.append_column("form", pa.array(["rate"] * table.num_rows, pa.string()))
        table = table.append_column("question", table.column("id"))
    for name in COLUMNS:  # nulls (as pandas writes NaN) are NaN in the diagnostic columns
        if table.column(name).null_count and name not in ("fk_log_weight", "surrogate_pred"):
            raise ObservationError(f"{where}: column {name!r} has null values")

    n = table.num_rows
    d = math.prod(shape)
    x_col = table.column("x").combine_chunks()
    lengths = np.asarray(x_col.value_lengths().to_numpy(zero_copy_only=False))
    if n and (lengths != d).any():
        bad = [table.column("id")[int(i)].as_py() for i in np.flatnonzero(lengths != d)]
        raise ObservationError(
            f"{where}: x of ids {show(bad)} does not have {d} values (event shape {shape})"
        )
    values = x_col.flatten()
    if values.null_count:
        raise ObservationError(f"{where}: x has null values")
    x2d = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, d)

    columns: dict[str, object] = {"x": x2d}
    for name in COLUMNS:
        if name != "x":
            columns[name] = table.column(name).to_numpy(zero_copy_only=False)
    df = _frame(columns, shape)
    _validate(df, shape, where, cumulative=True)
    return df, shape


def observations_xy(df: pd.DataFrame, event_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Training data for the surrogate.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(n, *event_shape)``, ``y`` float64 rewards ``(n,)``,
        in row order.

    Raises:
        ObservationError: a row of ``x`` does not have ``prod(event_shape)`` values.
    """
    shape = _check_event_shape(event_shape)
    missing = [c for c in ("id", "x", "reward") if c not in df.columns]
    if missing:
        raise ObservationError(f"observations lack column(s) {missing}")
    x2d = _x_matrix(df, shape, "observations")
    return x2d.reshape(len(df), *shape), df["reward"].to_numpy(np.float64, copy=True)
