"""The pictures of the queries: an image scaled up with crisp pixels, or a 2-D point drawn among
all the round's points. Each PNG is rendered on first request and kept in memory."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np

from prefalign.oracles.human.queries import Queries

__all__ = [
    "DISPLAY_PX",
    "QueryPictures",
    "image_display_size",
    "image_png",
    "point_png",
    "square_limits",
]

#: Pictures are scaled up to about this many pixels on their longer side.
DISPLAY_PX = 192


def image_png(image: np.ndarray, display_px: int = DISPLAY_PX) -> bytes:
    """PNG of one image query, scaled up by a whole factor with nearest-neighbour pixels.

    Args:
        image: (H, W), (1, H, W) or (3, H, W), values in [-1, 1] (clipped).
        display_px: target size of the longer side; the factor is ``display_px // max(H, W)``.
    """
    from PIL import Image

    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    pixels = np.rint((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    if pixels.ndim == 3:  # (3, H, W) -> (H, W, 3)
        picture = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
    else:
        picture = Image.fromarray(pixels, mode="L")
    factor = max(1, display_px // max(picture.size))
    if factor > 1:
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def image_display_size(shape: Sequence[int], display_px: int = DISPLAY_PX) -> tuple[int, int]:
    """(width, height) in pixels of :func:`image_png` for an image of this (event) shape."""
    height, width = shape[-2], shape[-1]
    factor = max(1, display_px // max(height, width))
    return width * factor, height * factor


def square_limits(points: np.ndarray, margin: float = 0.12) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) window around all points (N, 2), with a relative margin."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2.0
    half = float(np.max(high - low)) / 2.0
    half = half * (1.0 + 2.0 * margin) if half > 0 else 1.0
    return (
        float(centre[0] - half),
        float(centre[0] + half),
        float(centre[1] - half),
        float(centre[1] + half),
    )


def point_png(
    points: np.ndarray,
    index: int,
    limits: tuple[float, float, float, float],
    display_px: int = DISPLAY_PX,
) -> bytes:
    """PNG of query ``index`` among all the round's 2-D points (k, 2): a small matplotlib plot.

    The other queries are small grey dots; this one is a large orange dot with a black edge.
    Drawn with the object-oriented Agg API (no pyplot), so it is safe off the main thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(display_px / dpi, display_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.15, 0.12, 0.82, 0.84))
    others = np.delete(points, index, axis=0)
    axes.scatter(others[:, 0], others[:, 1], s=12, color="#9aa0a6", linewidths=0, zorder=2)
    axes.scatter(
        points[index, 0],
        points[index, 1],
        s=90,
        color="#d55e00",
        edgecolors="black",
        linewidths=1.0,
        zorder=3,
    )
    axes.set_xlim(limits[0], limits[1])
    axes.set_ylim(limits[2], limits[3])
    axes.set_aspect("equal", adjustable="box")
    axes.grid(True, color="#e3e5e8", linewidth=0.6, zorder=0)
    axes.tick_params(labelsize=7, length=2, pad=1.5)
    axes.locator_params(nbins=5)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class QueryPictures:
    """Renders each query's PNG once, on first request, and keeps it in memory."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries
        self._cache: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._limits = square_limits(queries.x) if queries.kind == "points2d" else None

    def png(self, index: int) -> bytes:
        """The PNG bytes of query ``index`` (0-based)."""
        with self._lock:
            if index not in self._cache:
                if self.queries.kind == "points2d":
                    assert self._limits is not None
                    self._cache[index] = point_png(self.queries.x, index, self._limits)
                else:
                    self._cache[index] = image_png(self.queries.x[index])
            return self._cache[index]

    def size(self) -> tuple[int, int]:
        """(width, height) of every picture, for the page layout."""
        if self.queries.kind == "points2d":
            return DISPLAY_PX, DISPLAY_PX
        return image_display_size(self.queries.x.shape[1:])

    def __len__(self) -> int:
        """How many pictures: one per query (item)."""
        return len(self.queries)

    def describe(self, index: int) -> str:
        """What picture ``index`` shows, in words (the text alternative without its name)."""
        if self.queries.kind == "points2d":
            x0, x1 = self.queries.x[index]
            return (
                f"the point ({x0:.3g}, {x1:.3g}), highlighted among the round's "
                f"{len(self.queries)} points"
            )
        shape = self.queries.x.shape[1:]
        colour = "colour" if len(shape) == 3 and shape[0] == 3 else "grey"
        return f"{shape[-2]} by {shape[-1]} pixel {colour} image"

    def alt_text(self, index: int) -> str:
        """A text alternative for query ``index``: ``Query <n>: <what it shows>``."""
        return f"Query {index + 1}: {self.describe(index)}"
