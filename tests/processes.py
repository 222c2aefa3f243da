"""Processes a test left behind: found by their working directory or command line inside the
test's temporary folder, and ended by their pids (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _state(pid: int) -> str:
    """The process state letter of /proc/<pid>/stat (R, S, Z, ...), or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def processes_under(root: Path) -> dict[int, str]:
    """Live processes other than this one whose working directory is ``root`` or below it, or
    whose command line names a path below it: pid -> a description (command, cwd, parent)."""
    me, root_text = os.getpid(), str(Path(root).resolve())
    found: dict[int, str] = {}
    if not Path("/proc").is_dir():
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if _state(pid) in ("", "Z", "X"):
            continue  # ended (a zombie waits for its parent only)
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        inside = cwd == root_text or cwd.startswith(root_text + os.sep)
        if inside or root_text + os.sep in command:
            found[pid] = f"pid {pid} (parent {ppid}, cwd {cwd}): {command[:300]}"
    return found


def end_processes(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM each pid, wait up to ``grace_s`` for them to end, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while any(_state(p) not in ("", "Z", "X") for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)


def reap_strays(root: Path, settle_s: float = 0.0) -> list[str]:
    """End every process :func:`processes_under` ``root`` finds (after waiting up to
    ``settle_s`` for them to end by themselves); the descriptions of those it had to end."""
    deadline = time.monotonic() + settle_s
    strays = processes_under(root)
    while strays and time.monotonic() < deadline:
        time.sleep(0.2)
        strays = processes_under(root)
    if strays:
        end_processes(list(strays))
    return list(strays.values())
