"""Surrogate checkpoints: ``model.safetensors`` + ``meta.json`` in one directory.

:func:`save_surrogate` writes both atomically (a temporary directory, then a rename);
:func:`load_surrogate` reads them back without ever unpickling and checks every field of the
meta against the weights and the limits below, so a corrupt or foreign checkpoint fails with a
:class:`SurrogateCheckpointError` naming the path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from prefalign.io.listing import show
from prefalign.learning.ensemble import (
    ACTIVATION,
    BATCH_SIZE,
    NOISE_T_MAX,
    WEIGHT_DECAY,
    FitReport,
    Surrogate,
    normalisation_shape,
)
from prefalign.settings import SurrogateConfig

if TYPE_CHECKING:
    from prefalign.learning.population import PopulationGP

#: Version of the checkpoint layout written by :func:`save_surrogate` (2: the ``head`` of
#: answers in another question form than ``rate``; version 1 is a ``rate`` surrogate).
FORMAT_VERSION = 2
FORMAT_NAME = "prefalign-surrogate"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
#: Largest ``meta.json`` read (normalisation statistics of a 3x64x64 MLP input are ~0.5 MB).
MAX_META_BYTES = 16 << 20
#: Largest ``model.safetensors`` read.
MAX_WEIGHTS_BYTES = 1 << 30
#: Largest architecture values a checkpoint's ``meta.json`` may ask for (a surrogate is small;
#: these bound what is built before the weights are compared with it).
META_LIMITS = {"hidden": 1 << 14, "layers": 64, "ensemble": 64}
#: Largest number of values in one input (``event_shape``).
MAX_EVENT_SIZE = 1 << 22
#: Settings of :class:`SurrogateConfig` that are constants now, and the values they have: the
#: ``config`` of a checkpoint written before records them, and loads when it holds these values.
REMOVED_SETTINGS: dict[str, Any] = {
    "weight_decay": WEIGHT_DECAY,
    "batch_size": BATCH_SIZE,
    "noise_t_max": NOISE_T_MAX,
    "activation": ACTIVATION,
}


class SurrogateCheckpointError(ValueError):
    """A surrogate checkpoint directory is missing, corrupt or inconsistent."""


def save_surrogate(
    surrogate: Surrogate,
    directory: str | os.PathLike[str],
    *,
    config: SurrogateConfig,
    report: FitReport,
    training_set_hash: str,
) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/meta.json`` atomically.

    Both files are written into a temporary sibling directory that then replaces ``directory``.
    An existing ``directory`` is replaced only if it holds nothing but a previous checkpoint.
    ``config`` must be the config the surrogate was built with (it is recorded in the metadata).

    Returns:
        The checkpoint directory.
    """
    if config != surrogate.config:
        raise ValueError(
            f"config does not match the surrogate's own config: {config} vs {surrogate.config}"
        )
    # copies: a GP's model keeps views of its training data (safetensors refuses shared memory)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in surrogate.state_dict().items()}
    if config.arch == "gp":
        normalisation = {"per_feature": surrogate.x_mean.dim() > 0, **surrogate.extra_meta()}
        head = {"kind": surrogate.head}
    else:
        normalisation = {
            "x_mean": surrogate.x_mean.tolist(),
            "x_std": surrogate.x_std.tolist(),
            "y_mean": float(surrogate.y_mean),
            "y_std": float(surrogate.y_std),
        }
        head = {
            "kind": surrogate.head,
            "anchor": surrogate.anchor.tolist(),
            "span": surrogate.span.tolist(),
        }
    meta = {
        "config": config.to_dict(),
        "event_shape": list(surrogate.event_shape),
        "normalisation": normalisation,
        "head": head,
        "training_set_hash": training_set_hash,
        "fit": report.to_dict(),
    }
    return write_checkpoint(directory, tensors, meta)


def write_checkpoint(
    directory: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write ``tensors`` as ``directory/model.safetensors`` and ``meta`` (with the format, its
    version and the weights' sha256 added) as ``directory/meta.json``, atomically: both go to a
    temporary sibling directory that then replaces ``directory``, which is replaced only if it
    holds nothing but a previous checkpoint."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"{directory} exists and is not a directory")
        ours = (WEIGHTS_FILE, META_FILE)
        extra = sorted(p.name for p in directory.iterdir() if p.name not in ours)
        if extra:
            raise FileExistsError(
                f"refusing to overwrite {directory}: it holds files other than a checkpoint {extra}"
            )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        weights = tmp / WEIGHTS_FILE
        safetensors.torch.save_file(tensors, weights, metadata={"format": FORMAT_NAME})
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            **meta,
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "ckpt")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_surrogate(directory: str | os.PathLike[str]) -> Surrogate:
    """Load a checkpoint written by :func:`save_surrogate` (never unpickles).

    Raises:
        SurrogateCheckpointError: naming the path, if the directory or a file is missing, corrupt,
            truncated, or inconsistent with the metadata.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SurrogateCheckpointError(f"surrogate checkpoint directory {directory} does not exist")
    meta = read_surrogate_meta(directory)
    meta_path = directory / META_FILE

    # 1. read the metadata's architecture, within limits; nothing is built yet
    try:
        config = SurrogateConfig.from_dict(_without_removed_settings(meta["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise SurrogateCheckpointError(
            f"{meta_path} is not a valid surrogate metadata file: {err}"
        ) from err
    if POPULATION_KEY in meta:
        return _load_population(directory, meta)
    if config.arch == "gp":
        return _load_gp(directory, meta, config)
    try:
        for key, limit in META_LIMITS.items():
            if getattr(config, key) > limit:
                raise ValueError(f"config.{key} = {getattr(config, key)} exceeds the limit {limit}")
        event_shape = tuple(int(s) for s in meta["event_shape"])
        if not event_shape or min(event_shape) < 1 or math.prod(event_shape) > MAX_EVENT_SIZE:
            raise ValueError(
                f"event_shape {event_shape} must be positive sizes, at most {MAX_EVENT_SIZE} values"
            )
        norm = meta["normalisation"]
        stat_shape = normalisation_shape(config.arch, event_shape)
        x_mean = torch.tensor(np.asarray(norm["x_mean"], dtype=np.float32), device="cpu")
        x_std = torch.tensor(np.asarray(norm["x_std"], dtype=np.float32), device="cpu")
        if tuple(x_mean.shape) != stat_shape or tuple(x_std.shape) != stat_shape:
            raise ValueError(
                f"normalisation shapes {tuple(x_mean.shape)}/{tuple(x_std.shape)} "
                f"do not match {stat_shape}"
            )
        y_mean, y_std = float(norm["y_mean"]), float(norm["y_std"])
        if not all(
            math.isfinite(v) for v in (y_mean, y_std, x_mean.sum().item(), x_std.sum().item())
        ):
            raise ValueError("normalisation statistics are not finite")
        head_meta = meta.get("head", {"kind": "rate"})
        head = str(head_meta["kind"])
        anchor, span = (
            torch.tensor(
                np.asarray(head_meta.get(key, [default] * config.ensemble), np.float32),
                device="cpu",
            )
            for key, default in (("anchor", 0.0), ("span", 1.0))
        )
        # the module the metadata describes, on the meta device: shapes only, no memory
        with torch.device("meta"):
            probe = Surrogate(
                config, event_shape, x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std,
                head=head, anchor=anchor, span=span,
            )  # fmt: skip
        expected = {name: (tuple(t.shape), t.dtype) for name, t in probe.state_dict().items()}
        del probe
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as err:
        raise SurrogateCheckpointError(
            f"{meta_path} is not a valid surrogate metadata file: {err}"
        ) from err

    # 2. read the weights and check them against the metadata before anything is allocated
    weights_path, tensors, sha256 = _read_weights(directory)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise SurrogateCheckpointError(
            f"{weights_path} does not match {META_FILE}: missing tensors [{show(missing)}], "
            f"unexpected tensors [{show(unexpected)}]"
        )
    for name, (ref_shape, ref_dtype) in expected.items():
        got = tensors[name]
        if tuple(got.shape) != ref_shape or got.dtype != ref_dtype:
            raise SurrogateCheckpointError(
                f"{weights_path}: tensor {name!r} is {got.dtype} {tuple(got.shape)}, "
                f"but {META_FILE} implies {ref_dtype} {ref_shape}"
            )
    _check_sha256(meta, sha256, weights_path, meta_path)
    # 3. the metadata and the weights agree: build the module (its size is the file's)
    surrogate = Surrogate(
        config, event_shape, x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std,
        head=head, anchor=anchor, span=span,
    )  # fmt: skip
    surrogate.load_state_dict(tensors, strict=True)
    surrogate.eval()
    return surrogate


def _without_removed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``config`` without the settings that are constants now
    (:data:`REMOVED_SETTINGS`); one of them at another value than the constant's is refused,
    by name: the weights were trained otherwise than this prefalign would."""
    kept = dict(config)
    for key, value in REMOVED_SETTINGS.items():
        if key not in kept:
            continue
        recorded = kept.pop(key)
        if type(recorded) is bool or recorded != value:
            raise ValueError(
                f"config.{key} = {recorded!r}: {key} is no longer a setting, and this prefalign "
                f"trains surrogates with {key} = {value!r} only"
            )
    return kept


def _read_weights(directory: Path) -> tuple[Path, dict[str, torch.Tensor], str]:
    """The checkpoint's tensors (never unpickled), within the size limit, and their file's
    sha256."""
    weights_path = directory / WEIGHTS_FILE
    try:
        with open(weights_path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_WEIGHTS_BYTES:
                raise SurrogateCheckpointError(
                    f"surrogate weights {weights_path} are {size} bytes, over the limit of "
                    f"{MAX_WEIGHTS_BYTES}"
                )
            data = fh.read(MAX_WEIGHTS_BYTES + 1)
    except OSError as err:
        raise SurrogateCheckpointError(
            f"cannot read surrogate weights {weights_path}: {err}"
        ) from err
    try:
        tensors = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError, OSError) as err:
        raise SurrogateCheckpointError(
            f"{weights_path} is not a valid safetensors file (corrupt or truncated): {err}"
        ) from err
    return weights_path, tensors, hashlib.sha256(data).hexdigest()


def _check_sha256(meta: dict[str, Any], sha256: str, weights_path: Path, meta_path: Path) -> None:
    recorded = meta.get("weights_sha256")
    if recorded is not None and recorded != sha256:
        raise SurrogateCheckpointError(
            f"{weights_path} does not match the sha256 recorded in {meta_path} "
            "(corrupt or replaced)"
        )


def _checked_weights(directory: Path, meta: dict[str, Any]) -> tuple[Path, dict[str, torch.Tensor]]:
    """The checkpoint's weights file and tensors, checked against the sha256 its meta records."""
    weights_path, tensors, sha256 = _read_weights(directory)
    _check_sha256(meta, sha256, weights_path, directory / META_FILE)
    return weights_path, tensors


def _particle_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    """The meta's ``event_shape``; ValueError unless positive sizes within the limit."""
    event_shape = tuple(int(s) for s in meta["event_shape"])
    if not event_shape or min(event_shape) < 1 or math.prod(event_shape) > MAX_EVENT_SIZE:
        raise ValueError(f"event_shape {event_shape} is not a valid particle shape")
    return event_shape


def _load_gp(directory: Path, meta: dict[str, Any], config: SurrogateConfig):
    """A GP surrogate's checkpoint: its training data, normalisation and hyperparameters are
    the tensors; the model is rebuilt on the data and its fitted state loaded (strictly)."""
    from prefalign.learning.gp import GPSurrogate, NetworkEmbedding

    weights_path, tensors = _checked_weights(directory, meta)
    try:
        event_shape = _particle_shape(meta)
        head = str(meta["head"]["kind"])
        needed = ("x_mean", "x_std", "train_x", "train_y", "anchor", "span")
        missing = [name for name in needed if name not in tensors]
        if missing:
            raise ValueError(f"missing tensors [{show(missing)}]")
        embedding = None
        if any(name.startswith("embedding.") for name in tensors):
            embedding = NetworkEmbedding(config, event_shape)
        surrogate = GPSurrogate(
            config,
            event_shape,
            embedding=embedding,
            head=head,
            x_mean=tensors["x_mean"],
            x_std=tensors["x_std"],
            projection=tensors.get("projection"),
            train_x=tensors["train_x"],
            train_y=tensors["train_y"],
            anchor=float(tensors["anchor"]),
            span=float(tensors["span"]),
        )
        surrogate.load_state_dict(tensors, strict=True)
        surrogate.predictive()  # the posterior's closed form, computed once on load
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        raise SurrogateCheckpointError(
            f"{weights_path} and {META_FILE} are not a valid GP surrogate: {err}"
        ) from err
    surrogate.eval()
    return surrogate


#: The ``meta.json`` record that marks a population GP's checkpoint.
POPULATION_KEY = "population"
#: A population GP's tensors (:class:`prefalign.learning.population.PopulationGP`).
POPULATION_TENSORS = (
    "basis_x",
    "basis_weight",
    "basis_inverse_length",
    "basis_offset",
    "hyper",
    "obs_x",
    "obs_y",
)


def save_population(
    model: PopulationGP,
    directory: str | os.PathLike[str],
    *,
    report: dict[str, Any],
    users: Sequence[str] = (),
) -> Path:
    """Write a population GP (:mod:`prefalign.learning.population`: the prior, or the prior
    conditioned on a user's answers) as a surrogate checkpoint, atomically; ``report``: the
    fit's record, ``users``: the training users' datasets."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "config": model.config.to_dict(),
        "event_shape": list(model.event_shape),
        "head": {"kind": "rate"},
        "fit": report,
        POPULATION_KEY: {
            "n_users": model.n_users,
            "n_observations": len(model.obs_y),
            "hyper": model.hyper_parameters(),
            "users": list(users),
        },
    }
    return write_checkpoint(directory, tensors, meta)


def _load_population(directory: Path, meta: dict[str, Any]):
    """A population GP's checkpoint (:func:`save_population`)."""
    from prefalign.learning.population import PopulationGP

    weights_path, tensors = _checked_weights(directory, meta)
    try:
        event_shape = _particle_shape(meta)
        missing = [name for name in POPULATION_TENSORS if name not in tensors]
        extra = sorted(set(tensors) - set(POPULATION_TENSORS))
        if missing or extra:
            raise ValueError(f"missing tensors [{show(missing)}], unexpected [{show(extra)}]")
        return PopulationGP(event_shape, **{n: tensors[n] for n in POPULATION_TENSORS}).eval()
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        raise SurrogateCheckpointError(
            f"{weights_path} and {META_FILE} are not a valid population GP: {err}"
        ) from err


def read_surrogate_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and sanity-check ``directory/meta.json`` (format name and version)."""
    meta_path = Path(directory) / META_FILE
    try:
        with open(meta_path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(MAX_META_BYTES + 1)
        if max(size, len(data)) > MAX_META_BYTES:
            raise SurrogateCheckpointError(
                f"{meta_path} is {max(size, len(data))} bytes, over the limit of {MAX_META_BYTES}"
            )
        meta = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise SurrogateCheckpointError(f"surrogate metadata {meta_path} is missing") from None
    except RecursionError:
        raise SurrogateCheckpointError(f"{meta_path} is nested too deeply to be metadata") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SurrogateCheckpointError(f"{meta_path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise SurrogateCheckpointError(
            f"{meta_path} is not a surrogate checkpoint (expected format {FORMAT_NAME!r})"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise SurrogateCheckpointError(
            f"{meta_path} has format_version {version!r}; this prefalign reads 1..{FORMAT_VERSION}"
        )
    return meta
