"""Parsing JSON that a person or another program wrote, with an error that names it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def parse_json(text: str | bytes, error: type[Exception], what: str) -> Any:
    """``json.loads(text)``; text that is not UTF-8 or not JSON raises ``error`` saying
    ``"<what> is not valid JSON: <why>"``."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc


def read_json_object(path: str | os.PathLike[str], error: type[Exception], what: str) -> dict:
    """The JSON object in the file ``path``; a file that cannot be read, is not JSON or holds
    anything but an object raises ``error`` naming ``"<what> <path>"``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} cannot be read: {exc}") from exc
    record = parse_json(text, error, f"{what} {path}")
    if not isinstance(record, dict):
        raise error(f"{what} {path} must hold a JSON object, got {record!r}")
    return record
