"""Where the person finds the page: its URL (with the round's token), the URL file, a browser."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from pathlib import Path

from prefalign.io.atomic import atomic_path
from prefalign.io.oracle_command import ORACLE_MARKER_ENV
from prefalign.oracles.human.server import PROG

__all__ = ["is_loopback", "open_in_browser", "page_url", "remove_url_file", "write_url_file"]


def page_url(host: str, port: int, token: str) -> str:
    """The page's URL; an address that listens everywhere is shown as the loopback address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}/{token}/"
    if address.is_unspecified:  # listening everywhere: show the loopback address
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{port}/{token}/"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.1, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_url_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (it holds the token)."""
    with atomic_path(path) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)


def remove_url_file(path: Path, url: str) -> None:
    """Remove the URL file if it still holds this round's URL (never another oracle's)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text(encoding="utf-8").strip() == url:
            path.unlink()


def open_in_browser(url: str) -> None:
    """Open ``url`` in this machine's default browser, or say on stderr that it could not.

    The browser is started without the marker (:data:`prefalign.io.oracle_command.ORACLE_MARKER_ENV`)
    by which the workflow's oracle runner finds and kills the oracle's processes, so it outlives
    a round that ends normally.
    """
    import webbrowser

    marker = os.environ.pop(ORACLE_MARKER_ENV, None)
    try:
        opened = webbrowser.open(url, new=2)
    except webbrowser.Error:
        opened = False
    finally:
        if marker is not None:
            os.environ[ORACLE_MARKER_ENV] = marker
    if not opened:
        print(f"{PROG}: could not open a web browser here; open the URL yourself", file=sys.stderr)
