"""Any pretrained diffusers image DDPM in a local directory, with reward-model-free oracles.

The directory holds a :class:`~diffusers.UNet2DModel` and the config of its ``DDPMScheduler`` or
``DDIMScheduler``, either as a diffusers pipeline (``unet/`` + ``scheduler/`` subfolders, e.g. a
``DDPMPipeline.save_pretrained`` or a snapshot of ``google/ddpm-cifar10-32`` the user copied in) or
flat (``config.json``, ``diffusion_pytorch_model.safetensors`` and ``scheduler_config.json`` side by
side). Nothing is downloaded. The schedule must be linear: ``b_min = T beta_start``,
``b_max = T beta_end`` (``shared/docs/fkc-math.md``); epsilon, v and sample prediction are all
converted to a score.

Oracles need no download (images are seen as a person sees them: clipped to [-1, 1] and quantised
to 8 bits):

- ``brightness``: mean luma in [0, 1] (Rec. 601 weights for RGB, the grey value otherwise).
- ``colourfulness``: Hasler & Süsstrunk (2003) ``M = sigma_rgyb + 0.3 mu_rgyb`` on 0..255 RGB,
  ``rg = R - G``, ``yb = (R + G) / 2 - B`` (0 for grey images; about 109 is "extremely colourful").
- ``jpeg-compressibility``: minus the JPEG size in kB (Pillow, quality 95), as in DDPO
  (Black et al. 2024): higher is simpler.

Validity: every value finite and at least 99 % of them within [-1.5, 1.5]. Data lie in [-1, 1]; a
sampler's last steps leave small overshoots, but a sample whose values are mostly far outside has
left the data manifold (a diverged or reward-hacked sample). Nothing finer is possible without a
model of the data, which this domain deliberately does not assume.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from prefalign.domains import with_answer_noise
from prefalign.domains.base import OracleFn
from prefalign.models.ddpm import ModelLoadError, UNetScore, load_noise_schedule, load_unet
from prefalign.models.sde import VPSDE

MAX_ABS_VALUE = 1.5  # validity: values beyond this are outside the data range
MIN_IN_RANGE = 0.99  # validity: share of values that must lie within +-MAX_ABS_VALUE
JPEG_QUALITY = 95  # as in DDPO's jpeg_compressibility
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # Rec. 601


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), as displayed (clipped, NaN grey)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {x.shape}")
    x = np.clip((np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0) + 1.0) / 2.0, 0.0, 1.0)
    return np.round(np.moveaxis(x, 1, -1) * 255.0).astype(np.uint8)


def brightness(x: np.ndarray) -> np.ndarray:
    """Mean luma (N,) in [0, 1] of images (N, C, H, W)."""
    pixels = to_uint8(x).astype(np.float64) / 255.0  # (N, H, W, C)
    if pixels.shape[-1] == 3:
        pixels = pixels @ LUMA_WEIGHTS
    return pixels.mean(axis=tuple(range(1, pixels.ndim)))


def colourfulness(x: np.ndarray) -> np.ndarray:
    """Hasler–Süsstrunk colourfulness (N,) of images (N, C, H, W); 0 unless C == 3."""
    pixels = to_uint8(x).astype(np.float64)  # (N, H, W, C)
    if pixels.shape[-1] != 3:
        return np.zeros(len(pixels))
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rg = (r - g).reshape(len(pixels), -1)
    yb = (0.5 * (r + g) - b).reshape(len(pixels), -1)
    spread = np.sqrt(rg.std(axis=1) ** 2 + yb.std(axis=1) ** 2)
    offset = np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)
    return spread + 0.3 * offset


def jpeg_compressibility(x: np.ndarray) -> np.ndarray:
    """Minus the JPEG size in kB (N,) of images (N, C, H, W) at quality 95 (DDPO)."""
    images = to_uint8(x)  # (N, H, W, C)
    sizes = np.empty(len(images))
    for i, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        sizes[i] = buffer.tell() / 1000.0
    return -sizes


ORACLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "brightness": brightness,
    "colourfulness": colourfulness,
    "jpeg-compressibility": jpeg_compressibility,
}


def make_oracle(name: str, *, noise_std: float = 0.0, seed: int = 0) -> OracleFn:
    """The simulated user ``name`` (one of :data:`ORACLES`): np (N, C, H, W) -> rewards (N,).

    Args:
        name: ``brightness``, ``colourfulness`` or ``jpeg-compressibility``.
        noise_std: standard deviation of Gaussian noise added to each answer (0: exact).
        seed: seeds the answer noise, per query (see :func:`prefalign.domains.answer_noise`).
    """
    if name not in ORACLES:
        raise ValueError(f"unknown pretrained oracle {name!r}; must be one of {', '.join(ORACLES)}")
    return with_answer_noise(ORACLES[name], noise_std, seed, f"pretrained_{name.replace('-', '_')}")


def is_valid(x: np.ndarray) -> np.ndarray:
    """Boolean (N,): all values finite and >= 99 % of them within [-1.5, 1.5]."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    finite = np.isfinite(flat).all(axis=1)
    in_range = (np.abs(np.nan_to_num(flat, nan=np.inf)) <= MAX_ABS_VALUE).mean(axis=1)
    return finite & (in_range >= MIN_IN_RANGE)


def diversity(x: np.ndarray, max_pairs_samples: int = 512) -> dict[str, float]:
    """``mean_pairwise_l2`` (clipped values, first ``max_pairs_samples`` samples) and
    ``mean_pixel_std`` (per-value standard deviation across the batch, averaged)."""
    x = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64)), -1.0, 1.0)
    flat = x.reshape(len(x), -1)
    if len(flat) < 2:
        return {"mean_pairwise_l2": 0.0, "mean_pixel_std": 0.0}
    sub = flat[:max_pairs_samples]
    sq = (sub**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * sub @ sub.T, 0.0))
    n = len(sub)
    return {
        "mean_pairwise_l2": float(dist.sum() / (n * (n - 1))),
        "mean_pixel_std": float(flat.std(axis=0).mean()),
    }


class PretrainedDomain:
    """A local diffusers image DDPM as a domain (implements ``Domain``).

    Args:
        model_dir: pipeline directory (``unet/`` + ``scheduler/``) or flat model directory.
        device: torch device of the UNet; ``score`` expects ``x`` on it.

    Raises:
        ModelLoadError: the directory is missing or corrupt, or its schedule is not linear
            (the message names the path and the schedule).
    """

    name = "pretrained"

    def __init__(self, model_dir: str | Path, device: torch.device | str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        unet = load_unet(self.model_dir, device=device)
        config = unet.config
        size = config.sample_size
        if size is None or config.in_channels != config.out_channels:
            raise ModelLoadError(
                f"UNet in {str(self.model_dir)!r} must have a sample_size and as many output as "
                f"input channels; got sample_size={size}, in_channels={config.in_channels}, "
                f"out_channels={config.out_channels}"
            )
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        self.event_shape: tuple[int, ...] = (int(config.in_channels), int(height), int(width))
        self._score = UNetScore(unet, load_noise_schedule(self.model_dir))
        self.sde: VPSDE = self._score.sde

    @property
    def noise_model(self) -> UNetScore:
        """The base UNet with its schedule (what :mod:`prefalign.finetune` fine-tunes)."""
        return self._score

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``grad log q_t(x)`` from the UNet at timestep ``t (T - 1)``; x is (N, C, H, W)."""
        return self._score(x, t)

    def oracle_names(self) -> list[str]:
        """``brightness``, ``colourfulness``, ``jpeg-compressibility``."""
        return list(ORACLES)

    # the users, the validity check and the diversity are this module's functions
    oracle = staticmethod(make_oracle)
    is_valid = staticmethod(is_valid)
    diversity = staticmethod(diversity)


#: This module's domain (:mod:`prefalign.domains`).
DOMAIN = PretrainedDomain
