"""Tests for the cumulative observation dataset (Parquet)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefalign.io import observations as obs
from prefalign.io.observations import (
    COLUMNS,
    ObservationError,
    append_round,
    new_round_frame,
    observations_xy,
    read_observations,
    write_observations,
)

SHAPE = (2, 3)


def make_round(
    r: int,
    k: int = 4,
    *,
    campaign: str = "toy-fkc",
    seed: int = 7,
    shape: tuple[int, ...] = SHAPE,
    surrogate: bool = True,
) -> pd.DataFrame:
    rng = np.random.default_rng(100 * seed + r)
    ids = [f"r{r}-{i:04d}" for i in range(k)]
    x = rng.normal(size=(k, *shape))
    rewards = pd.Series(rng.normal(size=k), index=ids[::-1])  # any order: aligned by id
    return new_round_frame(
        campaign=campaign,
        seed=seed,
        round=r,
        ids=ids,
        x=x,
        rewards=rewards,
        selected_by=["top"] * (k // 2) + ["random"] * (k - k // 2),
        fk_log_weight=rng.normal(size=k),
        surrogate_pred=rng.normal(size=k) if surrogate else None,
    )


def dataset(rounds: int) -> pd.DataFrame:
    df = None
    for r in range(rounds):
        df = append_round(df, make_round(r, surrogate=r > 0))
    assert df is not None
    return df


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# new_round_frame


def test_new_round_frame_columns_and_dtypes() -> None:
    df = make_round(0, surrogate=False)
    assert tuple(df.columns) == COLUMNS
    assert df.attrs["event_shape"] == SHAPE
    assert df["seed"].dtype == np.int64 and df["round"].dtype == np.int64
    for name in ("reward", "fk_log_weight", "surrogate_pred"):
        assert df[name].dtype == np.float64
    for name in ("campaign", "id", "selected_by"):
        assert pd.api.types.is_string_dtype(df[name])
    assert all(v.dtype == np.float32 and v.shape == (6,) for v in df["x"])
    assert df["surrogate_pred"].isna().all()
    assert df["selected_by"].tolist() == ["top", "top", "random", "random"]


def test_new_round_frame_aligns_rewards_by_id() -> None:
    ids = ["a", "b", "c"]
    rewards = pd.Series({"c": 3.0, "a": 1.0, "b": 2.0})
    df = new_round_frame("c", 0, 0, ids, np.zeros((3, 2)), rewards, "random", 0.0, None)
    assert df["reward"].tolist() == [1.0, 2.0, 3.0]
    df = new_round_frame("c", 0, 0, ids, np.zeros((3, 2)), [4.0, 5.0, 6.0], "random", 0.0, None)
    assert df["reward"].tolist() == [4.0, 5.0, 6.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": pd.Series({"a": 1.0, "b": 2.0})}, "missing 'c'"),
        ({"rewards": pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})}, "unknown 'd'"),
        ({"rewards": [1.0, np.nan, 3.0]}, "non-finite rewards for ids 'b'"),
        ({"rewards": [1.0, 2.0]}, r"shape \(3,\)"),
        ({"ids": ["a", "a", "c"]}, "duplicate ids 'a'"),
        ({"ids": ["a", "b"]}, "2 ids but 3 rows"),
        ({"x": np.zeros(3)}, "x must have shape"),
        ({"x": np.full((3, 2), np.inf)}, "non-finite x"),
        ({"round": -1}, "non-negative int"),
        ({"selected_by": ["top", ""]}, "selected_by must be a scalar or have shape"),
        ({"selected_by": ["top", "", "top"]}, "'selected_by' needs non-empty strings"),
        ({"campaign": ""}, "'campaign' needs non-empty strings"),
        ({"fk_log_weight": [0.0, np.inf, 0.0]}, "infinite fk_log_weight for ids 'b'"),
    ],
)
def test_new_round_frame_rejects(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "campaign": "c",
        "seed": 0,
        "round": 0,
        "ids": ["a", "b", "c"],
        "x": np.zeros((3, 2)),
        "rewards": [1.0, 2.0, 3.0],
        "selected_by": "random",
        "fk_log_weight": 0.0,
        "surrogate_pred": None,
    }
    args.update(kwargs)
    with pytest.raises(ObservationError, match=match):
        new_round_frame(**args)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# append_round


def test_append_round_accumulates() -> None:
    df = dataset(3)
    assert df["round"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert df["id"].is_unique
    assert df.index.tolist() == list(range(12))
    assert df.attrs["event_shape"] == SHAPE
    assert df["surrogate_pred"].isna().sum() == 4  # only round 0 has no surrogate


def test_append_round_does_not_modify_inputs() -> None:
    previous = dataset(1)
    frozen = previous.copy()
    append_round(previous, make_round(1))
    pd.testing.assert_frame_equal(previous, frozen)


def test_first_round_must_be_zero() -> None:
    with pytest.raises(ObservationError, match="must be round 0, got round 1"):
        append_round(None, make_round(1))
    empty = dataset(1).iloc[:0]
    with pytest.raises(ObservationError, match="must be round 0"):
        append_round(empty, make_round(2))
    assert len(append_round(empty, make_round(0))) == 4


@pytest.mark.parametrize("r", [0, 1, 3])
def test_rounds_must_be_consecutive(r: int) -> None:
    with pytest.raises(
        ObservationError, match=f"round {r} cannot follow round 1: expected round 2"
    ):
        append_round(
            dataset(2),
            make_round(r, k=2).assign(
                id=[f"new{r}-a", f"new{r}-b"], question=[f"new{r}-a", f"new{r}-b"]
            ),
        )


def test_append_round_rejects_repeated_ids() -> None:
    again = make_round(1)
    again.loc[1, ["id", "question"]] = "r0-0002"
    with pytest.raises(ObservationError, match="already observed in earlier rounds: 'r0-0002'"):
        append_round(dataset(1), again)


def test_append_round_rejects_other_campaign_seed_or_shape() -> None:
    previous = dataset(1)
    with pytest.raises(ObservationError, match="campaign 'other'"):
        append_round(previous, make_round(1, campaign="other"))
    with pytest.raises(ObservationError, match="seed '8' but the dataset has seed '7'"):
        append_round(previous, make_round(1, seed=8))
    with pytest.raises(ObservationError, match=r"event shape \(3, 2\) of round 1 differs"):
        append_round(previous, make_round(1, shape=(3, 2)))


def test_append_round_rejects_several_rounds_and_non_finite_rewards() -> None:
    two = dataset(2)
    with pytest.raises(ObservationError, match="must hold one round"):
        append_round(None, two)
    bad = make_round(0)
    bad.loc[2, "reward"] = np.inf
    with pytest.raises(ObservationError, match="non-finite rewards for ids 'r0-0002'"):
        append_round(None, bad)


def test_append_round_needs_event_shape() -> None:
    frame = make_round(0)
    frame.attrs.clear()
    with pytest.raises(ObservationError, match="no attrs"):
        append_round(None, frame)


# ----------------------------------------------------------------------------------------------
# files


def test_write_read_round_trip(tmp_path: Path) -> None:
    df = dataset(3)
    path = tmp_path / "observations.parquet"
    write_observations(df, path, SHAPE)
    got, shape = read_observations(path)
    assert shape == SHAPE
    assert got.attrs["event_shape"] == SHAPE
    pd.testing.assert_frame_equal(got, df)
    for a, b in zip(got["x"], df["x"], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got["surrogate_pred"].isna(), df["surrogate_pred"].isna())


def test_file_schema_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "observations.parquet"
    write_observations(dataset(1), path, SHAPE)
    schema = pq.read_schema(path)
    assert schema.names == list(COLUMNS)
    assert schema.field("x").type.value_type == pa.float32()
    assert pa.types.is_list(schema.field("x").type)
    assert schema.field("seed").type == pa.int64()
    assert json.loads(schema.metadata[b"event_shape"]) == list(SHAPE)
    assert b"pandas" not in schema.metadata  # no pandas-version-dependent metadata


def test_write_is_deterministic(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.parquet" for n in "abc")
    write_observations(dataset(3), a, SHAPE)
    write_observations(dataset(3), b, SHAPE)  # rebuilt from scratch
    assert a.read_bytes() == b.read_bytes()
    df, shape = read_observations(a)
    write_observations(df, c, shape)  # read back and rewritten
    assert md5(a) == md5(c)


def test_data_changes_change_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    df = dataset(2)
    write_observations(df, a, SHAPE)
    df.loc[0, "reward"] += 1.0
    write_observations(df, b, SHAPE)
    assert md5(a) != md5(b)


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "observations.parquet"
    write_observations(dataset(1), path, SHAPE)
    before = path.read_bytes()

    def crash(table: pa.Table, where: object, **kwargs: object) -> None:
        Path(where).write_bytes(b"PAR1 half written")  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(obs.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_observations(dataset(2), path, SHAPE)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["observations.parquet"]


def test_invalid_data_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "observations.parquet"
    write_observations(dataset(1), path, SHAPE)
    before = path.read_bytes()
    bad = dataset(2)
    bad.loc[5, "reward"] = np.nan
    with pytest.raises(ObservationError, match="non-finite rewards"):
        write_observations(bad, path, SHAPE)
    with pytest.raises(ObservationError, match=r"event shape \(2, 3\) of the data differs"):
        write_observations(dataset(2), path, (4,))
    no_attrs = dataset(2)
    no_attrs.attrs.clear()
    with pytest.raises(ObservationError, match="does not have 4 values"):
        write_observations(no_attrs, path, (4,))
    with pytest.raises(ObservationError, match="rounds must be 0, 1, 2"):
        write_observations(dataset(2).iloc[4:], path, SHAPE)
    with pytest.raises(ObservationError, match="event_shape must be"):
        write_observations(dataset(2), path, (0, 6))
    assert path.read_bytes() == before


def test_empty_dataset_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "observations.parquet"
    write_observations(dataset(1).iloc[:0], path, SHAPE)
    df, shape = read_observations(path)
    assert len(df) == 0 and shape == SHAPE
    x, y = observations_xy(df, shape)
    assert x.shape == (0, *SHAPE) and y.shape == (0,)


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(ObservationError, match=f"observations file {path} does not exist"):
        read_observations(path)


def test_read_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "observations.parquet"
    write_observations(dataset(1), path, SHAPE)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ObservationError, match=f"{path} is not a readable Parquet file"):
        read_observations(path)
    path.write_text("id,reward\n")
    with pytest.raises(ObservationError, match=f"{path} is not a readable Parquet file"):
        read_observations(path)


def write_table(path: Path, df: pd.DataFrame, metadata: dict[str, str] | None) -> None:
    table = pa.Table.from_pandas(df.assign(x=[list(v) for v in df["x"]]), preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)


def test_read_rejects_wrong_schema(tmp_path: Path) -> None:
    path = tmp_path / "o.parquet"
    df = dataset(1)
    write_table(path, df, None)
    with pytest.raises(ObservationError, match="lacks 'event_shape'"):
        read_observations(path)
    write_table(path, df, {"event_shape": "[2, three]"})
    with pytest.raises(ObservationError, match="not valid JSON"):
        read_observations(path)
    write_table(path, df.drop(columns="fk_log_weight"), {"event_shape": "[2, 3]"})
    with pytest.raises(ObservationError, match=r"missing \['fk_log_weight'\]"):
        read_observations(path)
    write_table(path, df.assign(extra=1), {"event_shape": "[2, 3]"})
    with pytest.raises(ObservationError, match=r"unexpected \['extra'\]"):
        read_observations(path)
    write_table(path, df.assign(seed=df["seed"].astype(str)), {"event_shape": "[2, 3]"})
    with pytest.raises(ObservationError, match="column 'seed' has type .*string, expected int64"):
        read_observations(path)
    write_table(path, df, {"event_shape": "[7]"})
    with pytest.raises(ObservationError, match="does not have 7 values"):
        read_observations(path)


def test_read_validates_content(tmp_path: Path) -> None:
    """A file written by another tool is held to the same rules as append_round."""
    path = tmp_path / "o.parquet"
    df = dataset(2)
    df.loc[5, "id"] = df.loc[0, "id"]
    write_table(path, df, {"event_shape": "[2, 3]"})
    with pytest.raises(ObservationError, match=f"{path}: duplicate ids 'r0-0000'"):
        read_observations(path)


# ----------------------------------------------------------------------------------------------
# observations_xy


def test_observations_xy() -> None:
    df = dataset(2)
    x, y = observations_xy(df, SHAPE)
    assert x.shape == (8, *SHAPE) and x.dtype == np.float32
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, df["reward"].to_numpy())
    np.testing.assert_array_equal(x[5].reshape(-1), df["x"].iloc[5])
    y[0] = 1e9  # a copy: the dataset is untouched
    assert df["reward"].iloc[0] != 1e9
    with pytest.raises(ObservationError, match="does not have 5 values"):
        observations_xy(df, (5,))


def test_observations_xy_matches_inputs() -> None:
    x_in = np.random.default_rng(1).normal(size=(3, 1, 2, 2)).astype(np.float32)
    df = new_round_frame("c", 1, 0, ["a", "b", "c"], x_in, [1.0, 2.0, 3.0], "random", 0.0, None)
    x, y = observations_xy(df, (1, 2, 2))
    np.testing.assert_array_equal(x, x_in)
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0])


def test_read_accepts_file_written_by_pandas(tmp_path: Path) -> None:
    """Another tool's Parquet (NaN stored as null, large strings) reads as the same data."""
    path = tmp_path / "o.parquet"
    df = dataset(2)
    write_table(path, df, {"event_shape": "[2, 3]"})
    assert pq.read_table(path).column("surrogate_pred").null_count == 4
    got, shape = read_observations(path)
    assert shape == SHAPE
    pd.testing.assert_frame_equal(got, df)
