"""Running an oracle command: queries out, rewards in (``shared/docs/design.md``, "Contracts").

An oracle is any executable, configured as an argv list. The workflow appends two paths, the
queries file to read and the rewards file to write (formats in :mod:`prefalign.io.queries`)::

    my-oracle --flag QUERIES.npz REWARDS.csv

:func:`run_oracle` runs the executable without a shell, under a time limit, with its output
logged; it lets the oracle write to a temporary file and renames it to the rewards path only
after validation, so a failed oracle never leaves a rewards file behind.

Whatever ends the run (the oracle's exit, the time-out, SIGTERM or SIGINT to the process that
runs it, e.g. a Snakemake job stopped by Ctrl-C, ``scancel`` or a CI time-out), every process the
oracle started dies with it: its process group is killed, and so is every descendant that left the
group (``setsid``): on Linux the runner is a child subreaper while the oracle runs, so orphaned
descendants stay its children, and each process carries a marker in its environment by which the
runner finds it in ``/proc``. The oracle's output is logged up to :data:`MAX_LOG_BYTES`; a rewards
file over :func:`~prefalign.io.queries.rewards_size_limit` is refused before it is read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd

from prefalign.io.atomic import fsync_dir
from prefalign.io.queries import (
    OracleError,
    Questions,
    read_questions,
    read_rewards_text,
    rewards_size_limit,
)

__all__ = ["MAX_LOG_BYTES", "OracleError", "OracleTerminated", "run_oracle"]

StrPath = str | os.PathLike[str]

#: Seconds between SIGTERM and SIGKILL when an oracle times out.
_KILL_GRACE_S = 3.0
#: Bytes of the oracle's stderr kept for the error message on a non-zero exit.
_STDERR_TAIL_BYTES = 2000
#: Bytes of the oracle's stdout and stderr (together) copied to the log per run; the rest is
#: read and dropped, with one line in the log that says so.
MAX_LOG_BYTES = 8 << 20
#: Environment variable that marks every process of one oracle run (it survives ``setsid``).
ORACLE_MARKER_ENV = "PREFALIGN_ORACLE_RUN"
#: Seconds the oracle's output is still drained after it exited and its descendants were killed.
_DRAIN_S = 1.0


class OracleTerminated(SystemExit):
    """SIGTERM (or SIGHUP) reached the process running the oracle; the oracle and every process
    it started were killed and nothing was written. Exits with ``128 + signal number``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


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


_PENDING_BYTES = 65536


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
    bytes go to ``tail`` (stderr, for the error message).

    Whole lines only (or a progress bar's ``\r`` update, or a line longer than
    ``_PENDING_BYTES``): stdout and stderr share the log, and an unbuffered oracle writes a
    ``print`` in pieces, which the other stream's lines would otherwise split."""
    pending = b""
    while True:
        try:
            chunk = os.read(pipe_fd, 65536)
        except OSError:
            chunk = b""
        if tail is not None:
            tail.extend(chunk)
            del tail[:-_STDERR_TAIL_BYTES]
        pending += chunk
        end = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
        if not chunk or len(pending) > _PENDING_BYTES:
            end = len(pending)
        if end:
            _log(sink_fd, pending[:end], budget)
            pending = pending[end:]
        if not chunk:
            break


def _log(sink_fd: int, data: bytes, budget: _LogBudget) -> None:
    """Write ``data`` to the log as far as ``budget`` allows, saying once where it stopped."""
    allowed, just_reached = budget.take(len(data))
    with contextlib.suppress(OSError):
        if allowed:
            _write_all(sink_fd, data[:allowed])
        if just_reached:
            _write_all(
                sink_fd,
                f"\n[prefalign] the oracle's output passed {budget.limit} bytes; the rest is "
                "not logged\n".encode(),
            )


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
    """Run the oracle ``argv + [queries_path, <temporary rewards path>]`` and validate its answer
    in the queries file's question form (:mod:`prefalign.io.feedback`; ``PREFALIGN_FORM`` in the
    oracle's environment names it).

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
        The validated answers, one value per shown item (:func:`prefalign.io.feedback.parse_answers`:
        the rewards of ``rate`` questions, as :func:`~prefalign.io.queries.read_rewards`).

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
    questions = read_questions(queries_path)
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
                argv, cmd, shown, questions, tmp_rewards, rewards_path, timeout_s, log_fd,
                {
                    **os.environ, **(context or {}), "PREFALIGN_FORM": questions.form,
                    ORACLE_MARKER_ENV: marker,
                },
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
    questions: Questions,
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
    try:
        try:
            # inside the guarded block: a signal that lands while the tees start (the oracle
            # already runs) must kill the oracle too, not leave it running in its own session
            for tee in tees:
                tee.start()
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
                if tee.ident is not None:  # started
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
    from prefalign.io.feedback import parse_answers, parse_form

    where = (
        f"{'rewards' if questions.form == 'rate' else 'answers'} written by the oracle ({shown})"
    )
    ids = questions.ids.tolist()
    text = read_rewards_text(tmp_rewards, rewards_size_limit(ids), where)
    rewards = parse_answers(
        text, parse_form(questions.form), ids, questions.questions.tolist(), where
    )
    with open(tmp_rewards, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp_rewards, rewards_path)
    fsync_dir(rewards_path.parent)
    return rewards
