"""The base models a run sampled from, for the results page: each one's content hash and where
it came from — the model shipped with the project (``models/shipped.json``), a model the
workflow's ``train_digits`` rule regenerated, or one the user supplied (a ``model_dir``).

``models/shipped.json`` maps a name to the record of a shipped model directory::

    {"digits": {"path": "models/digits", "content_sha256": "...", "trained_on": "...",
                "trained_at": "...", "base_validity": 0.93, ...}}

written by ``prefalign model-hash DIR --ship models/shipped.json --name NAME`` from the
directory's own ``training.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from prefalign.io.atomic import write_text
from prefalign.provenance import content_hash

StrPath = str | os.PathLike[str]

#: Where the project records the base models it ships (relative to the repository root).
SHIPPED_FILE = Path("models/shipped.json")
#: The training record written beside a model by :func:`prefalign.models.ddpm.train_ddpm`.
TRAINING_FILE = "training.json"


def read_shipped(path: StrPath = SHIPPED_FILE) -> dict[str, dict]:
    """The shipped models' records (name -> record); an empty dict when the file is absent.

    Raises:
        ValueError: the file is not a JSON object of objects each with a ``content_sha256``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not all(
        isinstance(r, dict) and isinstance(r.get("content_sha256"), str) for r in data.values()
    ):
        raise ValueError(
            f"{str(path)!r} must map each model's name to an object with a content_sha256"
        )
    return data


def _training_record(model_dir: Path) -> dict:
    try:
        record = json.loads((model_dir / TRAINING_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


@dataclass(frozen=True)
class BaseModel:
    """One base model of a run.

    Attributes:
        path: its directory, as the config names it.
        sha256: :func:`prefalign.provenance.content_hash` of the directory.
        origin: ``shipped``, ``regenerated`` (by ``train_digits``, with or without the shipped
            bytes) or ``supplied`` (no training record of this model: the user's own).
        description: one sentence for the page (when and on which CPU it was trained).
    """

    path: str
    sha256: str
    origin: str
    description: str


def describe_base_model(model_dir: StrPath, shipped: dict[str, dict]) -> BaseModel:
    """Where the model in ``model_dir`` came from, judged by its content hash against the
    ``shipped`` records and its own training record."""
    model_dir = Path(model_dir)
    sha = content_hash(model_dir)
    record = _training_record(model_dir)
    same_hash = [r for r in shipped.values() if r["content_sha256"] == sha]
    trained = record.get("content_sha256") == sha  # the record describes these very bytes
    where = f"trained {record.get('trained_at', '?')} on {record.get('cpu', 'an unrecorded CPU')}"
    if same_hash:
        ship = same_hash[0]
        if trained and record.get("trained_at") != ship.get("trained_at"):
            return BaseModel(
                str(model_dir), sha, "regenerated",
                f"**regenerated** by `train_digits` ({where}): byte-identical to the model "
                f"shipped with the project ({ship.get('trained_on', '?')}, "
                f"{ship.get('trained_at', '?')})",
            )  # fmt: skip
        return BaseModel(
            str(model_dir), sha, "shipped",
            f"shipped with the project (`{SHIPPED_FILE}`; trained {ship.get('trained_at', '?')} "
            f"on {ship.get('trained_on', '?')})",
        )  # fmt: skip
    if trained:
        others = ", ".join(f"`{r['content_sha256'][:12]}…`" for r in shipped.values())
        return BaseModel(
            str(model_dir), sha, "regenerated",
            f"**regenerated** by `train_digits` ({where}): **not** the shipped model"
            + (f" (shipped: {others})" if others else "")
            + "; every number that samples it differs from the committed results",
        )  # fmt: skip
    return BaseModel(
        str(model_dir), sha, "supplied",
        "supplied by the configuration (no training record of these bytes): not the shipped "
        "model",
    )  # fmt: skip


def base_models_table(
    model_dirs: dict[str, list[str]], shipped_file: StrPath = SHIPPED_FILE
) -> list[str]:
    """Markdown lines of the page's base-model table: one row per model directory (with the
    domains that sample it), its content hash and its origin. Empty when there is none."""
    if not model_dirs:
        return []
    shipped = read_shipped(shipped_file)
    lines = [
        "| base model | domains | content sha256 | origin |",
        "|---|---|---|---|",
    ]
    for path, domains in model_dirs.items():
        model = describe_base_model(path, shipped)
        lines.append(
            f"| `{model.path}` | {', '.join(domains)} | `{model.sha256}` | {model.description} |"
        )
    return lines


def ship_model(model_dir: StrPath, name: str, shipped_file: StrPath, **extra: object) -> dict:
    """Record ``model_dir`` as the shipped model ``name`` in ``shipped_file`` (created or
    updated atomically) from its training record; ``extra`` adds fields (e.g. the validity of
    its base samples). Returns the record written.

    Raises:
        ValueError: the directory has no training record of these bytes (its
            ``content_sha256`` differs from the files'): ship only what ``train_digits`` made.
    """
    model_dir = Path(model_dir)
    sha = content_hash(model_dir)
    record = _training_record(model_dir)
    if record.get("content_sha256") != sha:
        raise ValueError(
            f"{str(model_dir / TRAINING_FILE)!r} does not record these files (content sha256 "
            f"{sha}): only a model that train_digits wrote, unchanged, can be shipped"
        )
    entry = {
        "path": model_dir.as_posix(),
        "content_sha256": sha,
        "trained_at": record.get("trained_at"),
        "trained_on": record.get("cpu"),
        "torch_cpu_capability": record.get("machine", {}).get("torch CPU capability"),
        "torch": record.get("torch"),
        "torch_threads": record.get("torch_threads"),
        "commit": record.get("commit"),
        "settings": record.get("settings"),
        **extra,
    }
    shipped = read_shipped(shipped_file)
    shipped[name] = entry
    write_text(Path(shipped_file), json.dumps(shipped, indent=2) + "\n")
    return entry
