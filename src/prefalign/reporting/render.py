"""Human-viewable renderings of samples: image grids and 2-D scatter plots (PNG, matplotlib Agg).

Used for each round's queries and for the final samples. Images are expected in the model's
[-1, 1] range, shaped (N, C, H, W) with C = 1 (grey) or 3 (RGB); values outside are clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def to_display(x: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> (N, H, W) grey or (N, H, W, 3) RGB in [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:  # (N, H, W): one channel without its axis
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1|3, H, W), got {x.shape}")
    x = np.clip((np.nan_to_num(x, nan=0.0) + 1.0) / 2.0, 0.0, 1.0)
    return x[:, 0] if x.shape[1] == 1 else np.moveaxis(x, 1, -1)


def _titles(n: int, rewards: Sequence[float] | np.ndarray | None, titles: Sequence[str] | None):
    if titles is not None:
        if len(titles) != n:
            raise ValueError(f"got {len(titles)} titles for {n} images")
        return list(titles)
    if rewards is None:
        return [""] * n
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if len(rewards) != n:
        raise ValueError(f"got {len(rewards)} rewards for {n} images")
    return [f"{r:.2f}" for r in rewards]


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (creating parent folders) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_samples(
    path: str | Path,
    x: np.ndarray,
    rewards: Sequence[float] | np.ndarray | None = None,
    *,
    title: str | None = None,
    background: np.ndarray | None = None,
    max_images: int = 64,
) -> Path:
    """Write the picture that suits the samples: a scatter plot of 2-D points
    (:func:`save_points`, over ``background`` when given) or a grid of the first ``max_images``
    images (:func:`save_grid`), labelled with their rewards when given."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 2:
        return save_points(path, x, rewards, background=background, title=title)
    shown = None if rewards is None else np.asarray(rewards)[:max_images]
    return save_grid(path, x[:max_images], shown, suptitle=title)


def save_grid(
    path: str | Path,
    x: np.ndarray,
    rewards: Sequence[float] | np.ndarray | None = None,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell_inches: float = 1.2,
) -> Path:
    """Write a PNG grid of images, each titled with its reward (or with ``titles``).

    Args:
        path: output PNG; parent directories are created.
        x: images (N, C, H, W) or (N, H, W) in [-1, 1].
        rewards: optional (N,) values shown (2 decimals) above each image.
        ncols: images per row.
        titles: optional (N,) strings, used instead of ``rewards``.
        suptitle: optional figure title.
        cell_inches: size of one cell.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    images = to_display(x)
    n = len(images)
    if n == 0:
        raise ValueError("save_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    labels = _titles(n, rewards, titles)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(cell_inches * ncols, cell_inches * nrows + 0.3), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if labels[i]:
                ax.set_title(labels[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


def save_points(
    path: str | Path,
    x: np.ndarray,
    rewards: Sequence[float] | np.ndarray | None = None,
    background: np.ndarray | None = None,
    *,
    title: str | None = None,
    cmap: str = "viridis",
) -> Path:
    """Write a PNG scatter plot of 2-D points coloured by reward.

    Args:
        path: output PNG; parent directories are created.
        x: points (N, 2).
        rewards: optional (N,) colour values (a colour bar is drawn); plain dots without.
        background: optional (M, 2) reference points (e.g. base-model samples) drawn in light grey.
        title: optional axes title.
        cmap: matplotlib colour map for the rewards.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {x.shape}")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if background is not None:
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or background.shape[1] != 2:
            raise ValueError(f"background must have shape (M, 2), got {background.shape}")
        ax.scatter(background[:, 0], background[:, 1], s=3, c="0.85", label="reference")
    if rewards is None:
        ax.scatter(x[:, 0], x[:, 1], s=6, c="C0")
    else:
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if len(rewards) != len(x):
            raise ValueError(f"got {len(rewards)} rewards for {len(x)} points")
        points = ax.scatter(x[:, 0], x[:, 1], s=6, c=rewards, cmap=cmap)
        fig.colorbar(points, ax=ax, label="reward")
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
