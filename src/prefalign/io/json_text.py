"""Parsing JSON that a person or another program wrote, with an error that names it."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes, error: type[Exception], what: str) -> Any:
    """``json.loads(text)``; text that is not UTF-8 or not JSON raises ``error`` saying
    ``"<what> is not valid JSON: <why>"``."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc
