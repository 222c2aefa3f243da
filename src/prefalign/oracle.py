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

Whatever ends the run (the oracle's exit, the time-out, SIGTERM or SIGINT to the process that
runs it, e.g. a Snakemake job stopped by Ctrl-C, ``scancel`` or a CI time-out), every process the
oracle started dies with it: its process group is killed, and so is every descendant that left the
group (``setsid``): on Linux the runner is a child subreaper while the oracle runs, so orphaned
descendants stay its children, and each process carries a marker in its environment by which the
runner finds it in ``/proc``. The oracle's output is logged up to :data:`MAX_LOG_BYTES`; a rewards
file over :func:`rewards_size_limit` is refused before it is read.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import math
import os
import secrets
import shlex
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.atomic import atomic_path, fsync_dir
from prefalign.listing import MAX_SHOWN, duplicates, shorten, show

__all__ = [
    "MAX_LOG_BYTES",
    "OracleError",
    "OracleTerminated",
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
#: Bytes of the oracle's stdout and stderr (together) copied to the log per run; the rest is
#: read and dropped, with one line in the log that says so.
MAX_LOG_BYTES = 8 << 20
#: A rewards file may hold this many bytes, plus :data:`_REWARDS_BYTES_PER_ROW` per query and
#: its id's length (a row is ``id,reward``; 64 bytes leave room for any float and CRLF).
_REWARDS_BASE_BYTES = 1 << 20
_REWARDS_BYTES_PER_ROW = 64
#: Environment variable that marks every process of one oracle run (it survives ``setsid``).
ORACLE_MARKER_ENV = "PREFALIGN_ORACLE_RUN"
#: Seconds the oracle's output is still drained after it exited and its descendants were killed.
_DRAIN_S = 1.0
#: Fixed zip member timestamp, so identical queries give identical bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class OracleError(ValueError):
    """The oracle failed, or a queries/rewards file breaks the contract."""


class OracleTerminated(SystemExit):
    """SIGTERM (or SIGHUP) reached the process running the oracle; the oracle and every process
    it started were killed and nothing was written. Exits with ``128 + signal number``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


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
    where = f"rewards file {path}"
    text = _read_rewards_text(path, rewards_size_limit(expected_ids), where)
    return _parse_rewards(text, expected_ids, where)


def rewards_size_limit(expected_ids: Sequence[str]) -> int:
    """The largest rewards file accepted for these query ids, in bytes: 1 MiB plus 64 bytes and
    the id's length per query (a valid file is far smaller; a bigger one is refused unread)."""
    ids = [str(i) for i in expected_ids]
    return (
        _REWARDS_BASE_BYTES
        + _REWARDS_BYTES_PER_ROW * len(ids)
        + sum(len(i.encode("utf-8")) for i in ids)
    )


def _read_rewards_text(path: Path, limit: int, where: str) -> str:
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


class _LogBudget:
    """Bytes of oracle output still allowed into the log, shared by the stdout and stderr tees."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.limit = limit
        self.dropped = 0
        self.lock = threading.Lock()

    def take(self, n: int) -> tuple[int, bool]:
        """How many of ``n`` bytes may be logged, and whether the limit was reached just now."""
        with self.lock:
            allowed = min(n, self.left)
            self.left -= allowed
            just_reached = allowed < n and self.dropped == 0
            self.dropped += n - allowed
            return allowed, just_reached


def _tee(pipe_fd: int, sink_fd: int, budget: _LogBudget, tail: bytearray | None) -> None:
    """Copy one of the oracle's output pipes to ``sink_fd`` as it arrives, within ``budget``;
    keep reading (and dropping) past it so the oracle never blocks on a full pipe. The last
    bytes go to ``tail`` (stderr, for the error message)."""
    while True:
        try:
            chunk = os.read(pipe_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        allowed, just_reached = budget.take(len(chunk))
        with contextlib.suppress(OSError):
            if allowed:
                _write_all(sink_fd, chunk[:allowed])
            if just_reached:
                _write_all(
                    sink_fd,
                    f"\n[prefalign] the oracle's output passed {budget.limit} bytes; the rest is "
                    "not logged\n".encode(),
                )
        if tail is not None:
            tail.extend(chunk)
            del tail[:-_STDERR_TAIL_BYTES]


# -- every process of the oracle dies with it -------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36
_subreaper_lock = threading.Lock()
_subreaper_users = 0


def _set_subreaper(on: bool) -> None:
    """Make this process a child subreaper (Linux): descendants orphaned while an oracle runs
    (a ``setsid`` grandchild whose parent exited) become its children instead of init's, so they
    can be found and killed. A no-op where ``prctl`` is missing."""
    global _subreaper_users
    with _subreaper_lock:
        _subreaper_users += 1 if on else -1
        if (on and _subreaper_users != 1) or (not on and _subreaper_users != 0):
            return
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


def _processes() -> dict[int, tuple[int, bytes]]:
    """{pid: (ppid, environ)} of every live process in /proc ({} where there is no /proc)."""
    table: dict[int, tuple[int, bytes]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):  # a zombie: dead already, only to be reaped
                continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except (OSError, ValueError, IndexError):
            continue
        table[int(name)] = (int(fields[1]), environ)
    return table


def _oracle_processes(root: int, marker: bytes) -> set[int]:
    """Live processes of one oracle run: ``root``, its descendants, and every process whose
    environment carries ``marker`` (descendants that were orphaned or left the session)."""
    table = _processes()
    found = {pid for pid, (_, environ) in table.items() if marker in environ.split(b"\0")}
    if root in table:
        found.add(root)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    found.discard(os.getpid())
    return found


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pids: Iterable[int]) -> None:
    """Collect the exit status of killed processes that became our children (subreaper)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _kill_everything(proc: subprocess.Popen[bytes], marker: bytes, grace_s: float) -> None:
    """SIGTERM the oracle's group and descendants, wait up to ``grace_s`` for the oracle, then
    SIGKILL whatever of it is left, until nothing carrying its marker runs."""
    if grace_s > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        _signal_all(_oracle_processes(proc.pid, marker), signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    killed: set[int] = set()
    for _ in range(100):  # a process may fork while we look: look again until none is left
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        left = _oracle_processes(proc.pid, marker) - (
            {proc.pid} if proc.poll() is not None else set()
        )
        if not left:
            break
        _signal_all(left, signal.SIGKILL)
        killed |= left
        time.sleep(0.01)
    proc.wait()
    deadline = time.monotonic() + 1.0
    while killed and time.monotonic() < deadline:
        _reap(killed)
        killed = {p for p in killed if os.path.exists(f"/proc/{p}")}
        if killed:
            time.sleep(0.01)


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """While the oracle runs, SIGTERM and SIGHUP raise :class:`OracleTerminated` (SIGINT raises
    KeyboardInterrupt as always), so the oracle is killed before this process exits. Only on the
    main thread (elsewhere Python cannot install handlers)."""

    def handler(signum: int, frame: object) -> None:
        raise OracleTerminated(signum)

    with _signal_handlers((signal.SIGTERM, signal.SIGHUP), handler):
        yield


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGTERM, SIGHUP and SIGINT ignored while the oracle is killed: a second Ctrl-C or a
    repeated SIGTERM must not interrupt the clean-up half way."""
    with _signal_handlers((signal.SIGTERM, signal.SIGHUP, signal.SIGINT), signal.SIG_IGN):
        yield


@contextlib.contextmanager
def _signal_handlers(signals: tuple[int, ...], handler: object) -> Iterator[None]:
    """``handler`` for each of ``signals`` inside the block, the previous ones restored after
    (signals that cannot be set here are left alone); a no-op off the main thread, where Python
    cannot install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in signals:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)


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
    Its stdout and stderr are appended to ``log_path`` (made 0600: it may hold the human oracle's
    token), or go to this process's stdout/stderr when ``log_path`` is None, up to
    :data:`MAX_LOG_BYTES` together. When the oracle exits, times out, or this process gets
    SIGTERM, SIGHUP or SIGINT (on the main thread), the oracle's process group and every
    descendant, ``setsid`` ones included, are killed before this function returns or raises;
    SIGTERM and SIGHUP then raise :class:`OracleTerminated`. The oracle is given a temporary rewards path beside
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
            has the exit code and the tail of stderr), no rewards file, one larger than
            :func:`rewards_size_limit`, or an invalid one.
        OracleTerminated: SIGTERM or SIGHUP arrived while the oracle ran (it was killed).
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
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # the log may hold a secret (the human oracle's URL with its token); a shell redirection
        # (``2>> {log}``) may have created it with the umask's mode before we opened it
        with contextlib.suppress(OSError):
            os.fchmod(log_fd, 0o600)
        _write_all(log_fd, f"[prefalign] running oracle: {shlex.join(cmd)}\n".encode())
    marker = f"{os.getpid()}-{secrets.token_hex(8)}"
    marker_entry = f"{ORACLE_MARKER_ENV}={marker}".encode()
    tail = bytearray()
    budget = _LogBudget(MAX_LOG_BYTES)
    _set_subreaper(True)
    try:
        with _terminate_raises():
            return _run(
                argv, cmd, shown, ids, tmp_rewards, rewards_path, timeout_s, log_fd,
                {**os.environ, **(context or {}), ORACLE_MARKER_ENV: marker},
                marker_entry, tail, budget,
            )  # fmt: skip
    finally:
        _set_subreaper(False)
        tmp_rewards.unlink(missing_ok=True)
        if log_fd is not None:
            os.close(log_fd)


def _run(
    argv: list[str],
    cmd: list[str],
    shown: str,
    ids: np.ndarray,
    tmp_rewards: Path,
    rewards_path: Path,
    timeout_s: float | None,
    log_fd: int | None,
    env: dict[str, str],
    marker: bytes,
    tail: bytearray,
    budget: _LogBudget,
) -> pd.Series:
    """The body of :func:`run_oracle`: start, wait, kill everything left, validate, rename."""
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            env=env,
            stdout=subprocess.PIPE,
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

    assert proc.stdout is not None and proc.stderr is not None
    tees = [
        threading.Thread(
            target=_tee,
            args=(pipe.fileno(), log_fd if log_fd is not None else default, budget, keep),
            daemon=True,
        )
        for pipe, default, keep in ((proc.stdout, 1, None), (proc.stderr, 2, tail))
    ]
    for tee in tees:
        tee.start()
    try:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with _signals_ignored():
                _kill_everything(proc, marker, _KILL_GRACE_S)
            raise OracleError(f"oracle timed out after {timeout_s:g}s: {shown}") from None
        except BaseException:  # SIGTERM, SIGINT (KeyboardInterrupt): never leave the oracle running
            with _signals_ignored():
                _kill_everything(proc, marker, _KILL_GRACE_S)
                tmp_rewards.unlink(missing_ok=True)
            raise
        finally:
            # Processes the oracle left behind (in its group, or descendants that left it with
            # setsid) die with it, so none keeps a pipe open or writes a file later.
            with _signals_ignored():
                _kill_everything(proc, marker, 0.0)
            # a bounded drain: what is still in the pipes, never waiting on a writer for long
            deadline = time.monotonic() + _DRAIN_S
            for tee in tees:
                tee.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        proc.stdout.close()
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
    where = f"rewards written by the oracle ({shown})"
    text = _read_rewards_text(tmp_rewards, rewards_size_limit(ids.tolist()), where)
    rewards = _parse_rewards(text, ids.tolist(), where)
    with open(tmp_rewards, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp_rewards, rewards_path)
    fsync_dir(rewards_path.parent)
    return rewards
