"""The oracle contract: queries out, rewards in (``shared/docs/design.md``, "Contracts").

An oracle is any executable, configured as an argv list. The workflow appends two paths, the
queries file to read and the rewards file to write::

    my-oracle --flag QUERIES.npz REWARDS.csv

- queries: ``.npz`` with arrays ``id`` (unicode strings, unique) and ``x`` (float32, shape
  ``(n, *event_shape)``), written by :func:`write_queries`, read by :func:`read_queries`.
- rewards: CSV with header exactly ``id,reward`` and one row per query id, finite floats, read
  and validated by :func:`read_rewards`.

:func:`run_oracle` runs the executable without a shell, under a time limit, with its output
logged; it lets the oracle write to a temporary file and renames it to the rewards path only
after validation, so a failed oracle never leaves a rewards file behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import secrets
import shlex
import signal
import subprocess
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.atomic import atomic_path, fsync_dir
from prefalign.listing import MAX_SHOWN, duplicates, shorten, show

__all__ = [
    "OracleError",
    "read_queries",
    "read_rewards",
    "run_oracle",
    "write_queries",
]

StrPath = str | os.PathLike[str]

#: Header the rewards CSV must have, exactly.
REWARDS_HEADER = ("id", "reward")
#: Seconds between SIGTERM and SIGKILL when an oracle times out.
_KILL_GRACE_S = 3.0
#: Bytes of the oracle's stderr kept for the error message on a non-zero exit.
_STDERR_TAIL_BYTES = 2000
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


def write_queries(path: StrPath, ids: Sequence[str], x: np.ndarray) -> None:
    """Write the queries file: an ``.npz`` with arrays ``id`` (unicode) and ``x`` (float32).

    The file is written atomically (a temporary file in the same directory, then
    :func:`os.replace`) and deterministically (fixed zip timestamps, no compression), so the same
    queries always give the same bytes.

    Args:
        path: destination, conventionally ``queries.npz``.
        ids: one unique, non-empty string per query.
        x: array of shape ``(len(ids), *event_shape)``; cast to float32, must be finite.

    Raises:
        OracleError: ids not unique, empty, or not matching ``x``; non-finite ``x``.
    """
    path = Path(path)
    id_arr = np.asarray([str(i) for i in ids], dtype=np.str_)
    if id_arr.size == 0:
        id_arr = id_arr.astype("<U1")
    x_arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    _check_queries(id_arr, x_arr, f"queries for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)

    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as fh,
        zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED) as zf,
    ):
        for name, arr in (("id", id_arr), ("x", x_arr)):
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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise OracleError(f"rewards file {path} is not readable UTF-8 text: {exc}") from exc
    return _parse_rewards(text, expected_ids, f"rewards file {path}")


def _parse_rewards(text: str, expected_ids: Sequence[str], where: str) -> pd.Series:
    """Validate the text of a rewards CSV; ``where`` names its source in error messages."""
    expected = [str(i) for i in expected_ids]
    dup_expected = duplicates(expected)
    if dup_expected:
        raise ValueError(f"expected_ids contains duplicates: {_show_ids(dup_expected)}")
    if not text.strip():
        raise OracleError(f"{where} is empty; expected a header `id,reward` and one row per id")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise OracleError(f"{where} is not valid CSV: {exc}") from exc
    header, body = rows[0], rows[1:]
    if tuple(header) != REWARDS_HEADER:
        raise OracleError(f"{where} has header {','.join(header)!r}; expected exactly 'id,reward'")

    problems: list[str] = []
    ids: list[str] = []
    texts: list[str] = []
    malformed: list[int] = []
    for line_no, row in enumerate(body, start=2):
        if not row:  # blank line
            continue
        if len(row) != 2:
            malformed.append(line_no)
            continue
        ids.append(row[0])
        texts.append(row[1])
    if malformed:
        problems.append(f"rows without exactly 2 fields on line(s) {malformed[:MAX_SHOWN]}")

    dup = duplicates(ids)
    if dup:
        problems.append(f"duplicate ids {_show_ids(dup)}")
    expected_set = set(expected)
    unknown = [i for i in dict.fromkeys(ids) if i not in expected_set]
    if unknown:
        problems.append(f"unknown ids (not among the queries) {_show_ids(unknown)}")
    got = set(ids)
    missing = [i for i in expected if i not in got]
    if missing:
        problems.append(f"missing ids {_show_ids(missing)}")

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


def _temporary_rewards_path(rewards_path: Path) -> Path:
    """A fresh path beside ``rewards_path`` with the same suffix (oracles may check it)."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return rewards_path.with_name(f".{rewards_path.stem}.{token}.tmp{rewards_path.suffix}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _tee_stderr(pipe_fd: int, sink_fd: int, tail: bytearray) -> None:
    """Copy the oracle's stderr to ``sink_fd`` as it arrives, keeping the last bytes in ``tail``."""
    while True:
        try:
            chunk = os.read(pipe_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        with contextlib.suppress(OSError):
            _write_all(sink_fd, chunk)
        tail.extend(chunk)
        del tail[:-_STDERR_TAIL_BYTES]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the oracle's process group, wait a grace period, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_KILL_GRACE_S)
    # The leader may be gone while children that ignored SIGTERM live on in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit code {returncode})"
    return f"exited with code {returncode}"


def run_oracle(
    argv: Sequence[str],
    queries_path: StrPath,
    rewards_path: StrPath,
    timeout_s: float | None = None,
    log_path: StrPath | None = None,
    context: Mapping[str, str] | None = None,
) -> pd.Series:
    """Run the oracle ``argv + [queries_path, <temporary rewards path>]`` and validate its answer.

    The command runs without a shell, in a new session (its own process group), with stdin closed.
    Its stdout and stderr are appended to ``log_path``, or go to this process's stdout/stderr
    when ``log_path`` is None. The oracle is given a temporary rewards path beside
    ``rewards_path``; only a file that passes :func:`read_rewards` is renamed to
    ``rewards_path``. Any stale ``rewards_path`` is removed before the oracle starts, so a failed
    run never leaves a rewards file behind.

    Args:
        argv: the oracle command, e.g. ``["python", "oracle.py", "--flag"]``; not a shell string.
        queries_path: an existing queries file (see :func:`write_queries`); its ids are the
            expected ids of the answer.
        rewards_path: where the validated rewards CSV ends up.
        timeout_s: seconds before the oracle's whole process group is killed; None waits forever.
        log_path: file the oracle's output is appended to, or None to inherit.
        context: extra environment variables for the oracle, e.g. ``PREFALIGN_ROUND`` and
            ``PREFALIGN_BUDGET_LEFT`` (an oracle may show them; none has to read them).

    Returns:
        The validated rewards, as returned by :func:`read_rewards`.

    Raises:
        OracleError: executable missing or not executable, time-out, non-zero exit (the message
            has the exit code and the tail of stderr), no rewards file, or an invalid one.
    """
    if isinstance(argv, str | bytes) or not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv must be a non-empty list of strings, not {argv!r}")
    if timeout_s is not None and not (timeout_s > 0):
        raise ValueError(f"timeout_s must be positive or None, got {timeout_s!r}")
    argv = list(argv)
    queries_path = Path(queries_path)
    rewards_path = Path(rewards_path)
    ids, _ = read_queries(queries_path)
    shown = shlex.join(argv)

    rewards_path.parent.mkdir(parents=True, exist_ok=True)
    rewards_path.unlink(missing_ok=True)
    tmp_rewards = _temporary_rewards_path(rewards_path)
    cmd = [*argv, os.fspath(queries_path), os.fspath(tmp_rewards)]

    log_fd: int | None = None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _write_all(log_fd, f"[prefalign] running oracle: {shlex.join(cmd)}\n".encode())
    tail = bytearray()
    try:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(context or {})},
                stdout=log_fd,  # None: inherit
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise OracleError(
                f"oracle executable {argv[0]!r} not found (check the oracle argv: {shown})"
            ) from exc
        except PermissionError as exc:
            raise OracleError(
                f"oracle executable {argv[0]!r} is not executable (check its permissions or run "
                f"it through an interpreter: {shown})"
            ) from exc
        except OSError as exc:
            raise OracleError(f"oracle could not be started ({exc}): {shown}") from exc

        assert proc.stderr is not None
        sink_fd = log_fd if log_fd is not None else 2
        tee = threading.Thread(
            target=_tee_stderr, args=(proc.stderr.fileno(), sink_fd, tail), daemon=True
        )
        tee.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            tee.join(timeout=1.0)
            raise OracleError(f"oracle timed out after {timeout_s:g}s: {shown}") from None
        except BaseException:  # e.g. KeyboardInterrupt: never leave the oracle running
            _kill_group(proc)
            raise
        finally:
            # Children the oracle left behind in its process group die with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            tee.join(timeout=5.0)
            proc.stderr.close()

        if proc.returncode != 0:
            stderr_tail = tail.decode("utf-8", errors="replace").strip()
            detail = f"; last stderr:\n{stderr_tail}" if stderr_tail else "; stderr was empty"
            raise OracleError(f"oracle {_describe_exit(proc.returncode)}: {shown}{detail}")
        if not tmp_rewards.is_file():
            raise OracleError(
                f"oracle exited 0 but wrote no rewards file (it is given the rewards path as its "
                f"last argument): {shown}"
            )
        try:
            text = tmp_rewards.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise OracleError(f"oracle wrote an unreadable rewards file ({exc}): {shown}") from exc
        rewards = _parse_rewards(text, ids.tolist(), f"rewards written by the oracle ({shown})")
        with open(tmp_rewards, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_rewards, rewards_path)
        fsync_dir(rewards_path.parent)
        return rewards
    finally:
        tmp_rewards.unlink(missing_ok=True)
        if log_fd is not None:
            os.close(log_fd)
