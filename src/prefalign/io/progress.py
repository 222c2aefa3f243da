"""Progress bars that stay a few lines in a log file.

On a terminal, :func:`tqdm` is tqdm's bar as usual. When the stream is not a terminal (a
workflow job's ``> {log} 2>&1``), a bar redrawn with carriage returns would become one line of
megabytes (``logs/models/train_digits.log`` was a single 2,000-update line): there the bar prints
a whole line at about every tenth of its total (:data:`LOG_LINES` lines and the last one), never
a carriage return.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm as _tqdm

__all__ = ["LOG_LINES", "tqdm"]

#: About how many lines a bar writes to a stream that is not a terminal.
LOG_LINES = 10


class _Lines:
    """A stream wrapper for tqdm that turns each redraw into one line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def tqdm(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    disable: bool = False,
    file: TextIO | None = None,
    **kwargs: Any,
) -> _tqdm:
    """tqdm's bar on a terminal; a few whole lines (about :data:`LOG_LINES`) anywhere else.

    Takes tqdm's arguments (``desc``, ``unit``, ...).
    """
    stream = file if file is not None else sys.stderr
    if disable or _is_terminal(stream):
        return _tqdm(iterable, total=total, disable=disable, file=stream, **kwargs)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    every = max(1, int(total // LOG_LINES)) if total else 1
    kwargs.update(
        mininterval=0.0,
        maxinterval=float("inf"),  # the monitor thread never lowers miniters
        miniters=every,
        ascii=True,
        ncols=100,
        dynamic_ncols=False,
    )
    return _tqdm(iterable, total=total, file=_Lines(stream), **kwargs)
