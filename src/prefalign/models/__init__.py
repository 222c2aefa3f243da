"""Base diffusion models: small diffusers DDPMs (training, loading, score)."""

from prefalign.models.ddpm import (
    DDPMSettings,
    ModelLoadError,
    NoiseSchedule,
    UNetScore,
    load_noise_schedule,
    load_unet,
    train_ddpm,
)

__all__ = [
    "DDPMSettings",
    "ModelLoadError",
    "NoiseSchedule",
    "UNetScore",
    "load_noise_schedule",
    "load_unet",
    "train_ddpm",
]
