"""PNG renderings of image grids and 2-D points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prefalign.reporting.render import save_grid, save_points, to_display

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_to_display_scales_and_clips() -> None:
    grey = to_display(np.array([[[[-1.0, 0.0], [1.0, 3.0]]]]))
    np.testing.assert_allclose(grey, [[[0.0, 0.5], [1.0, 1.0]]])
    rgb = to_display(np.zeros((2, 3, 4, 5)))
    assert rgb.shape == (2, 4, 5, 3)
    with pytest.raises(ValueError, match=r"\(N, 1\|3, H, W\)"):
        to_display(np.zeros((2, 2, 4, 4)))


def test_save_grid_with_rewards(tmp_path: Path) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (10, 1, 8, 8))
    path = save_grid(tmp_path / "sub" / "grid.png", x, rewards=np.linspace(0, 1, 10), ncols=4)
    assert _is_png(path)
    width, height = Image.open(path).size
    assert width > height  # 4 columns, 3 rows


def test_save_grid_rgb_titles_and_nan(tmp_path: Path) -> None:
    x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 8, 8))
    x[0, 0, 0, 0] = np.nan
    assert _is_png(save_grid(tmp_path / "rgb.png", x, titles=["a", "b", "c"], suptitle="round 1"))


def test_save_grid_rejects_mismatched_rewards(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 rewards for 3 images"):
        save_grid(tmp_path / "bad.png", np.zeros((3, 1, 8, 8)), rewards=[0.1, 0.2])
    with pytest.raises(ValueError, match="at least one"):
        save_grid(tmp_path / "empty.png", np.zeros((0, 1, 8, 8)))


def test_save_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    assert _is_png(save_points(tmp_path / "plain.png", x))
    path = save_points(tmp_path / "p.png", x, x[:, 0], background=rng.normal(size=(200, 2)))
    assert _is_png(path)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        save_points(tmp_path / "bad.png", np.zeros((5, 3)))
    with pytest.raises(ValueError, match="4 rewards for 50 points"):
        save_points(tmp_path / "bad.png", x, np.zeros(4))
