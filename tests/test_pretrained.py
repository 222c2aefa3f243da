"""The pretrained domain: any local diffusers UNet2DModel + DDPM/DDIM scheduler config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from prefalign.domains import get_domain
from prefalign.domains.base import Domain
from prefalign.domains.pretrained import (
    PretrainedDomain,
    brightness,
    colourfulness,
    diversity,
    is_valid,
    jpeg_compressibility,
)
from prefalign.models.ddpm import ModelLoadError
from prefalign.models.sde import VPSDE


def tiny_unet(channels: int = 3, size: int = 8) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """diffusers pipeline layout: unet/ + scheduler/ + model_index.json."""
    path = tmp_path_factory.mktemp("pretrained") / "pipeline"
    DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flat layout, one channel, a DDIM scheduler with another linear schedule."""
    path = tmp_path_factory.mktemp("pretrained") / "flat"
    tiny_unet(channels=1).save_pretrained(path)
    DDIMScheduler(num_train_timesteps=500, beta_start=2e-4, beta_end=0.04).save_pretrained(path)
    return path


def test_loads_pipeline_layout(pipeline_dir: Path) -> None:
    domain = PretrainedDomain(pipeline_dir)
    assert isinstance(domain, Domain)
    assert domain.name == "pretrained" and domain.event_shape == (3, 8, 8)
    assert domain.sde == VPSDE(0.1, 20.0)
    assert isinstance(get_domain("pretrained", {"model_dir": str(pipeline_dir)}), PretrainedDomain)


def test_loads_flat_layout_and_derives_the_sde(flat_dir: Path) -> None:
    domain = PretrainedDomain(flat_dir)
    assert domain.event_shape == (1, 8, 8)
    assert domain.sde.b_min == pytest.approx(0.1) and domain.sde.b_max == pytest.approx(20.0)
    assert domain._score.timestep(1.0) == 499.0


@pytest.mark.parametrize("t", [1e-3, 0.5, 1.0])
def test_score_matches_hand_computation(pipeline_dir: Path, t: float) -> None:
    domain = PretrainedDomain(pipeline_dir)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    score = domain.score(x, t)
    assert score.shape == x.shape and torch.isfinite(score).all()
    with torch.no_grad():
        eps = domain._score.unet(x, torch.full((4,), t * 999.0)).sample
    torch.testing.assert_close(score, -eps / VPSDE(0.1, 20.0).sigma(t))


def test_v_prediction_is_converted_to_a_score(pipeline_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "v"
    shutil.copytree(pipeline_dir, path)
    config_path = path / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "prediction_type": "v_prediction"}))
    domain, sde, t = PretrainedDomain(path), VPSDE(0.1, 20.0), 0.3
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v = domain._score.unet(x, torch.full((2,), t * 999.0)).sample
    expected = -(sde.alpha(t) * v + sde.sigma(t) * x) / sde.sigma(t)
    torch.testing.assert_close(domain.score(x, t), expected)


@pytest.mark.parametrize("schedule", ["scaled_linear", "squaredcos_cap_v2"])
def test_non_linear_schedule_is_rejected_by_name(
    pipeline_dir: Path, tmp_path: Path, schedule: str
) -> None:
    path = tmp_path / "nonlinear"
    shutil.copytree(pipeline_dir, path)
    DDPMScheduler(beta_schedule=schedule).save_pretrained(path / "scheduler")
    with pytest.raises(ModelLoadError, match=schedule) as err:
        PretrainedDomain(path)
    assert "nonlinear" in str(err.value)


def test_missing_and_corrupt_dirs_name_the_path(pipeline_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no-such-model"):
        PretrainedDomain(tmp_path / "no-such-model")
    corrupt = tmp_path / "corrupt-model"
    shutil.copytree(pipeline_dir, corrupt)
    (corrupt / "unet" / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelLoadError, match="corrupt-model"):
        PretrainedDomain(corrupt)
    no_scheduler = tmp_path / "no-scheduler"
    shutil.copytree(pipeline_dir, no_scheduler)
    shutil.rmtree(no_scheduler / "scheduler")
    with pytest.raises(ModelLoadError, match="no-scheduler.*scheduler_config.json"):
        PretrainedDomain(no_scheduler)


def test_oracles(pipeline_dir: Path) -> None:
    domain = PretrainedDomain(pipeline_dir)
    assert domain.oracle_names() == ["brightness", "colourfulness", "jpeg-compressibility"]
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (3, 3, 8, 8))
    black, white = -np.ones((1, 3, 8, 8)), np.ones((1, 3, 8, 8))
    for name in domain.oracle_names():
        r = domain.oracle(name)(noise)
        assert r.shape == (3,) and np.isfinite(r).all()
    np.testing.assert_allclose(brightness(np.concatenate([black, white])), [0.0, 1.0])
    grey = np.repeat(noise[:, :1], 3, axis=1)
    np.testing.assert_allclose(colourfulness(grey), 0.0)
    assert (colourfulness(noise) > 10).all()
    assert (jpeg_compressibility(noise) < jpeg_compressibility(black)).all()
    assert (jpeg_compressibility(noise) < 0).all()
    with pytest.raises(ValueError, match="jpeg-compressibility"):
        domain.oracle("aesthetics")


def test_oracles_on_grey_images_and_noise(flat_dir: Path) -> None:
    domain = PretrainedDomain(flat_dir)
    x = np.random.default_rng(1).uniform(-1, 1, (4, 1, 8, 8))
    assert np.isfinite(domain.oracle("jpeg-compressibility")(x)).all()
    assert (domain.oracle("colourfulness")(x) == 0).all()
    noisy = domain.oracle("brightness", noise_std=0.05, seed=3)
    np.testing.assert_allclose(noisy(x), noisy(x))
    assert not np.allclose(noisy(x), brightness(x))


def test_validity_and_diversity() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 3, 8, 8))
    assert is_valid(x).all()
    x[0, 0, 0, 0] = np.nan
    x[1] *= 3.0
    x[2, 0, :2] = 2.0  # 16 of 192 values out of range
    x[3, 0, 0, 0] = 2.0  # 1 of 192: a small overshoot is fine
    np.testing.assert_array_equal(is_valid(x), [False, False, False, True])
    d = diversity(rng.uniform(-1, 1, (10, 3, 8, 8)))
    assert d["mean_pairwise_l2"] > 1 and d["mean_pixel_std"] > 0.3
    assert diversity(np.zeros((5, 3, 8, 8)))["mean_pairwise_l2"] == pytest.approx(0.0, abs=1e-6)
