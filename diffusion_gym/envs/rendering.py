"""Drawing helpers shared by the environments: a batch of samples to an RGB ``uint8`` array.

All figures are drawn off-screen with matplotlib's Agg canvas (no display, no window), so
``render_mode="rgb_array"`` works on headless machines. Every function returns a
``[height, width, 3]`` ``np.uint8`` array of exactly the requested size.

- :func:`scatter_2d`: a 2-D batch as a scatter plot, coloured by class.
- :func:`histogram_1d`: a 1-D batch as a histogram (with optional reference density).
- :func:`image_grid`: a batch of images ``[B, C, H, W]`` tiled into one grid.
- :func:`render_batch`: picks one of the above from the sample shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["scatter_2d", "histogram_1d", "image_grid", "render_batch", "figure_to_array"]


def _as_numpy(x) -> np.ndarray:
    """A tensor or array as a float64 numpy array on the host."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _new_figure(size: tuple[int, int], dpi: int = 100):
    """An Agg figure of exactly ``size = (height, width)`` pixels and one axes."""
    h, w = size
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.1, 0.85, 0.8))
    return fig, ax


def figure_to_array(fig) -> np.ndarray:
    """Rasterise a matplotlib figure (with an Agg canvas) into ``[H, W, 3]`` uint8."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (height, width) with both >= 16 pixels, got {size}")
    return int(size[0]), int(size[1])


def scatter_2d(
    x,
    labels=None,
    *,
    size: tuple[int, int] = (400, 400),
    limits: float | None = None,
    title: str = "",
    reference=None,
    max_points: int = 4096,
) -> np.ndarray:
    """Scatter plot of a 2-D batch ``x [B, 2]``, coloured by ``labels [B]`` (or one colour).

    :param limits: half-width of the square view; None = fit the points (at least 3).
    :param reference: optional ``[M, 2]`` points drawn faintly underneath (e.g. data).
    :param max_points: draw at most this many points (the first ones).
    """
    size = _check_size(size)
    pts = _as_numpy(x)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"x must have shape [B, 2], got {pts.shape}")
    pts = pts[:max_points]
    fig, ax = _new_figure(size)
    if reference is not None:
        ref = _as_numpy(reference)[:max_points]
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.8", linewidths=0)
    if labels is not None:
        colours = _as_numpy(labels).reshape(-1)[: len(pts)] % 10
        ax.scatter(pts[:, 0], pts[:, 1], s=4, c=colours, cmap="tab10", vmin=0, vmax=9, lw=0)
    else:
        ax.scatter(pts[:, 0], pts[:, 1], s=4, c="tab:blue", linewidths=0)
    finite = pts[np.isfinite(pts).all(1)]
    lim = limits
    if lim is None:
        lim = max(3.0, float(np.abs(finite).max()) * 1.05) if len(finite) else 3.0
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal", adjustable="box")
    if title:
        ax.set_title(title, fontsize=9)
    return figure_to_array(fig)


def histogram_1d(
    x,
    *,
    size: tuple[int, int] = (300, 400),
    bins: int = 50,
    limits: float | None = None,
    density: Callable[[np.ndarray], np.ndarray] | None = None,
    title: str = "",
) -> np.ndarray:
    """Histogram of a 1-D batch ``x [B]`` or ``[B, 1]``; ``density(grid)`` overlays a curve."""
    size = _check_size(size)
    v = _as_numpy(x).reshape(-1)
    v = v[np.isfinite(v)]
    lim = limits if limits is not None else max(4.0, float(np.abs(v).max()) * 1.05 if len(v) else 4)
    fig, ax = _new_figure(size)
    ax.hist(v, bins=bins, range=(-lim, lim), density=True, color="tab:blue", alpha=0.7)
    if density is not None:
        grid = np.linspace(-lim, lim, 400)
        ax.plot(grid, density(grid), color="k", lw=1)
    ax.set_xlim(-lim, lim)
    if title:
        ax.set_title(title, fontsize=9)
    return figure_to_array(fig)


def image_grid(
    images, *, size: tuple[int, int] = (400, 400), max_images: int = 64, value_range=(-1.0, 1.0)
) -> np.ndarray:
    """Tile a batch of images ``[B, C, H, W]`` (C = 1 or 3) into a grid, resized to ``size``.

    :param value_range: pixel values mapped to black..white (clipped outside).
    """
    size = _check_size(size)
    img = _as_numpy(images)
    if img.ndim == 3:
        img = img[:, None]
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [B, C, H, W] with C in (1, 3), got {img.shape}")
    img = img[:max_images]
    lo, hi = value_range
    img = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    b, c, h, w = img.shape
    cols = max(1, math.ceil(math.sqrt(b)))
    rows = max(1, math.ceil(b / cols))
    canvas = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, 3))
    for i in range(b):
        r, q = divmod(i, cols)
        tile = np.repeat(img[i], 3 // c, axis=0).transpose(1, 2, 0)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = tile
    # Nearest-neighbour resize to the requested size.
    ys = np.minimum((np.arange(size[0]) * canvas.shape[0]) // size[0], canvas.shape[0] - 1)
    xs = np.minimum((np.arange(size[1]) * canvas.shape[1]) // size[1], canvas.shape[1] - 1)
    return (canvas[ys][:, xs] * 255).round().astype(np.uint8)


def render_batch(
    x, labels=None, *, size: tuple[int, int] = (400, 400), title: str = "", **kwargs
) -> np.ndarray:
    """Draw a batch by its sample shape: ``[B, 1]``/``[B]`` histogram, ``[B, 2]`` scatter,
    ``[B, C, H, W]`` image grid, other ``[B, d]`` the first two coordinates as a scatter."""
    shape = tuple(x.shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return histogram_1d(x, size=size, title=title, **kwargs)
    if len(shape) == 2:
        return scatter_2d(x[:, :2], labels, size=size, title=title, **kwargs)
    if len(shape) in (3, 4):
        return image_grid(x, size=size, **kwargs)
    raise ValueError(f"cannot draw a batch of shape {shape}")
