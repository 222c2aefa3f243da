"""A person as the oracle: rate a round's queries in a web browser.

Run as an oracle command (the workflow appends the two paths)::

    prefalign oracle human [--host 127.0.0.1] [--port 0] [--timeout-s NONE] [--title T]
        [--scale MIN MAX] [--url-file PATH] [--open] [--campaign NAME] [--round R]
        [--rounds N] [--budget-left B] QUERIES.npz REWARDS.csv

(``python -m prefalign.oracles.human`` is the same command.) ``--campaign``, ``--round``,
``--rounds`` and ``--budget-left`` default to ``PREFALIGN_CAMPAIGN``, ``PREFALIGN_ROUND``,
``PREFALIGN_ROUNDS`` and ``PREFALIGN_BUDGET_LEFT``, which the workflow sets for every oracle.
``docs/human-oracle.md`` describes a whole campaign with a person as the oracle.

What it does, in order:

1. Reads and checks the queries (``id``: unique strings; ``x``: finite floats of shape (k, 2) for
   2-D points, (k, H, W) or (k, C, H, W) with C in {1, 3} for images in [-1, 1]).
2. Serves one page on ``--host`` (loopback by default) and ``--port`` (0 picks a free one), and
   prints its URL to stdout and, after ``open this page to rate the queries:``, to stderr (in the
   workflow both end up in the round's ``oracle.log``); with ``--url-file`` also to that file
   (its folder is created; the file is removed when the round ends), with ``--open`` it opens
   the page in the default browser. The URL holds a random token
   (:func:`secrets.token_urlsafe`), new for every round; every request (page, pictures, drafts,
   submission) without that token gets 403 and changes nothing.
3. The page shows every query as a picture: an image scaled up with crisp pixels, or a 2-D point
   drawn as a small plot with that point highlighted among all the round's queries. Each query has
   one group of radio buttons, one per whole number of ``--scale MIN MAX`` (default 1 to 5,
   MIN = worst, MAX = best). The page also shows the campaign, the round, the budget left and how
   many queries are rated so far.
4. Each click is saved as a draft on the server (per query id, in memory), so closing the page and
   reopening the same URL shows the ratings entered so far. The page works without JavaScript as
   well: then ratings are kept when a submission is refused.
5. A submission that leaves a query unrated, or is malformed (unknown id, a value that is not a
   whole number of the scale), is refused with a message on the page; nothing is written.
6. Once every query is rated and submitted, ``REWARDS.csv`` is written atomically (temporary file,
   then :func:`os.replace`), the page says thank you, the server stops and the command exits 0.
   The submission is durable the moment the file is renamed into place: the round then ends
   whatever happens to the reply (a tab closed right after Submit, a double click, a reset).
7. Hardening: the URL file is 0600 (it holds the token); a connection idle for
   ``--connection-timeout-s`` (default 30 s) is closed; malformed requests (a ``Content-Length``
   that is not ASCII digits, a draft nested too deeply) get 400; ``--host ''`` is refused.

Exit status: 0 rewards written; 1 unusable input (queries file, rewards folder, URL file,
address); 2 bad command line; 124 ``--timeout-s`` expired; 130 interrupted (Ctrl-C) or terminated
(SIGTERM, e.g. the workflow step was stopped). On every non-zero exit nothing is written to
``REWARDS.csv``, and the ratings entered so far are lost.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import hashlib
import html
import io
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import numpy as np

PROG = "prefalign oracle human"

EXIT_OK = 0
EXIT_INPUT_ERROR = 1
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

#: Pictures are scaled up to about this many pixels on their longer side.
DISPLAY_PX = 192
#: Largest request body accepted (a submission of thousands of ratings fits easily).
MAX_BODY_BYTES = 1 << 20
#: Longest scale offered as radio buttons (MAX - MIN).
MAX_SCALE_STEPS = 10
#: Seconds a connection may sit idle (no byte sent or taken) before the server closes it.
CONNECTION_TIMEOUT_S = 30.0
#: Seconds the round waits, once the rewards are written, for the thank-you page to go out.
REPLY_GRACE_S = 5.0
#: Form fields carrying a rating are named ``rating:<query id>``.
FIELD_PREFIX = "rating:"

QueryKind = Literal["points2d", "image"]


class QueriesError(ValueError):
    """The queries file cannot be shown to a person (unreadable, wrong arrays or shapes)."""


class RatingError(ValueError):
    """A submitted or drafted rating is malformed; the message says which and why."""


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queries:
    """One round's queries.

    Attributes:
        ids: the query ids, in file order, unique.
        x: float32 array of shape (k, 2) (points) or (k, H, W) / (k, C, H, W) (images).
        kind: ``points2d`` or ``image``.
    """

    ids: tuple[str, ...]
    x: np.ndarray
    kind: QueryKind

    def __len__(self) -> int:
        return len(self.ids)


def load_queries(path: str | os.PathLike[str]) -> Queries:
    """Read and check a queries ``.npz`` file (arrays ``id`` and ``x``; no pickles).

    Raises:
        QueriesError: the file is unreadable, lacks an array, or holds ids or shapes this oracle
            cannot show (duplicate ids, non-finite values, shapes other than points or images).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in ("id", "x") if name not in npz.files]
            if missing:
                raise QueriesError(
                    f"queries file {path} lacks array(s) {', '.join(map(repr, missing))}; "
                    f"it holds {sorted(npz.files)}"
                )
            ids_array = npz["id"]
            x = npz["x"]
    except QueriesError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # a truncated or corrupt file: BadZipFile and EOFError are no ValueError
        raise QueriesError(f"cannot read queries file {path}: {error}") from error

    if ids_array.ndim != 1 or ids_array.dtype.kind != "U":
        raise QueriesError(
            f"queries file {path}: 'id' must be a 1-D unicode string array, "
            f"got dtype {ids_array.dtype} and shape {ids_array.shape}"
        )
    ids = tuple(str(value) for value in ids_array.tolist())
    if not ids:
        raise QueriesError(f"queries file {path} holds no queries")
    if any(not query_id for query_id in ids):
        raise QueriesError(f"queries file {path}: every id must be a non-empty string")
    duplicates = sorted({query_id for query_id in ids if ids.count(query_id) > 1})
    if duplicates:
        raise QueriesError(f"queries file {path}: duplicate ids {duplicates}")
    if x.dtype.kind not in "fiu":
        raise QueriesError(f"queries file {path}: 'x' must be numeric, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] != len(ids):
        raise QueriesError(
            f"queries file {path}: 'x' must have one row per id ({len(ids)}), got shape {x.shape}"
        )
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise QueriesError(f"queries file {path}: 'x' holds non-finite values")
    return Queries(ids=ids, x=x, kind=_query_kind(x.shape, path))


def _query_kind(shape: tuple[int, ...], path: Path) -> QueryKind:
    """Which picture a query of this shape becomes; raises QueriesError for other shapes."""
    if len(shape) == 2 and shape[1] == 2:
        return "points2d"
    if len(shape) == 3 and min(shape[1:]) > 0:
        return "image"
    if len(shape) == 4 and shape[1] in (1, 3) and min(shape[2:]) > 0:
        return "image"
    raise QueriesError(
        f"queries file {path}: cannot show queries of shape {shape}; the human oracle shows "
        "2-D points (k, 2) and images (k, H, W) or (k, C, H, W) with C = 1 (grey) or 3 (RGB)"
    )


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def image_png(image: np.ndarray, display_px: int = DISPLAY_PX) -> bytes:
    """PNG of one image query, scaled up by a whole factor with nearest-neighbour pixels.

    Args:
        image: (H, W), (1, H, W) or (3, H, W), values in [-1, 1] (clipped).
        display_px: target size of the longer side; the factor is ``display_px // max(H, W)``.
    """
    from PIL import Image

    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    pixels = np.rint((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    if pixels.ndim == 3:  # (3, H, W) -> (H, W, 3)
        picture = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
    else:
        picture = Image.fromarray(pixels, mode="L")
    factor = max(1, display_px // max(picture.size))
    if factor > 1:
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def image_display_size(shape: Sequence[int], display_px: int = DISPLAY_PX) -> tuple[int, int]:
    """(width, height) in pixels of :func:`image_png` for an image of this (event) shape."""
    height, width = shape[-2], shape[-1]
    factor = max(1, display_px // max(height, width))
    return width * factor, height * factor


def square_limits(points: np.ndarray, margin: float = 0.12) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) window around all points (N, 2), with a relative margin."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2.0
    half = float(np.max(high - low)) / 2.0
    half = half * (1.0 + 2.0 * margin) if half > 0 else 1.0
    return (
        float(centre[0] - half),
        float(centre[0] + half),
        float(centre[1] - half),
        float(centre[1] + half),
    )


def point_png(
    points: np.ndarray,
    index: int,
    limits: tuple[float, float, float, float],
    display_px: int = DISPLAY_PX,
) -> bytes:
    """PNG of query ``index`` among all the round's 2-D points (k, 2): a small matplotlib plot.

    The other queries are small grey dots; this one is a large orange dot with a black edge.
    Drawn with the object-oriented Agg API (no pyplot), so it is safe off the main thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(display_px / dpi, display_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.15, 0.12, 0.82, 0.84))
    others = np.delete(points, index, axis=0)
    axes.scatter(others[:, 0], others[:, 1], s=12, color="#9aa0a6", linewidths=0, zorder=2)
    axes.scatter(
        points[index, 0],
        points[index, 1],
        s=90,
        color="#d55e00",
        edgecolors="black",
        linewidths=1.0,
        zorder=3,
    )
    axes.set_xlim(limits[0], limits[1])
    axes.set_ylim(limits[2], limits[3])
    axes.set_aspect("equal", adjustable="box")
    axes.grid(True, color="#e3e5e8", linewidth=0.6, zorder=0)
    axes.tick_params(labelsize=7, length=2, pad=1.5)
    axes.locator_params(nbins=5)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class QueryPictures:
    """Renders each query's PNG once, on first request, and keeps it in memory."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries
        self._cache: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._limits = square_limits(queries.x) if queries.kind == "points2d" else None

    def png(self, index: int) -> bytes:
        """The PNG bytes of query ``index`` (0-based)."""
        with self._lock:
            if index not in self._cache:
                if self.queries.kind == "points2d":
                    assert self._limits is not None
                    self._cache[index] = point_png(self.queries.x, index, self._limits)
                else:
                    self._cache[index] = image_png(self.queries.x[index])
            return self._cache[index]

    def size(self) -> tuple[int, int]:
        """(width, height) of every picture, for the page layout."""
        if self.queries.kind == "points2d":
            return DISPLAY_PX, DISPLAY_PX
        return image_display_size(self.queries.x.shape[1:])

    def alt_text(self, index: int) -> str:
        """A text alternative for query ``index``."""
        if self.queries.kind == "points2d":
            x0, x1 = self.queries.x[index]
            return (
                f"Query {index + 1}: the point ({x0:.3g}, {x1:.3g}), highlighted among the "
                f"round's {len(self.queries)} points"
            )
        shape = self.queries.x.shape[1:]
        colour = "colour" if len(shape) == 3 and shape[0] == 3 else "grey"
        return f"Query {index + 1}: {shape[-2]} by {shape[-1]} pixel {colour} image"


# --------------------------------------------------------------------------------------------
# Ratings
# --------------------------------------------------------------------------------------------

_WHOLE_NUMBER = re.compile(r"^[+-]?\d{1,9}$")


class RatingSession:
    """The server-side state of one round: the ratings entered so far and how the round ended.

    All methods are thread-safe. ``outcome`` is ``None`` while open, then ``"submitted"``
    (REWARDS.csv written) or ``"timed_out"`` (nothing written). ``done`` is set the moment
    REWARDS.csv is renamed into place: the submission is durable then, and the round ends
    whatever happens to the reply (a closed tab, a reset connection). ``replied`` is set once the
    thank-you page was sent or its sending failed.
    """

    def __init__(self, ids: Sequence[str], scale: tuple[int, int], rewards_path: Path) -> None:
        self.ids = tuple(ids)
        self.scale = scale
        self.rewards_path = rewards_path
        self.ratings: dict[str, int] = {}
        self.outcome: Literal["submitted", "timed_out"] | None = None
        self.done = threading.Event()
        self.replied = threading.Event()
        self._index = {query_id: i for i, query_id in enumerate(self.ids)}
        self._lock = threading.Lock()

    def label(self, query_id: str) -> str:
        """How the page names a query: ``Query <position>``."""
        return f"Query {self._index[query_id] + 1}"

    def parse_rating(self, query_id: str, raw: object) -> int:
        """Check one rating: a known id and a whole number within the scale.

        Raises:
            RatingError: the id is unknown or the value is not a whole number of the scale.
        """
        low, high = self.scale
        if query_id not in self._index:
            raise RatingError(f"unknown query id {query_id!r}")
        name = f"{self.label(query_id)} (id {query_id!r})"
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise RatingError(f"the rating of {name} must be a whole number, got {raw!r}")
        text = str(raw).strip()
        if not _WHOLE_NUMBER.match(text):
            raise RatingError(
                f"the rating of {name} is {text!r}, not a whole number from {low} to {high}"
            )
        value = int(text)
        if not low <= value <= high:
            raise RatingError(f"the rating of {name} is {value}, outside the scale {low} to {high}")
        return value

    def _parse_all(self, pairs: Iterable[tuple[str, object]]) -> tuple[dict[str, int], list[str]]:
        """Parse (id, raw value) pairs; returns the valid ratings and the error messages."""
        parsed: dict[str, int] = {}
        errors: list[str] = []
        for query_id, raw in pairs:
            if query_id in parsed:
                errors.append(f"query id {query_id!r} was rated twice in one request")
                continue
            try:
                parsed[query_id] = self.parse_rating(query_id, raw)
            except RatingError as error:
                errors.append(str(error))
        return parsed, errors

    def snapshot(self) -> dict[str, int]:
        """A copy of the ratings entered so far."""
        with self._lock:
            return dict(self.ratings)

    def missing(self) -> list[str]:
        """Ids without a rating, in query order."""
        with self._lock:
            return [query_id for query_id in self.ids if query_id not in self.ratings]

    def save_draft(self, pairs: Iterable[tuple[str, object]]) -> int:
        """Keep ratings entered so far; all or nothing. Returns how many queries are rated.

        Raises:
            RatingError: any pair is malformed (nothing is kept), or the round is closed.
        """
        parsed, errors = self._parse_all(pairs)
        if errors:
            raise RatingError("; ".join(errors))
        with self._lock:
            if self.outcome is not None:
                raise RatingError("this round is closed; ratings can no longer be changed")
            self.ratings.update(parsed)
            return len(self.ratings)

    def submit(self, pairs: Iterable[tuple[str, object]]) -> list[str]:
        """Merge a submission into the ratings; write REWARDS.csv when every query is rated.

        A malformed submission changes nothing. A well-formed but incomplete one keeps its ratings
        (as a draft) and is refused. Returns the error messages: empty when the rewards were
        written (``outcome`` is then ``"submitted"``).

        Raises:
            OSError: REWARDS.csv could not be written (the ratings are kept; submit again).
        """
        parsed, errors = self._parse_all(pairs)
        if errors:
            return errors
        with self._lock:
            if self.outcome is not None:
                return ["this round is closed; ratings can no longer be changed"]
            self.ratings.update(parsed)
            missing = [query_id for query_id in self.ids if query_id not in self.ratings]
            if missing:
                if len(missing) == 1:
                    count = f"1 of {len(self.ids)} queries is"
                else:
                    count = f"{len(missing)} of {len(self.ids)} queries are"
                return [f"{count} not rated yet. Rate every query, then submit again."]
            write_rewards(self.rewards_path, self.ids, self.ratings)
            self.outcome = "submitted"
            self.done.set()
            return []

    def close_on_timeout(self) -> bool:
        """Close the round because time ran out; False when a submission got there first."""
        with self._lock:
            if self.outcome is not None:
                return False
            self.outcome = "timed_out"
            return True


def write_rewards(path: Path, ids: Sequence[str], ratings: dict[str, int]) -> None:
    """Write ``id,reward`` rows (query order, rewards as floats) atomically: temp file + replace."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        os.fchmod(descriptor, 0o644)
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id", "reward"])
            for query_id in ids:
                writer.writerow([query_id, repr(float(ratings[query_id]))])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; --accent: #0b57d0; --bad: #b3261e; --line: #c4c7c5; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f1f1f; background: #f8f9fa; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 1.5rem; margin: 0 0 6px; }
.facts { display: flex; flex-wrap: wrap; gap: 8px 24px; list-style: none; padding: 0;
  margin: 0 0 8px; color: #444746; }
.facts strong { color: #1f1f1f; }
#instructions { margin: 0 0 14px; max-width: 62em; }
.alert { border: 2px solid var(--bad); background: #fce8e6; color: #410e0b; border-radius: 8px;
  padding: 10px 14px; margin: 0 0 16px; }
.alert p { margin: 0; }
.alert ul { margin: 6px 0 0; padding-left: 1.3em; }
.alert a { color: #410e0b; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(236px, 1fr)); gap: 14px; }
fieldset.query { margin: 0; padding: 10px 12px 12px; background: #fff; border: 1px solid
  var(--line); border-radius: 10px; min-width: 0; }
fieldset.query.missing { border: 2px solid var(--bad); }
legend { font-weight: 600; padding: 0 4px; }
.missing legend::after { content: " \\2014  not rated"; color: var(--bad); font-weight: 500; }
.picture { display: block; margin: 2px auto 10px; max-width: 100%; height: auto;
  image-rendering: pixelated; border: 1px solid #e3e3e3; background: #fff; }
.scale { display: flex; justify-content: center; gap: 4px; flex-wrap: wrap; }
.scale label { display: inline-flex; flex-direction: column; align-items: center; min-width: 34px;
  padding: 3px 4px 2px; border: 1px solid var(--line); border-radius: 6px; cursor: pointer;
  font-variant-numeric: tabular-nums; user-select: none; }
.scale label:hover { border-color: var(--accent); }
.scale label:has(input:checked) { background: #d3e3fd; border-color: var(--accent);
  font-weight: 700; }
.scale label:has(input:focus-visible) { outline: 3px solid var(--accent); outline-offset: 2px; }
.scale input { margin: 0 0 2px; accent-color: var(--accent); }
.ends { display: flex; justify-content: space-between; font-size: 0.8rem; color: #5f6368;
  margin: 3px 2px 0; }
.actions { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 18px 0 32px; }
button { font: inherit; font-weight: 600; color: #fff; background: var(--accent); border: 0;
  border-radius: 20px; padding: 9px 22px; cursor: pointer; }
button:hover { background: #0842a0; }
button:focus-visible { outline: 3px solid #1f1f1f; outline-offset: 2px; }
#save-status { color: var(--bad); }
.thanks { max-width: 40em; margin: 12vh auto; padding: 0 20px; }
"""

_JS = """
"use strict";
(function () {
  const form = document.getElementById("ratings");
  if (!form) { return; }
  const counter = document.getElementById("rated-count");
  const saveStatus = document.getElementById("save-status");
  let queue = Promise.resolve();
  function send(id, value) {
    const body = JSON.stringify({ ratings: { [id]: value } });
    return fetch("draft", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: body,
    }).then(function (response) {
      return response.json().then(function (reply) {
        if (!response.ok) { throw new Error(reply.error || response.statusText); }
        counter.textContent = String(reply.rated);
        saveStatus.textContent = "";
      });
    }).catch(function (error) {
      saveStatus.textContent = "This rating was not saved as a draft (" + error.message +
        "); it is still sent when you submit.";
    });
  }
  form.addEventListener("change", function (event) {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "radio") { return; }
    const fieldset = input.closest("fieldset");
    fieldset.classList.remove("missing");
    fieldset.removeAttribute("aria-invalid");
    counter.textContent = String(form.querySelectorAll("input[type=radio]:checked").length);
    queue = queue.then(function () { return send(fieldset.dataset.id, input.value); });
  });
})();
"""


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; img-src 'self' data:; style-src {_csp_hash(_CSS)}; "
        f"script-src {_csp_hash(_JS)}; connect-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class PageSettings:
    """What the page says besides the queries.

    Attributes:
        title: the page's heading.
        round: the round number (0 = the first round), or None to leave it out.
        budget_left: queries left in the budget after this round, or None.
        campaign: the campaign's name (e.g. ``digits-human/fkc-al/seed0``), or None.
        rounds: how many rounds the campaign has, or None.
    """

    title: str = "Rate these samples"
    round: int | None = None
    budget_left: int | None = None
    campaign: str | None = None
    rounds: int | None = None

    def document_title(self) -> str:
        """The browser tab's title: the heading, then the round and the campaign when known."""
        parts = [self.title]
        if self.round is not None:
            parts.append(f"round {self.round}")
        if self.campaign:
            parts.append(self.campaign)
        return " - ".join(parts)


def _document(title: str, body: str, script: bool) -> str:
    script_tag = f"<script>{_JS}</script>\n" if script else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n<link rel="icon" href="data:,">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n{script_tag}</body>\n</html>\n"
    )


def render_rating_page(
    session: RatingSession,
    pictures: QueryPictures,
    settings: PageSettings,
    errors: Sequence[str] = (),
) -> str:
    """The HTML rating page: facts, instructions, optional error box, one fieldset per query."""
    esc = html.escape
    ratings = session.snapshot()
    low, high = session.scale
    total = len(session.ids)
    facts = []
    if settings.campaign:
        facts.append(f'<li>Campaign <strong id="campaign">{esc(settings.campaign)}</strong></li>')
    if settings.round is not None:
        of_rounds = ""
        if settings.rounds is not None:
            last = " (the last)" if settings.round == settings.rounds - 1 else ""
            of_rounds = f" of rounds 0 to {settings.rounds - 1}{last}"
        facts.append(f"<li>Round <strong>{settings.round}</strong>{of_rounds}</li>")
    if settings.budget_left is not None:
        facts.append(f"<li>Budget left <strong>{settings.budget_left}</strong> queries</li>")
    facts.append(
        f'<li id="progress" aria-live="polite">Rated <strong id="rated-count">{len(ratings)}'
        f"</strong> of <strong>{total}</strong></li>"
    )
    missing = set(session.ids) - set(ratings) if errors else set()

    alert = ""
    if errors:
        items = "".join(f"<li>{esc(message)}</li>" for message in errors)
        links = ""
        if missing:
            links = ", ".join(
                f'<a href="#q{i}">{esc(session.label(query_id))}</a>'
                for i, query_id in enumerate(session.ids)
                if query_id in missing
            )
            links = f"<p>Not rated yet: {links}.</p>"
        alert = (
            '<div class="alert" id="submit-error" role="alert">'
            f"<p><strong>Not submitted, nothing was saved to the rewards file.</strong></p>"
            f"<ul>{items}</ul>{links}</div>"
        )

    width, height = pictures.size()
    cards = []
    for i, query_id in enumerate(session.ids):
        options = []
        for value in range(low, high + 1):
            checked = " checked" if ratings.get(query_id) == value else ""
            options.append(
                f'<label><input type="radio" name="{esc(FIELD_PREFIX + query_id)}" '
                f'value="{value}"{checked}>{value}</label>'
            )
        invalid = ' aria-invalid="true"' if query_id in missing else ""
        css = "query missing" if query_id in missing else "query"
        cards.append(
            f'<fieldset class="{css}" id="q{i}" data-id="{esc(query_id)}"{invalid}>'
            f"<legend>{esc(session.label(query_id))}</legend>"
            f'<img class="picture" src="query/{i}.png" width="{width}" height="{height}" '
            f'alt="{esc(pictures.alt_text(i))}">'
            f'<div class="scale">{"".join(options)}</div>'
            '<div class="ends" aria-hidden="true"><span>worst</span><span>best</span></div>'
            "</fieldset>"
        )

    body = (
        f"<header>\n<h1>{esc(settings.title)}</h1>\n"
        f'<ul class="facts">{"".join(facts)}</ul>\n'
        f'<p id="instructions">Rate each of the {total} samples from <strong>{low}</strong> '
        f"(worst) to <strong>{high}</strong> (best), then submit. Your ratings are kept as you "
        "go: you can close this page and reopen the same link to continue.</p>\n</header>\n"
        f"<main>\n{alert}\n"
        '<form id="ratings" method="post" action="submit" autocomplete="off" novalidate>\n'
        f'<div class="grid">\n{chr(10).join(cards)}\n</div>\n'
        '<p class="actions"><button type="submit">Submit ratings</button>'
        '<span id="save-status" role="status"></span></p>\n</form>\n</main>'
    )
    return _document(settings.document_title(), body, script=True)


def render_thanks_page(settings: PageSettings, count: int, rewards_path: Path) -> str:
    """The page shown after the rewards are written."""
    round_text = f" for round {settings.round}" if settings.round is not None else ""
    body = (
        '<main class="thanks">\n<h1>Thank you</h1>\n'
        f"<p>Your {count} ratings{html.escape(round_text)} were saved to "
        f"<code>{html.escape(rewards_path.name)}</code>. You can close this tab; "
        "the workflow continues.</p>\n</main>"
    )
    return _document(f"Thank you - {settings.title}", body, script=False)


def render_message_page(settings: PageSettings, heading: str, message: str) -> str:
    """A plain page with one message (the round is closed, a write failed, ...)."""
    body = (
        f'<main class="thanks">\n<h1>{html.escape(heading)}</h1>\n'
        f'<p role="alert">{html.escape(message)}</p>\n</main>'
    )
    return _document(f"{heading} - {settings.title}", body, script=False)


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class OracleServer(ThreadingHTTPServer):
    """The HTTP server of one round; every request must carry ``token`` as its first path part."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        session: RatingSession,
        pictures: QueryPictures,
        settings: PageSettings,
        token: str,
        connection_timeout_s: float = CONNECTION_TIMEOUT_S,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.session = session
        self.pictures = pictures
        self.settings = settings
        self.token = token
        self.connection_timeout_s = connection_timeout_s

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that went away (closed tab, reset) is one line on stderr, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            print(f"{PROG}: a connection ended early: {error}", file=sys.stderr)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: OracleServer
    server_version = "prefalign-human-oracle"
    sys_version = ""

    def setup(self) -> None:
        # a socket time-out per connection: an idle client (no request line, a body that never
        # comes, a reply never taken) cannot hold a thread for ever
        self.timeout = self.server.connection_timeout_s
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing: request lines hold the token, and stderr ends up in workflow logs."""

    # -- routing ---------------------------------------------------------------------------

    def _route(self) -> str | None:
        """The path after the token (``""`` for the page), or None after answering 403/301."""
        path = urlsplit(self.path).path
        first, slash, rest = path.removeprefix("/").partition("/")
        expected = self.server.token.encode("ascii")
        if not secrets.compare_digest(first.encode("latin-1", "replace"), expected):
            self._send_text(
                HTTPStatus.FORBIDDEN,
                "403 Forbidden: this URL lacks the right token. Use the exact URL the human "
                "oracle printed when it started.\n",
            )
            return None
        if not slash:
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", f"/{self.server.token}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return rest

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """Serve the page and the query pictures."""
        rest = self._route()
        if rest is None:
            return
        session = self.server.session
        if session.outcome is not None:
            self._send_closed()
        elif rest == "":
            page = render_rating_page(session, self.server.pictures, self.server.settings)
            self._send_html(HTTPStatus.OK, page)
        elif match := re.fullmatch(r"query/(\d{1,9})\.png", rest):
            index = int(match.group(1))
            if index >= len(session.ids):
                self._send_text(HTTPStatus.NOT_FOUND, f"no query number {index}\n")
                return
            self._send(HTTPStatus.OK, "image/png", self.server.pictures.png(index))
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"not found: {rest!r}\n")

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """Accept draft ratings (JSON) and the final submission (a form)."""
        rest = self._route()
        if rest is None:
            return
        if rest == "draft":
            self._post_draft()
        elif rest == "submit":
            self._post_submit()
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"not found: {rest!r}\n")

    # -- endpoints -------------------------------------------------------------------------

    def _post_draft(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            request = json.loads(body.decode("utf-8"))
            ratings = request["ratings"]
            if not isinstance(ratings, dict):
                raise TypeError("'ratings' must be an object")
        except RecursionError:
            self._send_json(
                HTTPStatus.BAD_REQUEST, {"error": "the draft is too deeply nested to be a draft"}
            )
            return
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            self._send_json(
                HTTPStatus.BAD_REQUEST,
                {"error": f'a draft must be JSON {{"ratings": {{id: value}}}}: {error}'},
            )
            return
        try:
            rated = self.server.session.save_draft(ratings.items())
        except RatingError as error:
            status = HTTPStatus.GONE if self.server.session.outcome else HTTPStatus.BAD_REQUEST
            self._send_json(status, {"error": str(error)})
            return
        self._send_json(HTTPStatus.OK, {"rated": rated, "total": len(self.server.session.ids)})

    def _post_submit(self) -> None:
        server = self.server
        session = server.session
        body = self._read_body()
        if body is None:
            return
        pairs: list[tuple[str, object]] = []
        errors: list[str] = []
        try:
            fields = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
            )
        except (UnicodeDecodeError, ValueError) as error:
            fields = []
            errors.append(f"the submission is not a valid form: {error}")
        for name, value in fields:
            if name.startswith(FIELD_PREFIX):
                pairs.append((name.removeprefix(FIELD_PREFIX), value))
            else:
                errors.append(f"unexpected form field {name!r}")
        if session.outcome is not None:
            self._send_closed()
            return
        if not errors:
            try:
                errors = session.submit(pairs)
            except OSError as error:
                print(
                    f"{PROG}: error: cannot write {session.rewards_path}: {error}", file=sys.stderr
                )
                message = (
                    f"Could not write the rewards file: {error}. Your ratings are kept; "
                    "fix the problem and submit again."
                )
                page = render_rating_page(session, server.pictures, server.settings, [message])
                self._send_html(HTTPStatus.INTERNAL_SERVER_ERROR, page)
                return
        if errors:
            page = render_rating_page(session, server.pictures, server.settings, errors)
            self._send_html(HTTPStatus.BAD_REQUEST, page)
            return
        # the rewards are in place and session.done is set: the round ends whatever happens to
        # this reply (the main thread gives it REPLY_GRACE_S to go out)
        try:
            page = render_thanks_page(server.settings, len(session.ids), session.rewards_path)
            self._send_html(HTTPStatus.OK, page)
        except OSError as error:  # BrokenPipeError, ConnectionResetError, a time-out
            print(
                f"{PROG}: the ratings were saved, but the thank-you page could not be sent "
                f"({error})",
                file=sys.stderr,
            )
            self.close_connection = True
        finally:
            session.replied.set()

    # -- helpers ---------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._send_text(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required\n")
            return None
        # ASCII digits only: str.isdigit() also takes '²', which int() then refuses
        if not re.fullmatch(r"[0-9]{1,12}", length_header.strip(), flags=re.ASCII):
            self._send_text(
                HTTPStatus.BAD_REQUEST,
                f"Content-Length must be a whole number of bytes, got {length_header!r}\n",
            )
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._send_text(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}\n",
            )
            return None
        return self.rfile.read(length)

    def _send_closed(self) -> None:
        outcome = self.server.session.outcome
        message = (
            "The ratings of this round were already submitted."
            if outcome == "submitted"
            else "This round timed out; nothing was saved. Ask whoever runs the workflow."
        )
        page = render_message_page(self.server.settings, "This round is closed", message)
        self._send_html(HTTPStatus.GONE, page)

    def _send(self, status: HTTPStatus, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _send_html(self, status: HTTPStatus, page: str) -> None:
        self._send(status, "text/html; charset=utf-8", page.encode("utf-8"))

    def _send_text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode("utf-8"))

    def _send_json(self, status: HTTPStatus, payload: dict[str, object]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _timeout(text: str) -> float | None:
    if text.strip().lower() in ("none", "null", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be seconds > 0 or 'none', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be seconds > 0 or 'none', got {text!r}")
    return value


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "must not be empty (it would listen on every interface); give 127.0.0.1, or "
            "0.0.0.0 to listen on every interface on purpose"
        )
    return text.strip()


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (any free port) to 65535, got {value}")
    return value


#: Environment variables the workflow sets for every oracle (``prefalign.loop.steps.oracle_round``);
#: they are the defaults of ``--campaign``, ``--round``, ``--rounds`` and ``--budget-left``.
ENV_CAMPAIGN = "PREFALIGN_CAMPAIGN"
ENV_ROUND = "PREFALIGN_ROUND"
ENV_ROUNDS = "PREFALIGN_ROUNDS"
ENV_BUDGET_LEFT = "PREFALIGN_BUDGET_LEFT"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of the human oracle command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Ask a person to rate one round's queries in a web browser, then write REWARDS.csv "
            "(id,reward). Prints the page's URL (with a secret token) to stdout, and to stderr "
            "after 'open this page to rate the queries:'."
        ),
        epilog=(
            f"Run by the workflow, the page shows the campaign, round and budget left from the "
            f"environment ({ENV_CAMPAIGN}, {ENV_ROUND}, {ENV_ROUNDS}, {ENV_BUDGET_LEFT}); the "
            "options override them. Exit status: 0 rewards written; 1 unusable queries file, "
            "rewards folder, URL file or address; 2 bad command line; 124 timed out; "
            "130 interrupted or terminated. Nothing is written unless 0."
        ),
    )
    parser.add_argument("queries", type=Path, metavar="QUERIES.npz", help="queries to rate")
    parser.add_argument("rewards", type=Path, metavar="REWARDS.csv", help="rewards file to write")
    parser.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help=(
            "address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 or :: for "
            "every interface)"
        ),
    )
    parser.add_argument(
        "--connection-timeout-s",
        type=_timeout,
        default=CONNECTION_TIMEOUT_S,
        metavar="SECONDS",
        help="close a connection idle for this long (default: %(default)g)",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port to listen on (default: 0, any free port)"
    )
    parser.add_argument(
        "--timeout-s",
        type=_timeout,
        default=None,
        metavar="SECONDS",
        help="give up after this many seconds, exit 124 and write nothing (default: none)",
    )
    parser.add_argument(
        "--round",
        type=_non_negative,
        default=None,
        metavar="R",
        help=f"round number to show (default: ${ENV_ROUND}, else none)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=None,
        metavar="N",
        help=f"number of rounds of the campaign, to show (default: ${ENV_ROUNDS}, else none)",
    )
    parser.add_argument(
        "--budget-left",
        type=_non_negative,
        default=None,
        metavar="B",
        help=(
            "number of queries left in the budget after this round, to show "
            f"(default: ${ENV_BUDGET_LEFT}, else none)"
        ),
    )
    parser.add_argument(
        "--campaign",
        default=None,
        metavar="NAME",
        help=f"campaign name to show (default: ${ENV_CAMPAIGN}, else none)",
    )
    parser.add_argument(
        "--title", default="Rate these samples", help="page heading (default: %(default)s)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        nargs=2,
        default=(1, 5),
        metavar=("MIN", "MAX"),
        help=(
            "whole-number rating scale, MIN = worst, MAX = best, one radio button per value, "
            f"at most {MAX_SCALE_STEPS + 1} values (default: 1 5)"
        ),
    )
    parser.add_argument(
        "--url-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=(
            "also write the URL to this file once the server is ready (its folder is created); "
            "the file is removed again when the round ends"
        ),
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="also open the page in this machine's default web browser (default: off)",
    )
    return parser


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _environment_defaults(args: argparse.Namespace) -> list[str]:
    """Fill unset ``--campaign/--round/--rounds/--budget-left`` from the workflow's environment.

    A malformed variable is ignored with a warning (it only changes what the page shows).
    Returns the warnings.
    """
    warnings: list[str] = []
    for attribute, variable, parse in (
        ("round", ENV_ROUND, _non_negative),
        ("rounds", ENV_ROUNDS, _positive),
        ("budget_left", ENV_BUDGET_LEFT, _non_negative),
    ):
        text = os.environ.get(variable, "").strip()
        if getattr(args, attribute) is not None or not text:
            continue
        try:
            setattr(args, attribute, parse(text))
        except argparse.ArgumentTypeError as error:
            warnings.append(f"ignoring {variable}={text!r}: {error}")
    if args.campaign is None:
        args.campaign = os.environ.get(ENV_CAMPAIGN, "").strip() or None
    return warnings


def _write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (it holds the token)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _remove_url_file(path: Path, url: str) -> None:
    """Remove the URL file if it still holds this round's URL (never another oracle's)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text(encoding="utf-8").strip() == url:
            path.unlink()


def _url(host: str, port: int, token: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}/{token}/"
    if address.is_unspecified:  # listening everywhere: show the loopback address
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{port}/{token}/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Terminated(Exception):
    """SIGTERM arrived (the workflow step was stopped)."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while serving, so the round ends cleanly
    (server closed, URL file removed, nothing written). Only possible on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Marker by which the workflow's oracle runner finds (and kills) the oracle's processes
#: (``prefalign.io.oracle_command.ORACLE_MARKER_ENV``): a browser started by ``--open`` does not carry it,
#: so it outlives a round that ends normally.
_ORACLE_MARKER_ENV = "PREFALIGN_ORACLE_RUN"


def _open_in_browser(url: str) -> None:
    import webbrowser

    marker = os.environ.pop(_ORACLE_MARKER_ENV, None)
    try:
        opened = webbrowser.open(url, new=2)
    except webbrowser.Error:
        opened = False
    finally:
        if marker is not None:
            os.environ[_ORACLE_MARKER_ENV] = marker
    if not opened:
        print(f"{PROG}: could not open a web browser here; open the URL yourself", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the human oracle; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    low, high = args.scale
    if not 1 <= high - low <= MAX_SCALE_STEPS:
        parser.error(
            f"--scale MIN MAX needs MIN < MAX with at most {MAX_SCALE_STEPS + 1} values, "
            f"got {low} {high}"
        )
    for warning in _environment_defaults(args):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)

    def fail(message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_INPUT_ERROR

    # 1. Check everything that could fail before anyone starts rating.
    try:
        queries = load_queries(args.queries)
    except QueriesError as error:
        return fail(str(error))
    rewards_path: Path = args.rewards
    if not rewards_path.parent.is_dir():
        return fail(f"the folder of the rewards file {rewards_path} does not exist")
    if rewards_path.is_dir():
        return fail(f"the rewards file {rewards_path} is a folder")
    url_file: Path | None = args.url_file
    if url_file is not None:
        if url_file.is_dir():
            return fail(f"--url-file {url_file} is a folder")
        try:
            url_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return fail(f"cannot create the folder of --url-file {url_file}: {error}")

    # 2. Listen.
    session = RatingSession(queries.ids, (low, high), rewards_path)
    settings = PageSettings(
        title=args.title,
        round=args.round,
        budget_left=args.budget_left,
        campaign=args.campaign,
        rounds=args.rounds,
    )
    token = secrets.token_urlsafe(24)
    try:
        server = OracleServer(
            (args.host, args.port),
            session,
            QueryPictures(queries),
            settings,
            token,
            connection_timeout_s=args.connection_timeout_s or CONNECTION_TIMEOUT_S,
        )
    except OSError as error:
        return fail(f"cannot listen on {args.host}:{args.port}: {error}")
    if not _is_loopback(args.host):
        print(
            f"{PROG}: warning: listening on {args.host}, reachable from other machines; only the "
            "token in the URL protects the page",
            file=sys.stderr,
        )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()

    # 3. Tell the person where to go, then wait for the submission or the time-out.
    url = _url(args.host, server.server_address[1], token)
    what = f"round {args.round}" if args.round is not None else "this round"
    if args.campaign:
        what += f" of {args.campaign}"
    try:
        with _sigterm_raises():
            print(url, flush=True)
            if url_file is not None:
                try:
                    _write_text_atomically(url_file, url + "\n")
                except OSError as error:
                    return fail(f"cannot write --url-file {url_file}: {error}")
            print(
                f"{PROG}: {len(queries)} queries of {what} wait for a person; "
                f"open this page to rate the queries: {url}",
                file=sys.stderr,
                flush=True,
            )
            if url_file is not None:
                print(f"{PROG}: the URL is also in {url_file}", file=sys.stderr, flush=True)
            if args.open:
                _open_in_browser(url)
            finished = session.done.wait(args.timeout_s)
            if not finished and session.close_on_timeout():
                rated = len(session.snapshot())
                print(
                    f"{PROG}: error: timed out after {args.timeout_s:g} s waiting for ratings "
                    f"({rated} of {len(queries)} queries rated); nothing was written to "
                    f"{rewards_path}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
            # The rewards are in place (or a submission won the race against the time-out): give
            # the thank-you page a moment to go out, but never wait on a client that went away.
            session.done.wait(REPLY_GRACE_S)
            session.replied.wait(REPLY_GRACE_S)
    except (KeyboardInterrupt, _Terminated) as error:
        if session.close_on_timeout():
            how = "interrupted" if isinstance(error, KeyboardInterrupt) else "terminated"
            print(
                f"{PROG}: {how}; nothing was written to {rewards_path}; the ratings entered "
                "in this round are lost",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    finally:
        server.shutdown()
        server.server_close()
        if url_file is not None:
            _remove_url_file(url_file, url)
    print(f"{PROG}: wrote {len(queries)} ratings to {rewards_path}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
