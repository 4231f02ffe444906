"""Digit strips: digits side by side above their ten-bar probability charts, drawn with numpy.

The galleries of the reports are not matplotlib figures: :func:`digit_strip` renders digits
and their probability bars straight into a palette image (:func:`strip_palette`, sizes from
:func:`strip_geometry`), which is fast enough for hundreds of strips and stays pixel-exact when
the browser upscales it. The bars use the reports' colours (:mod:`robust_mnist.plots`).
"""

from __future__ import annotations

import matplotlib.colors
import numpy as np

from .plots import OTHER_COLOUR, TRUE_COLOUR, WRONG_COLOUR

#: Palette indices of :func:`digit_strip` images: 0..GRAY_LEVELS-1 are ink levels from white
#: to black; the colours follow.
GRAY_LEVELS = 240
_TRUE, _WRONG, _OTHER, _SLOT, _FRAME = range(GRAY_LEVELS, GRAY_LEVELS + 5)


def strip_palette() -> list[int]:
    """The flat RGB palette (768 values) of :func:`digit_strip` images."""
    gray = np.linspace(255, 0, GRAY_LEVELS).round().astype(int)
    colours = [np.array(matplotlib.colors.to_rgb(c)) * 255 for c in
               (TRUE_COLOUR, WRONG_COLOUR, OTHER_COLOUR, "#F1F1F1", "#D0D0D0")]
    rows = [(g, g, g) for g in gray] + [tuple(int(round(v)) for v in c) for c in colours]
    rows += [(255, 255, 255)] * (256 - len(rows))
    return [value for row in rows for value in row]


def strip_geometry(scale: int) -> dict[str, int]:
    """Pixel sizes of one :func:`digit_strip` cell at ``scale`` (digit side 28 * scale)."""
    side = 28 * scale
    bar = max((side - 9) // 10, 1)
    return {"side": side, "bar": bar, "gap": 1, "bars_height": 12 * scale + 4,
            "spacing": 2 * scale + 2, "cell": side + 2 * scale + 4}


def digit_strip(
    images: np.ndarray,
    probabilities: np.ndarray,
    true_class: int,
    *,
    scale: int = 2,
) -> np.ndarray:
    """Digits side by side, each above its ten-bar probability chart, as palette indices.

    Parameters
    ----------
    images : (K, 28, 28) ndarray of uint8, or of float in [0, 1]
        Ink bright, as MNIST stores it; drawn dark on white.
    probabilities : (K, 10) ndarray of float
        The model's probabilities for each image.
    true_class : int
        Its bar is blue; the predicted class's bar is vermillion when it is wrong; the others
        grey. Empty slots are drawn faintly so the ten positions 0..9 stay readable.
    scale : int
        Nearest-neighbour upscaling factor of the digits (1 to 8).

    Returns
    -------
    (H, W) ndarray of uint8
        Indices into :func:`strip_palette`; ``W = K * cell`` with ``cell`` from
        :func:`strip_geometry`.
    """
    images = np.asarray(images)
    probabilities = np.asarray(probabilities, dtype=float)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (K, 28, 28); got {images.shape}")
    if probabilities.shape != (len(images), 10):
        raise ValueError(f"probabilities must have shape ({len(images)}, 10); got {probabilities.shape}")
    if not 1 <= int(scale) <= 8:
        raise ValueError(f"scale must be an integer from 1 to 8; got {scale}")
    scale = int(scale)
    geometry = strip_geometry(scale)
    side, bar, gap, bars_height, spacing, cell = (
        geometry[k] for k in ("side", "bar", "gap", "bars_height", "spacing", "cell"))
    k = len(images)
    height = side + spacing + bars_height
    canvas = np.zeros((height, k * cell), dtype=np.uint8)  # index 0 = white

    ink = images.astype(float) / (255.0 if images.dtype == np.uint8 else 1.0)
    levels = np.clip(np.rint(ink * (GRAY_LEVELS - 1)), 0, GRAY_LEVELS - 1).astype(np.uint8)
    big = levels.repeat(scale, axis=1).repeat(scale, axis=2)  # (K, side, side)
    # A hairline frame shows the 28x28 field, so a digit pushed to the edge reads as such.
    edge = np.zeros((side, side), dtype=bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    big[:, edge] = np.where(big[:, edge] == 0, _FRAME, big[:, edge])
    offset = (cell - side) // 2
    columns = offset + np.arange(k)[:, None] * cell + np.arange(side)[None, :]  # (K, side)
    canvas[:side, columns.ravel()] = big.transpose(1, 0, 2).reshape(side, -1)

    # Ten bars under every digit, drawn for all digits at once.
    chart_width = 10 * bar + 9 * gap
    first = (cell - chart_width) // 2
    top = side + spacing
    bar_x = first + np.arange(10) * (bar + gap)  # left edge of each bar within a cell
    heights = np.rint(np.clip(probabilities, 0, 1) * bars_height).astype(int)  # (K, 10)
    predicted = probabilities.argmax(axis=1)
    colour = np.full((k, 10), _OTHER, dtype=np.uint8)
    colour[np.arange(k), predicted] = _WRONG
    colour[:, int(true_class)] = _TRUE
    y = np.arange(bars_height)[:, None, None]  # rows of the chart, top to bottom
    filled = y >= bars_height - heights[None, :, :]  # (rows, K, 10)
    values = np.where(filled, colour[None], _SLOT).astype(np.uint8)  # (rows, K, 10)
    xs = (np.arange(k)[:, None, None] * cell + bar_x[None, :, None]
          + np.arange(bar)[None, None, :])  # (K, 10, bar)
    chart = np.repeat(values[:, :, :, None], bar, axis=3)  # (rows, K, 10, bar)
    canvas[top:top + bars_height, xs.ravel()] = chart.reshape(bars_height, -1)
    return canvas
