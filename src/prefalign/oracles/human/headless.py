"""The oracle driven from a program: started as a subprocess, its page opened in headless Chromium.

For the tests and ``docs/make_human_oracle_screenshot.py``. The browser is the system's Chromium
(Debian's ``/usr/bin/chromium``, or the one named by ``PREFALIGN_CHROMIUM``), driven through the
``browser`` extra (the Python ``playwright`` package); no browser is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_ENV",
    "DEFAULT_CHROMIUM",
    "browser_missing",
    "chromium_path",
    "launch_chromium",
    "oracle_command",
    "wait_for_url",
]

#: Environment variable naming another Chromium binary.
CHROMIUM_ENV = "PREFALIGN_CHROMIUM"
#: Debian's Chromium (``apt-get install chromium``).
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
#: Flags for Chromium in a closed sandbox-less container (no network, no GPU).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> Path:
    """The Chromium binary to use: ``$PREFALIGN_CHROMIUM``, else :data:`DEFAULT_CHROMIUM`."""
    return Path(os.environ.get(CHROMIUM_ENV, str(DEFAULT_CHROMIUM)))


def browser_missing(chromium: Path | None = None) -> str | None:
    """Why the page cannot be driven in a browser here (what to install), or None if it can."""
    chromium = chromium_path() if chromium is None else chromium
    if importlib.util.find_spec("playwright") is None:
        return "browser tests need the Python package playwright: pip install -e '.[browser]'"
    if not chromium.is_file():
        return f"browser tests need Chromium at {chromium}: apt-get install chromium"
    return None


def launch_chromium(playwright: Any, chromium: str | os.PathLike[str] | None = None) -> Any:
    """Launch headless Chromium with :data:`CHROMIUM_ARGS` from a started ``sync_playwright()``.

    Args:
        playwright: what ``with playwright.sync_api.sync_playwright() as playwright`` gives.
        chromium: the binary; default :func:`chromium_path`.

    Returns:
        The playwright ``Browser``; close it when done.
    """
    executable = chromium_path() if chromium is None else Path(chromium)
    return playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)


def oracle_command(queries: Path, rewards: Path, url_file: Path, *options: str) -> list[str]:
    """The command that runs the oracle with this Python, writing its URL to ``url_file``."""
    command = [sys.executable, "-m", "prefalign.oracles.human", "--url-file", str(url_file)]
    return [*command, *options, str(queries), str(rewards)]


def wait_for_url(url_file: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> str:
    """The URL the oracle started as ``process`` writes to ``url_file`` once it listens.

    Raises:
        RuntimeError: the oracle exited before writing the URL.
        TimeoutError: no URL within ``timeout_s`` seconds (the oracle is left running).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if url_file.exists():
            return url_file.read_text().strip()
        if process.poll() is not None:
            raise RuntimeError(f"the oracle exited early with status {process.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"the oracle wrote no URL to {url_file} within {timeout_s} s")
