"""A fine-tuned model on disk, and its score for the sampler.

Layout (a diffusers pipeline directory, so ``DDPMPipeline.from_pretrained(path)`` samples a
fine-tuned ``UNet2DModel`` with diffusers alone)::

    path/
        model_index.json            # UNet2DModel models only (DDPMPipeline)
        unet/                       # the fine-tuned network (LoRA adapters merged in)
        scheduler/scheduler_config.json
        base_unet/                  # split mode: the base network, used below t_split
        lora/                       # lora mode: the adapters alone (peft, adapter_config.json)
        finetune.json               # mode, t_split, settings, cost, what it was trained on

``finetune.json`` is written last, into a temporary sibling that replaces ``path`` whole, so an
interrupted save leaves the previous model (or none), never half of one. A ``split`` model
samples plain ancestral steps with the fine-tuned network at ``t >= t_split`` and the base
network below; :func:`load_finetuned` returns that switch as one score function.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from torch import nn

from prefalign.finetune.denoiser import MLPDenoiser
from prefalign.io.json_text import parse_json
from prefalign.models.ddpm import ModelLoadError, NoiseSchedule, UNetScore, load_noise_schedule
from prefalign.models.sde import VPSDE
from prefalign.settings import MODES

FINETUNE_FILE = "finetune.json"
FORMAT = "prefalign-finetuned/1"
NETWORKS: dict[str, type] = {"UNet2DModel": UNet2DModel, "MLPDenoiser": MLPDenoiser}


def _scheduler(schedule: NoiseSchedule) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        beta_schedule=schedule.beta_schedule,
        prediction_type=schedule.prediction_type,
    )


def save_finetuned(
    path: str | os.PathLike[str],
    tuned: nn.Module,
    base: nn.Module,
    schedule: NoiseSchedule,
    record: dict[str, Any],
) -> Path:
    """Save a fine-tuned network (a peft model for ``lora``: its adapters are saved, then merged)
    as ``path``, replacing what was there. ``record`` must hold ``mode`` (and ``t_split`` for
    ``split``); it is written as ``finetune.json`` with the format tag."""
    path = Path(path)
    mode = record.get("mode")
    if mode not in MODES:
        raise ValueError(f"record's mode must be one of {', '.join(MODES)}; got {mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if hasattr(tuned, "merge_and_unload"):  # a peft model: the adapters, then merged
            tuned.save_pretrained(tmp / "lora")
            tuned = tuned.merge_and_unload()
        tuned = tuned.eval()
        scheduler = _scheduler(schedule)
        if isinstance(tuned, UNet2DModel):
            DDPMPipeline(unet=tuned, scheduler=scheduler).save_pretrained(tmp)
        else:
            tuned.save_pretrained(tmp / "unet")
            scheduler.save_pretrained(tmp / "scheduler")
        if mode == "split":
            base.save_pretrained(tmp / "base_unet")
        (tmp / FINETUNE_FILE).write_text(json.dumps({"format": FORMAT, **record}, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_network(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """A noise-prediction network saved with ``save_pretrained`` (its ``config.json`` names the
    class: ``UNet2DModel`` or ``MLPDenoiser``), frozen in eval mode.

    Raises:
        ModelLoadError: the folder, its config or its weights are missing or unreadable.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"network folder {str(path)!r} has no config.json")
    config = parse_json(config_file.read_text(), ModelLoadError, f"{str(config_file)!r}")
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name not in NETWORKS:
        raise ModelLoadError(
            f"{str(config_file)!r} names class {name!r}; must be one of {', '.join(NETWORKS)}"
        )
    try:
        net = NETWORKS[name].from_pretrained(path, low_cpu_mem_usage=False)
    except Exception as err:  # diffusers raises OSError, ValueError, safetensors errors, ...
        raise ModelLoadError(
            f"cannot load a {name} from {str(path)!r}: {type(err).__name__}: {err}"
        ) from err
    return net.requires_grad_(False).eval().to(device)


class FinetunedModel:
    """A fine-tuned model loaded from disk: its ``score(x, t)`` (the switch to the base network
    below ``t_split`` in ``split`` mode), ``sde``, ``record`` and the network(s).

    Raises:
        ModelLoadError: ``path`` is missing, or its ``finetune.json``, network or scheduler is
            missing or corrupt (the message names the file).
    """

    def __init__(self, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ModelLoadError(
                f"fine-tuned model {str(self.path)!r} does not exist or is not a directory"
            )
        record_file = self.path / FINETUNE_FILE
        if not record_file.is_file():
            raise ModelLoadError(
                f"fine-tuned model {str(self.path)!r} has no {FINETUNE_FILE} (an interrupted or "
                "foreign directory)"
            )
        record = parse_json(record_file.read_text(), ModelLoadError, f"{str(record_file)!r}")
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ModelLoadError(f"{str(record_file)!r} is not a {FORMAT} record")
        if record.get("mode") not in MODES:
            raise ModelLoadError(
                f"{str(record_file)!r}: mode {record.get('mode')!r} is not one of {', '.join(MODES)}"
            )
        self.record: dict[str, Any] = record
        self.mode: str = record["mode"]
        self.t_split = float(record.get("t_split", 0.0)) if self.mode == "split" else 0.0
        schedule = load_noise_schedule(self.path)
        self.network = load_network(self.path / "unet", device)
        self._tuned = UNetScore(self.network, schedule)
        self._base = None
        if self.mode == "split":
            self._base = UNetScore(load_network(self.path / "base_unet", device), schedule)
        self.sde: VPSDE = self._tuned.sde

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``grad log p_t(x)`` of the fine-tuned model (the base network below ``t_split``)."""
        if self._base is not None and t < self.t_split:
            return self._base(x, t)
        return self._tuned(x, t)


def load_finetuned(path: str | os.PathLike[str], device: torch.device | str = "cpu"):
    """:class:`FinetunedModel` of ``path`` (see there for the errors)."""
    return FinetunedModel(path, device)
