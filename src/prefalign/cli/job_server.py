"""The job server: one warm process that forks each workflow job's ``prefalign`` command.

Every job of the workflow is a fresh ``prefalign`` process, and most of a short job's time is
importing torch, diffusers, pandas and matplotlib (1.5-6 s per torch job on a 2-core CPU, against
seconds of work). During a local Snakemake run (``workflow/rules/job_server.smk``) a server
process imports them once; each job's ``prefalign`` command then connects to it (the path is in
``$PREFALIGN_JOB_SERVER``), hands over its stdin, stdout and stderr, its working directory and
environment, and the server forks a child that runs the command with everything imported. The
command's process stays what Snakemake waits on and signals: it forwards SIGTERM, SIGINT and
SIGHUP to the child and exits with the child's exit status; if it is killed outright, the server
sees its connection close and sends the child SIGTERM. Files, logs and exit codes are those of a
fresh process (``tests/test_job_server.py`` checks a run's observations byte for byte against a
run without the server).

Nothing depends on the server: a command that cannot reach it (no server, a SLURM job on another
node, ``PREFALIGN_JOB_SERVER=off``) runs in its own process as before. A run whose jobs use a
GPU starts no server (:func:`serves`): CUDA cannot be used in a child forked from a process that
initialised it; the server never does (its imports leave CUDA untouched, and :func:`_main`
refuses to serve if one of them started it), but a fresh process is the guarantee. What a forked child does
not share with a fresh process: Snakemake's ``benchmark:`` files see the thin command, not the
child, so their memory columns are the command's (their wall time ``s`` is the job's).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The environment variable naming the server's socket (``off``: never use a server).
ENV = "PREFALIGN_JOB_SERVER"
#: Imported once by the server, so that no job pays for them.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "torch",
    "safetensors.torch",
    "diffusers",
    "diffusers.models.unets.unet_2d",
    "diffusers.schedulers.scheduling_ddpm",
    "sklearn.datasets",
    "sklearn.decomposition",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.neural_network",
    "seaborn",
    "prefalign.cli.commands",
    "prefalign.cli.parser",
    "prefalign.loop.steps",
    "prefalign.loop.evaluation",
    "prefalign.sampling",
    "prefalign.learning.surrogate",
    "prefalign.domains.mixture2d",
    "prefalign.domains.digits",
    "prefalign.models.ddpm",
    "prefalign.oracles.builtin",
    "prefalign.reporting.render",
    "prefalign.reporting.samples",
    "prefalign.reporting.aggregate",
    "prefalign.reporting.results_page",
)
_LENGTH = struct.Struct("!I")
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_KILL_GRACE_S = 30.0  # after a forwarded signal, how long the command waits before SIGKILL


# --- the command's side --------------------------------------------------------------------------
def run_via_server(argv: Sequence[str]) -> int | None:
    """Run ``prefalign argv`` in a child of the job server; its exit status, or None when no
    server can take it (the caller then runs the command itself)."""
    path = os.environ.get(ENV, "")
    if not path or path == "off" or "SLURM_JOB_ID" in os.environ:
        return None  # a SLURM job runs inside its own allocation, never in the server's
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = json.dumps(
            {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask()}
        ).encode()
        socket.send_fds(sock, [_LENGTH.pack(len(request)) + request], [0, 1, 2])
        reader = sock.makefile("r", encoding="utf-8")
        first = reader.readline().split()
    except OSError:
        sock.close()
        return None
    if first[:1] != ["pid"]:  # the server refused (it is stopping): run here instead
        sock.close()
        return None
    child = int(first[1])
    return _wait_for_child(reader, child)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _wait_for_child(reader, child: int) -> int:
    """Forward signals to the child until the server reports its exit status."""
    forwarded: list[float] = []

    def forward(signum, _frame):
        forwarded.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    while True:
        try:
            line = reader.readline()
        except InterruptedError:  # pragma: no cover - PEP 475 retries reads itself
            continue
        if line.startswith("exit "):
            return int(line.split()[1])
        if not line:  # the server is gone before the child's status came
            print("prefalign: the job server stopped before this command ended", file=sys.stderr)
            if forwarded and time.monotonic() - forwarded[0] < _KILL_GRACE_S:
                return 128 + signal.SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            return 1


def serves(device: str) -> bool:
    """Whether jobs on torch device ``device`` (the config's ``device``) may be forked from the
    job server: the CPU's only. A job on ``cuda`` (or ``auto``, which may pick CUDA) starts in
    a fresh process; a few seconds of imports are small beside a GPU job's work."""
    return str(device) == "cpu"


def cuda_started() -> bool:
    """Whether this process has initialised CUDA (then no child forked from it can use CUDA)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


# --- the server's side ---------------------------------------------------------------------------
def preload(modules: Sequence[str] = PRELOAD) -> list[str]:
    """Import ``modules`` (each one that is installed); returns those that failed to import."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def thread_counts() -> tuple[int, int]:
    """(Python threads, threads as the kernel counts them) of this process. Forking is safe
    with one Python thread: the native threads the imports start (OpenBLAS's pools, pyarrow's
    jemalloc) are rebuilt in the child by those libraries' own fork handlers, as they are for
    every ``multiprocessing`` child on Linux."""
    import threading

    try:
        native = len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        native = threading.active_count()
    return threading.active_count(), native


def serve(path: str, parent: int, run: Callable[[list[str]], int]) -> None:
    """Accept commands on the Unix socket ``path`` and fork a child running ``run(argv)`` for
    each, until SIGTERM or until the process ``parent`` (Snakemake) is gone."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    served = 0
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    # a finished child (SIGCHLD) wakes the select below at once, through this pair
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector.register(wake_read, selectors.EVENT_READ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the commands, which forward it
    while not stopping and os.getppid() == parent:
        for key, _ in selector.select(timeout=0.5):
            if key.fileobj is wake_read:
                with contextlib.suppress(BlockingIOError):
                    while wake_read.recv(4096):
                        pass
            elif key.fileobj is listener:
                conn, _ = listener.accept()
                pid = _start_child(conn, (listener, wake_read, wake_write), selector, children, run)
                if pid is not None:
                    served += 1
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
            else:  # a command's connection closed: it was killed, so is its child
                conn, pid = key.fileobj, key.data
                selector.unregister(conn)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        _reap(children, selector)
    for pid in children:  # Snakemake is gone or stopped us: so are the jobs
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    listener.close()
    why = "stopped" if stopping else f"process {parent} is gone"
    print(f"job server {os.getpid()}: served {served} commands; {why}", file=sys.stderr, flush=True)


def _start_child(conn, own: tuple, selector, children, run) -> int | None:
    """Read one request and fork its child; the child never returns from here."""
    try:
        conn.settimeout(10.0)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        size = _LENGTH.unpack(data[: _LENGTH.size])[0]
        data = data[_LENGTH.size :]
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("request cut short")
            data += chunk
        request = json.loads(data)
        conn.settimeout(None)
    except (OSError, ValueError) as err:
        print(f"job server: bad request: {err}", file=sys.stderr, flush=True)
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        conn.sendall(f"pid {pid}\n".encode())
        return pid
    # the child: become the command
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        selector.close()
        for sock in own:  # the server's listener and wake-up pair
            sock.close()
        for other in children.values():
            other.close()
        conn.close()
        for fd, std in zip(fds, (0, 1, 2), strict=True):
            os.dup2(fd, std)
            os.close(fd)
        _become(request)
        code = run(request["argv"])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        if not isinstance(err.code, int | None):
            print(err.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _become(request: dict) -> None:
    """Take on the command's working directory, environment, argv, signals and std streams."""
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(ENV, None)  # the commands it starts (an oracle) are processes of their own
    sys.argv = ["prefalign", *request["argv"]]
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # std streams on the command's descriptors, buffered as a fresh interpreter buffers them
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115


def _reap(children: dict[int, socket.socket], selector) -> None:
    """Send each finished child's exit status to its command."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {128 - code if code < 0 else code}\n".encode())
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        conn.close()


# --- starting and stopping it (Snakemake's onstart / onsuccess / onerror) ------------------------
@dataclass
class JobServer:
    """A running job server: its process and socket."""

    process: subprocess.Popen
    path: str

    def stop(self) -> None:
        """Stop the server (the jobs are done) and remove its socket."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(Path(self.path).parent, ignore_errors=True)
        if os.environ.get(ENV) == self.path:
            del os.environ[ENV]


def start(log: str | os.PathLike[str]) -> JobServer | None:
    """Start a job server for this process's jobs and point ``$PREFALIGN_JOB_SERVER`` at it
    (None if it is switched off). It does not wait: the socket appears once the server has
    imported everything (a few seconds), and the jobs that start before run as their own
    processes, as they do if the server fails."""
    if os.environ.get(ENV) == "off":
        return None
    directory = tempfile.mkdtemp(prefix="prefalign-jobs-")
    path = os.path.join(directory, "socket")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefalign.cli.job_server", path, str(os.getpid())],
            stdout=err,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C and killpg of Snakemake's group do not reach it
        )
    os.environ[ENV] = path
    return JobServer(process, path)


def _main(argv: Sequence[str]) -> int:
    """``python -m prefalign.cli.job_server SOCKET PARENT_PID``: preload, then serve."""
    path, parent = argv[0], int(argv[1])
    started = time.perf_counter()
    missing = preload()
    python_threads, native_threads = thread_counts()
    print(
        f"job server {os.getpid()}: imported {len(PRELOAD) - len(missing)} modules in "
        f"{time.perf_counter() - started:.1f} s (not installed: {', '.join(missing) or 'none'}); "
        f"{python_threads} Python thread(s), {native_threads} in all",
        file=sys.stderr,
        flush=True,
    )
    if python_threads != 1:  # a fork would copy a process whose other threads may hold locks
        print(
            "job server: a Python thread is running after the imports; not serving", file=sys.stderr
        )
        return 1
    if cuda_started():  # a forked child could not use CUDA
        print("job server: an import initialised CUDA; not serving", file=sys.stderr)
        return 1
    from prefalign.cli import run_command

    try:
        serve(path, parent, run_command)
    finally:  # also when Snakemake was killed and nobody calls JobServer.stop
        shutil.rmtree(Path(path).parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
