"""A one-node SLURM cluster on this machine, for integration tests of ``profiles/slurm``.

Brings the cluster up exactly as ``shared/docs/slurm-single-node.md`` describes (Debian 12, as
root, no systemd): installs ``slurm-wlm`` and ``munge`` with apt-get when they are missing, writes
``/etc/slurm/slurm.conf`` and ``/etc/slurm/gres.conf`` (one partition ``debug``, two pretend
GPUs), starts ``munged``, ``slurmctld -c`` and ``slurmd``, and waits for the node to be idle.

Use :func:`slurm_cluster_fixture` to get a pytest fixture::

    slurm_cluster = slurm_cluster_fixture(scope="module")

    def test_something(slurm_cluster: SlurmCluster) -> None:
        slurm_cluster.sbatch_wait("hostname")

or :func:`running_cluster` as a context manager outside pytest. Both skip (``pytest.skip``) when
the cluster cannot be had here: not root, or apt-get failed. A daemon that does not come up is an
error, with the tail of its log in the message.

Daemons are stopped by the pids in their pid files (``/run/slurmd.pid``, ``/run/slurmctld.pid``,
``/run/munge/munged.pid``), never by name. A cluster that is already up with the same
configuration is reused and left running afterwards (it was not ours); anything else running
from those pid files is stopped, and the daemons this helper started are stopped at the end.
Concurrent test sessions on the machine take turns through a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["SlurmCluster", "running_cluster", "slurm_cluster_fixture"]

#: Debian packages of the cluster.
PACKAGES = ("slurm-wlm", "munge")
#: Programs the packages provide, all of which the helper uses.
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
PARTITION = "debug"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
LOCK_FILE = Path("/run/prefalign-slurm-test.lock")
LOG_DIR = Path("/var/log/slurm")


@dataclass(frozen=True)
class Daemon:
    """One daemon of the cluster: how to start it and where it writes its pid and log."""

    name: str  # the process name, as /proc/<pid>/comm shows it
    pid_file: Path
    command: tuple[str, ...]
    log_file: Path | None


DAEMONS = (
    Daemon(
        "munged",
        Path("/run/munge/munged.pid"),
        ("runuser", "-u", "munge", "--", "/usr/sbin/munged"),
        None,
    ),
    Daemon(
        "slurmctld",
        Path("/run/slurmctld.pid"),
        ("/usr/sbin/slurmctld", "-c"),
        LOG_DIR / "slurmctld.log",
    ),
    Daemon("slurmd", Path("/run/slurmd.pid"), ("/usr/sbin/slurmd",), LOG_DIR / "slurmd.log"),
)


@dataclass(frozen=True)
class SlurmCluster:
    """A running one-node cluster."""

    host: str  # the node's name (short host name)
    partition: str  # the only partition, the default one
    cpus: int
    mem_mb: int  # RealMemory of the node: 80 % of the machine's memory
    started_here: bool  # False when an already running cluster was reused

    def active_job_ids(self) -> list[str]:
        """Ids of pending and running jobs."""
        return _run(["squeue", "-h", "-t", "PD,R,CF,CG", "-o", "%i"]).stdout.split()

    def scancel(self, *job_ids: str) -> None:
        """Cancel jobs, as a scheduler (or an administrator) would."""
        if job_ids:
            _run(["scancel", *job_ids])

    def sbatch_wait(self, command: str, timeout_s: float = 60.0) -> str:
        """Run ``command`` as a batch job and wait for it; its output file's text."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "job.out"
            _run(
                ["sbatch", "--wait", "-p", self.partition, "-o", str(out), "--wrap", command],
                timeout=timeout_s,
            )
            return out.read_text()

    def wait_until_idle(self, timeout_s: float = 120.0) -> None:
        """Block until no job is pending or running, or fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.active_job_ids():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jobs still queued or running after {timeout_s:.0f} s: {self.active_job_ids()}"
                )
            time.sleep(0.5)


def _run(
    cmd: list[str], timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a short command; on failure raise an error that shows what it printed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc


def _tail(path: Path | None, n_chars: int = 3000) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    return path.read_text(errors="replace")[-n_chars:]


# --- packages -------------------------------------------------------------------------------


def ensure_packages() -> None:
    """Install slurm-wlm and munge with apt-get when a program is missing; skip when we cannot."""
    missing = [p for p in PROGRAMS if shutil.which(p, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing) and we are not root")
    if shutil.which("apt-get") is None:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
    ):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(cmd)}` took longer than 15 minutes")
        if proc.returncode != 0:
            pytest.skip(
                f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n"
                f"{proc.stderr[-1500:] or proc.stdout[-1500:]}"
            )


# --- configuration --------------------------------------------------------------------------


def _cpus() -> int:
    """CPUs usable here, as `nproc` counts them."""
    return len(os.sched_getaffinity(0))


def _mem_mb() -> int:
    """80 % of the machine's memory in MiB, as the doc's ``free -m`` arithmetic gives it."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 8 // 10
    raise RuntimeError("/proc/meminfo has no MemTotal line")


def slurm_conf(host: str, cpus: int, mem_mb: int) -> str:
    """``/etc/slurm/slurm.conf`` of the doc, for this host."""
    return f"""\
ClusterName=localcluster
SlurmctldHost={host}
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
GresTypes=gpu
NodeName={host} CPUs={cpus} RealMemory={mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf(host: str) -> str:
    """``/etc/slurm/gres.conf``: two pretend GPUs, so that rules asking for gpu=1 can run."""
    return f"AutoDetect=off\nNodeName={host} Name=gpu File=/dev/tty[0-1]\n"


def _prepare_directories() -> None:
    for path in (
        "/var/log/slurm",
        "/run/munge",
        "/var/lib/slurm/slurmctld",
        "/var/lib/slurm/slurmd",
    ):
        Path(path).mkdir(parents=True, exist_ok=True)
    for path in ("/var/log/slurm", "/var/lib/slurm/slurmctld"):
        shutil.chown(path, "slurm", "slurm")
    shutil.chown("/run/munge", "munge", "munge")
    if not MUNGE_KEY.is_file():  # the package's postinst makes one; make sure anyway
        _run(["runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create"])


# --- daemons by pid -------------------------------------------------------------------------


def _alive_pid(daemon: Daemon) -> int | None:
    """The pid in ``daemon``'s pid file if that process is running and is that daemon."""
    try:
        pid = int(daemon.pid_file.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == daemon.name and state not in ("Z", "X") else None


def _stop(daemon: Daemon, timeout_s: float = 20.0) -> None:
    """SIGTERM the daemon by its pid file, wait for it to go, SIGKILL it if it does not."""
    pid = _alive_pid(daemon)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive_pid(daemon) == pid:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.1)


def _start(daemon: Daemon) -> None:
    """Start a daemon (it forks into the background) and wait for its pid file."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(daemon.command, stdout=out, stderr=out, timeout=60)
        out.seek(0)
        printed = out.read()
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(daemon.command)}` failed with exit code {proc.returncode}:\n{printed}\n"
            f"log:\n{_tail(daemon.log_file)}"
        )
    deadline = time.monotonic() + 15
    while _alive_pid(daemon) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{daemon.name} did not come up (no live process in {daemon.pid_file}):\n"
                f"{printed}\nlog:\n{_tail(daemon.log_file)}"
            )
        time.sleep(0.1)


def _node_state() -> str:
    proc = _run(["sinfo", "-h", "-o", "%T"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _wait_for_idle_node(host: str, timeout_s: float) -> None:
    """Wait for ``sinfo`` to say idle; resume a node that came up INVAL/DRAIN/DOWN once."""
    deadline = time.monotonic() + timeout_s
    resumed = False
    state = ""
    while time.monotonic() < deadline:
        state = _node_state()
        if state in ("idle", "mixed", "allocated"):
            return
        if not resumed and any(s in state for s in ("drain", "inval", "down")):
            _run(["scontrol", "update", f"nodename={host}", "state=resume"], check=False)
            resumed = True
        time.sleep(0.5)
    raise RuntimeError(
        f"the SLURM node {host} is not idle after {timeout_s:.0f} s (sinfo says {state!r}).\n"
        f"slurmctld.log:\n{_tail(LOG_DIR / 'slurmctld.log')}\nslurmd.log:\n{_tail(LOG_DIR / 'slurmd.log')}"
    )


@contextlib.contextmanager
def _machine_lock(timeout_s: float) -> Iterator[None]:
    """One test session at a time on this machine owns the cluster."""
    with LOCK_FILE.open("w") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(
                        f"another test session has held the SLURM test cluster ({LOCK_FILE}) "
                        f"for more than {timeout_s:.0f} s"
                    )
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cancel_all_and_wait(timeout_s: float = 60.0) -> None:
    """Cancel every job left on our cluster and wait for them to be gone from the node."""
    ids = _run(["squeue", "-h", "-t", "PD,R,CF,CG,S", "-o", "%i"], check=False).stdout.split()
    if ids:
        _run(["scancel", *ids], check=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = _run(["squeue", "-h", "-t", "PD,R,CF,CG,S", "-o", "%i"], check=False)
        if left.returncode != 0 or not left.stdout.split():
            return
        time.sleep(0.5)


@contextlib.contextmanager
def running_cluster(
    idle_timeout_s: float = 60.0, lock_timeout_s: float = 900.0
) -> Iterator[SlurmCluster]:
    """Bring the one-node cluster up (or reuse a running one), yield it, stop what we started."""
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM test cluster needs root (daemons, /etc/slurm)")
    ensure_packages()
    host, cpus, mem_mb = socket.gethostname().split(".")[0], _cpus(), _mem_mb()
    conf, gres = slurm_conf(host, cpus, mem_mb), gres_conf(host)
    with _machine_lock(lock_timeout_s):
        current = all(_alive_pid(d) is not None for d in DAEMONS) and (
            SLURM_CONF.is_file()
            and SLURM_CONF.read_text() == conf
            and GRES_CONF.is_file()
            and GRES_CONF.read_text() == gres
        )
        started: list[Daemon] = []
        # the configuration as we found it: restored when we stop what we started, because with a
        # slurm.conf naming a controller that is down, every `scontrol` (which the executor plugin
        # runs whenever Snakemake starts) waits 9 s for it
        previous = {p: p.read_text() if p.is_file() else None for p in (SLURM_CONF, GRES_CONF)}
        try:
            if not current:
                # something partial, stale or differently configured: restart cleanly
                for daemon in reversed(DAEMONS):
                    _stop(daemon)
                SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
                SLURM_CONF.write_text(conf)
                GRES_CONF.write_text(gres)
                _prepare_directories()
                for daemon in DAEMONS:
                    _start(daemon)
                    started.append(daemon)
            _wait_for_idle_node(host, idle_timeout_s)
            yield SlurmCluster(host, PARTITION, cpus, mem_mb, started_here=not current)
        finally:
            if started:
                _cancel_all_and_wait()
                for daemon in reversed(started):
                    _stop(daemon)
                for path, text in previous.items():
                    if text is None:
                        path.unlink(missing_ok=True)
                    else:
                        path.write_text(text)


def slurm_cluster_fixture(
    scope: str = "module", idle_timeout_s: float = 60.0
) -> Callable[[], Iterator[SlurmCluster]]:
    """A pytest fixture (to assign to a module-level name) that yields a running cluster."""

    def slurm_cluster() -> Iterator[SlurmCluster]:
        with running_cluster(idle_timeout_s=idle_timeout_s) as cluster:
            yield cluster

    return pytest.fixture(scope=scope, name="slurm_cluster")(slurm_cluster)
