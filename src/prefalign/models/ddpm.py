"""Small diffusers DDPMs: training with a cache, loading, and the noise-prediction-to-score map.

A DDPM here is a diffusers :class:`~diffusers.UNet2DModel` plus the config of its
:class:`~diffusers.DDPMScheduler` (or ``DDIMScheduler``), stored as a diffusers pipeline directory::

    model_dir/
        model_index.json            # so ``DDPMPipeline.from_pretrained(model_dir)`` works too
        unet/config.json, unet/diffusion_pytorch_model.safetensors
        scheduler/scheduler_config.json
        training.json               # how and where it was trained, and the content hash of
                                    # the files above (written by :func:`train_ddpm` only)

:func:`load_unet` and :func:`load_noise_schedule` also accept the flat layout (``config.json`` and
``scheduler_config.json`` side by side). A linear discrete schedule with ``T`` steps and betas
``beta_start .. beta_end`` discretises the VP SDE with ``b_min = T beta_start``,
``b_max = T beta_end`` (``shared/docs/fkc-math.md``); the UNet is called at the fractional timestep
``t (T - 1)``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from prefalign.io.json_text import parse_json
from prefalign.io.progress import tqdm
from prefalign.models.sde import VPSDE
from prefalign.provenance import content_hash, cpu_identity, git_commit, machine_record
from prefalign.settings import DDPMTraining

PredictionType = Literal["epsilon", "v_prediction", "sample"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction", "sample")
TRAINING_FILE = "training.json"
#: bump when the training code changes what a given DDPMSettings produces (invalidates caches)
TRAINER_VERSION = 2


class ModelLoadError(ValueError):
    """A model directory is missing, incomplete, corrupt or unsupported; the message names it."""


# ---------------------------------------------------------------------------------------------
# Noise schedule
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseSchedule:
    """The parts of a diffusers scheduler config that fix the forward process.

    Attributes:
        num_train_timesteps: number of discrete steps ``T`` the UNet was trained on.
        beta_start: first discrete beta.
        beta_end: last discrete beta.
        beta_schedule: diffusers name of the beta schedule; only ``linear`` maps to the VP SDE.
        prediction_type: what the UNet predicts (``epsilon``, ``v_prediction`` or ``sample``).
    """

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"

    def vpsde(self) -> VPSDE:
        """The continuous VP SDE this schedule discretises: ``b_min = T beta_start``,
        ``b_max = T beta_end``. Raises ``ValueError`` for a schedule that is not linear."""
        if self.beta_schedule != "linear":
            raise ValueError(
                f"beta_schedule {self.beta_schedule!r} is not supported: only 'linear' betas "
                "discretise the VP SDE with a linear b(t)"
            )
        return VPSDE(
            b_min=self.num_train_timesteps * self.beta_start,
            b_max=self.num_train_timesteps * self.beta_end,
        )


def _find_config(path: Path, subfolder: str, filename: str) -> Path:
    """``path/subfolder/filename`` (pipeline layout) or ``path/filename`` (flat layout)."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist or is not a directory")
    for candidate in (path / subfolder / filename, path / filename):
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"model directory {str(path)!r} has neither {subfolder}/{filename} nor {filename}"
    )


def load_noise_schedule(path: str | Path) -> NoiseSchedule:
    """Read the scheduler config of a model directory (``scheduler/scheduler_config.json`` or
    ``scheduler_config.json``) into a :class:`NoiseSchedule`.

    Raises:
        ModelLoadError: the file is missing, not JSON, or describes an unsupported schedule
            (not linear, explicit ``trained_betas``, unknown prediction type).
    """
    config_path = _find_config(Path(path), "scheduler", "scheduler_config.json")
    try:
        text = config_path.read_text()
    except OSError as err:
        raise ModelLoadError(
            f"scheduler config {str(config_path)!r} cannot be read: {err}"
        ) from err
    config = parse_json(text, ModelLoadError, f"scheduler config {str(config_path)!r}")
    if not isinstance(config, dict):
        raise ModelLoadError(f"scheduler config {str(config_path)!r} is not a JSON object")
    if config.get("trained_betas") is not None:
        raise ModelLoadError(
            f"scheduler config {str(config_path)!r} sets explicit trained_betas; only a 'linear' "
            "beta_schedule is supported"
        )
    schedule = NoiseSchedule(
        num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
        beta_start=float(config.get("beta_start", 1e-4)),
        beta_end=float(config.get("beta_end", 0.02)),
        beta_schedule=str(config.get("beta_schedule", "linear")),
        prediction_type=str(config.get("prediction_type", "epsilon")),
    )
    if schedule.beta_schedule != "linear":
        raise ModelLoadError(
            f"scheduler config {str(config_path)!r} has beta_schedule "
            f"{schedule.beta_schedule!r}; only 'linear' maps to the VP SDE"
        )
    if schedule.prediction_type not in PREDICTION_TYPES:
        raise ModelLoadError(
            f"scheduler config {str(config_path)!r} has prediction_type "
            f"{schedule.prediction_type!r}; must be one of {', '.join(PREDICTION_TYPES)}"
        )
    return schedule


# ---------------------------------------------------------------------------------------------
# UNet loading and the score
# ---------------------------------------------------------------------------------------------


def load_unet(path: str | Path, device: torch.device | str = "cpu") -> UNet2DModel:
    """Load a :class:`~diffusers.UNet2DModel` from ``path/unet`` or ``path`` (eval mode, frozen).

    Raises:
        ModelLoadError: the directory or its config is missing, or the weights cannot be read.
    """
    path = Path(path)
    config_path = _find_config(path, "unet", "config.json")
    try:
        unet = UNet2DModel.from_pretrained(config_path.parent, low_cpu_mem_usage=False)
    except Exception as err:  # diffusers raises OSError, ValueError, safetensors errors, ...
        raise ModelLoadError(
            f"cannot load a UNet2DModel from {str(config_path.parent)!r}: "
            f"{type(err).__name__}: {err}"
        ) from err
    unet.requires_grad_(False)
    return unet.eval().to(device)


class UNetScore:
    """Score ``grad log q_t(x)`` of a diffusers UNet trained on a linear discrete schedule.

    The UNet is called at the fractional timestep ``t (T - 1)`` (a float tensor: diffusers casts a
    Python number to ``long``), its output converted to a noise prediction ``eps_hat`` with the
    continuous ``a_t, s_t`` of the VP SDE, and ``score = -eps_hat / s_t``::

        epsilon:       eps_hat = out
        v_prediction:  eps_hat = a_t out + s_t x        (v = a_t eps - s_t x_0)
        sample:        eps_hat = (x - a_t out) / s_t

    Args:
        unet: the noise-prediction network (kept in eval mode). Gradients flow through it only
            when the caller enables them (the sampler's ``reward_at: xhat0`` differentiates
            the denoised estimate); the sampler calls it under ``torch.no_grad`` otherwise.
        schedule: its training schedule (must be linear).
    """

    def __init__(self, unet: UNet2DModel, schedule: NoiseSchedule) -> None:
        self.unet = unet.eval()
        self.schedule = schedule
        self.sde = schedule.vpsde()

    def timestep(self, t: float) -> float:
        """The (fractional) discrete timestep ``t (T - 1)`` for forward time ``t`` in [0, 1]."""
        return t * (self.schedule.num_train_timesteps - 1)

    def eps(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Noise prediction ``eps_hat(x, t)`` for a batch ``x`` of shape (N, C, H, W)."""
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"forward time t must lie in [0, 1], got {t}")
        timesteps = torch.full(
            (x.shape[0],), self.timestep(t), dtype=torch.float32, device=x.device
        )
        out = self.unet(x, timesteps).sample  # (N, C, H, W)
        kind = self.schedule.prediction_type
        if kind == "epsilon":
            return out
        a_t, s_t = self.sde.alpha(t), self.sde.sigma(t)
        if kind == "v_prediction":
            return a_t * out + s_t * x
        if kind == "sample":
            return (x - a_t * out) / s_t
        raise ValueError(
            f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {kind!r}"
        )

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``grad log q_t(x) = -eps_hat(x, t) / s_t`` (fkc-math.md)."""
        return self.sde.score_from_eps(self.eps(x, t), t)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DDPMSettings(DDPMTraining):
    """How a small DDPM is built and trained; saved to ``training.json`` beside the weights.

    The first fields (``steps``, ``batch_size``, ``lr``, ``seed``) and their defaults are those of
    :class:`prefalign.settings.DDPMTraining`, the settings the workflow's config may change.

    Attributes:
        warmup_steps: steps of linear learning-rate warm-up.
        ema_decay: largest decay of the exponential moving average of the weights that is
            saved (with warm-up, see ``_ema_decay``; 0 saves the raw weights).
        weight_decay: AdamW weight decay.
        block_out_channels: channels per UNet resolution level. The default (32, 64), 0.65 M
            parameters; (16, 32), 0.16 M, trains 2.2x and samples 3.1x faster on one CPU thread
            but its base digits are less valid at the campaigns' 50 steps (90.8 % against
            92.1 % of 2 x 512 samples; real held-out digits 93.3 %), and the default run's
            tilted samples 3-5 points less valid (measured side by side, 2026-12-02).
        layers_per_block: ResNet layers per UNet block.
        norm_num_groups: GroupNorm groups (must divide every entry of ``block_out_channels``).
        num_train_timesteps: discrete steps ``T`` of the schedule.
        beta_start: first discrete beta (``b_min = T beta_start``).
        beta_end: last discrete beta (``b_max = T beta_end``).
    """

    warmup_steps: int = 100
    ema_decay: float = 0.999
    weight_decay: float = 0.0
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                "DDPMSettings needs steps >= 1, batch_size >= 1 and lr > 0, got "
                f"steps={self.steps}, batch_size={self.batch_size}, lr={self.lr}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"norm_num_groups={self.norm_num_groups} must divide every block_out_channels "
                f"entry {self.block_out_channels}"
            )

    def to_json(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d


def build_unet(settings: DDPMSettings, sample_size: int, channels: int) -> UNet2DModel:
    """A small UNet (no attention: 8x8 images need none) with seeded initial weights."""
    n_levels = len(settings.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return UNet2DModel(
            sample_size=sample_size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=settings.block_out_channels,
            down_block_types=("DownBlock2D",) * n_levels,
            up_block_types=("UpBlock2D",) * n_levels,
            layers_per_block=settings.layers_per_block,
            norm_num_groups=settings.norm_num_groups,
        )


def build_scheduler(settings: DDPMSettings) -> DDPMScheduler:
    """The DDPM training scheduler: linear betas, epsilon prediction."""
    return DDPMScheduler(
        num_train_timesteps=settings.num_train_timesteps,
        beta_start=settings.beta_start,
        beta_end=settings.beta_end,
        beta_schedule="linear",
        prediction_type="epsilon",
    )


def _read_training_record(out_dir: Path) -> dict | None:
    try:
        record = json.loads((out_dir / TRAINING_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def is_trained(out_dir: str | Path, settings: DDPMSettings, data_fingerprint: str) -> bool:
    """Whether ``out_dir`` holds a loadable model trained by this trainer version with exactly
    these settings and data."""
    out_dir = Path(out_dir)
    record = _read_training_record(out_dir)
    if record is None:
        return False
    if (
        record.get("trainer_version") != TRAINER_VERSION
        or record.get("settings") != settings.to_json()
        or record.get("data") != data_fingerprint
    ):
        return False
    try:
        load_unet(out_dir)
        load_noise_schedule(out_dir)
    except ModelLoadError:
        return False
    return True


def _lr_factor(step: int, settings: DDPMSettings) -> float:
    """Linear warm-up to 1, then cosine decay to 0."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _ema_decay(step: int, settings: DDPMSettings) -> float:
    """EMA decay at ``step``: ``min(ema_decay, (1 + step) / (10 + step))``, the warm-up of
    diffusers' ``EMAModel``, so the random initial weights do not linger in the average."""
    return min(settings.ema_decay, (1.0 + step) / (10.0 + step))


def _batches(n: int, settings: DDPMSettings, generator: torch.Generator) -> Iterator[torch.Tensor]:
    for _ in range(settings.steps):
        yield torch.randint(n, (settings.batch_size,), generator=generator)


def train_ddpm(
    images: torch.Tensor,
    out_dir: str | Path,
    settings: DDPMSettings,
    *,
    data_fingerprint: str,
    progress: bool = True,
) -> Path:
    """Train a DDPM on ``images`` (N, C, H, W, values in [-1, 1]) and save it to ``out_dir``.

    Loss: ``|eps - eps_hat(sqrt(abar_i) x_0 + sqrt(1 - abar_i) eps, i)|^2`` with ``i`` uniform on
    ``0 .. T-1`` (Ho et al. 2020, Alg. 1). ``training.json`` is written last, so an interrupted run
    leaves no record and is retrained; if ``out_dir`` already holds a model trained with the same
    ``settings`` and ``data_fingerprint``, nothing is trained and ``out_dir`` is returned at once.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    out_dir = Path(out_dir)
    if is_trained(out_dir, settings, data_fingerprint):
        return out_dir
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must have shape (N, C, S, S), got {tuple(images.shape)}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # the weights' last digits depend on it
    try:
        return _train(images.to(torch.float32), out_dir, settings, data_fingerprint, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    images: torch.Tensor,
    out_dir: Path,
    settings: DDPMSettings,
    data_fingerprint: str,
    progress: bool,
) -> Path:
    """:func:`train_ddpm`'s training and saving, on ``settings.threads`` threads."""
    started = time.perf_counter()

    # 1. model, scheduler, optimiser, EMA copy (all seeded)
    unet = build_unet(settings, sample_size=images.shape[2], channels=images.shape[1]).train()
    scheduler = build_scheduler(settings)
    optimiser = torch.optim.AdamW(
        unet.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _lr_factor(s, settings))
    ema = [p.detach().clone() for p in unet.parameters()]
    generator = torch.Generator().manual_seed(settings.seed)

    # 2. epsilon-prediction regression on random timesteps
    losses: list[float] = []
    bar = tqdm(
        _batches(len(images), settings, generator),
        total=settings.steps,
        disable=not progress,
        desc="ddpm",
    )
    for index in bar:
        x0 = images[index]  # (B, C, S, S)
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(settings.num_train_timesteps, (len(x0),), generator=generator)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        loss = torch.nn.functional.mse_loss(unet(x_t, timesteps).sample, noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        lr_schedule.step()
        with torch.no_grad():
            decay = _ema_decay(len(losses), settings)
            for avg, p in zip(ema, unet.parameters(), strict=True):
                avg.lerp_(p.detach(), 1.0 - decay)
        losses.append(loss.item())
        if progress and len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.4f}", refresh=False)

    # 3. save the EMA weights as a diffusers pipeline, then the training record
    with torch.no_grad():
        for avg, p in zip(ema, unet.parameters(), strict=True):
            p.copy_(avg)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TRAINING_FILE).unlink(missing_ok=True)
    DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(out_dir)
    tail = losses[-min(100, len(losses)) :]
    record = {
        "trainer_version": TRAINER_VERSION,
        "settings": settings.to_json(),
        "data": data_fingerprint,
        "n_images": len(images),
        "final_loss": sum(tail) / len(tail),
        "seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # provenance: which model this is and where it was made (the weights' last digits
        # depend on the CPU's kernels, the versions and the threads)
        "content_sha256": content_hash(out_dir),
        "trained_at": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "commit": git_commit(Path(__file__).parent),
        "cpu": cpu_identity().summary(),
        "machine": machine_record(),
    }
    (out_dir / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out_dir


def training_record(model_dir: str | Path) -> dict:
    """The ``training.json`` of a model trained by :func:`train_ddpm`.

    Raises:
        ModelLoadError: the file is missing or not a JSON object.
    """
    record = _read_training_record(Path(model_dir))
    if record is None:
        raise ModelLoadError(
            f"{str(Path(model_dir) / TRAINING_FILE)!r} is missing or not valid JSON"
        )
    return record
