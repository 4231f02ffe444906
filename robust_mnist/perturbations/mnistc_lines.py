"""MNIST-C's line corruptions: a line, a dotted line and a zigzag drawn across the digit.

All three draw with MNIST-C's ``line_from_points``: between two points, the pixel at row
``r`` of column ``c`` receives ``log(1 - d / 2.3) + 1`` (clipped to [0, 1]) where ``d`` is
its *vertical* distance to the line through the points, so strokes are about 2.9 px tall
whatever their slope; columns left of ``floor(c0)`` and from ``ceil(c1)`` on get nothing
(:func:`line_from_points`). The result is ``min(x + t * line, 1)``. MNIST-C has no levels
for these: its corruption is intensity ``t = 1`` (``published_magnitude``); the magnitude
here scales the drawn ink, 0 being the identity. The random end points are stored per image.
"""

from __future__ import annotations

import numpy as np

from ..images import check_images
from ._shared import param_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import blocks, finish, levels64

_GRID = np.linspace(0, 27, 28)
#: Columns a dotted line keeps: MNIST-C blanks the pairs 0-1, 4-5, ..., 24-25 (and 27,
#: beyond its line's end).
DOTTED_COLUMNS = np.array([(column // 2) % 2 == 1 and column != 27 for column in range(28)])


def line_from_points(c0, r0, c1, r1) -> np.ndarray:
    """MNIST-C's ``line_from_points`` for a batch of segments (one per image).

    Parameters
    ----------
    c0, r0, c1, r1 : (N,) ndarray of float
        Column and row of the two ends, ``c1 != c0``.

    Returns
    -------
    (N, 28, 28) ndarray of float64 in [0, 1]
    """
    c0, r0, c1, r1 = (np.asarray(value, dtype=np.float64)[:, None, None] for value in (c0, r0, c1, r1))
    slope = (r1 - r0) / (c1 - c0)
    centre = slope * (_GRID[None, None, :] - c0) + r0  # the line's row at each column
    distance = np.clip(np.abs(_GRID[None, :, None] - centre), 0, 2.3 - 1e-10)
    ink = np.clip(np.log(1 - distance / 2.3) + 1, 0, 1)
    columns = _GRID[None, None, :]
    return np.where((columns >= np.floor(c0)) & (columns < np.ceil(c1)), ink, 0.0)


class _Drawn(MnistcFamily):
    """Shared by the line families: sampling of the intensity, drawing of the segments."""

    unit = "ink (1 = MNIST-C)"
    published_magnitude = 1.0
    default_magnitudes = (0.0, 0.25, 0.5, 0.75, 1.0)
    magnitude_range = (0.0, 1.0)
    random = True
    POINTS: tuple[str, ...] = ()

    def _draw_points(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _segments(self, points: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The ink of each segment drawn, each (N, 28, 28), added in order."""
        raise NotImplementedError

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        points = {key: value.astype(np.float64) for key, value in self._draw_points(n, rng).items()}
        return {"intensity": np.full(n, magnitude)} | points

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        intensity = param_column(params, "intensity", n, self.name)
        points = {key: param_column(params, key, n, self.name) for key in self.POINTS}
        out = images.copy()
        drawn = np.flatnonzero(intensity != 0)
        for block in blocks(drawn.size):
            chosen = drawn[block]
            values = levels64(images[chosen])
            strength = intensity[chosen, None, None]
            # MNIST-C clips after each segment; the ink is never negative, so this is
            # min(x + sum, 1) up to rounding, kept in its order.
            for ink in self._segments({key: value[chosen] for key, value in points.items()}):
                values = np.clip(values + strength * ink, 0, 1)
            out[chosen] = finish(values)
        return out


@register
class Line(_Drawn):
    """MNIST-C's line: a straight stroke across the digit.

    From column ``c0`` (uniform integer 0..4) to ``c1`` (22..26), rows ``r0`` and ``r1``
    (each uniform 0..26), drawn by :func:`line_from_points`. Not in the published set.

    Params: ``intensity`` (the magnitude), ``c0``, ``r0``, ``c1``, ``r1``.
    """

    name = "line"
    mnistc_name = "line"
    description = "MNIST-C line: a stroke from column 0-4 to 22-26 at random rows, added to the digit"
    POINTS = ("c0", "r0", "c1", "r1")

    def _draw_points(self, n, rng):
        return {
            "c0": rng.integers(0, 5, size=n),
            "c1": rng.integers(22, 27, size=n),
            "r0": rng.integers(0, 27, size=n),
            "r1": rng.integers(0, 27, size=n),
        }

    def _segments(self, points):
        if (points["c1"] == points["c0"]).any():
            raise ValueError(f"{self.name}: params need c1 != c0")
        return [line_from_points(points["c0"], points["r0"], points["c1"], points["r1"])]


@register
class DottedLine(_Drawn):
    """MNIST-C's dotted_line: a line across the whole width, drawn in two-pixel dashes.

    From column 0, row ``r0`` to column 27, row ``r1`` (each uniform 0..26); the columns
    0-1, 4-5, ..., 24-25 and 27 are left blank (:data:`DOTTED_COLUMNS`), so the dashes are
    columns 2-3, 6-7, ..., 22-23 and 26. In the published set.

    Params: ``intensity`` (the magnitude), ``r0``, ``r1``.
    """

    name = "dotted_line"
    mnistc_name = "dotted_line"
    description = (
        "MNIST-C dotted_line: a dashed line across the digit between random rows at columns 0 and 27"
    )
    POINTS = ("r0", "r1")

    def _draw_points(self, n, rng):
        return {"r0": rng.integers(0, 27, size=n), "r1": rng.integers(0, 27, size=n)}

    def _segments(self, points):
        n = len(points["r0"])
        ink = line_from_points(np.zeros(n), points["r0"], np.full(n, 27.0), points["r1"])
        return [np.where(DOTTED_COLUMNS[None, None, :], ink, 0.0)]


def zigzag_points(rise: float) -> tuple[np.ndarray, np.ndarray]:
    """Corner columns and rows of MNIST-C's zigzag, relative to its start (2, r0).

    Teeth of length ``a = 2`` and height ``b = 2`` along a straight line that rises by
    ``rise`` rows over columns 2 to 25: corners ``((2 i + 1) a, (-1)^i b)`` for ``i`` up to
    ``(d - a) // (2 a)`` with ``d`` the line's length, then MNIST-C's end point ``(d, r_i /
    (2 (d - max_c)))`` when ``d`` is not a multiple of ``2 a``; all turned by the line's
    angle.
    """
    a = b = 2.0
    theta = np.arctan(rise / 23.0)
    d = 23.0 / np.cos(theta)
    points = [(0.0, 0.0)]
    r_i = 0.0
    for i in range(int((d - a) // (2 * a)) + 1):
        r_i = (-1) ** i * b
        points.append(((2 * i + 1) * a, r_i))
    max_c = (2 * a) * (d // (2 * a))
    if d != max_c:
        points.append((d, r_i / (2 * (d - max_c))))
    corners = np.array(points).T
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    columns, rows = turn.dot(corners)
    return columns + 2.0, rows


@register
class Zigzag(_Drawn):
    """MNIST-C's zigzag: a saw-tooth stroke across the digit.

    It starts at column 2, row ``r0`` (uniform 0..26), and runs to column 25 with a rise
    ``r1 - r0`` uniform in -5..4 rows, in teeth 2 px long and 2 px high
    (:func:`zigzag_points`), each segment drawn by :func:`line_from_points`. In the
    published set.

    Params: ``intensity`` (the magnitude), ``r0``, ``r1``.
    """

    name = "zigzag"
    mnistc_name = "zigzag"
    description = "MNIST-C zigzag: a saw-tooth stroke from column 2 to 25 across the digit"
    POINTS = ("r0", "r1")

    def _draw_points(self, n, rng):
        r0 = rng.integers(0, 27, size=n)
        return {"r0": r0, "r1": r0 + rng.integers(-5, 5, size=n)}

    def _segments(self, points):
        n = len(points["r0"])
        rise = points["r1"] - points["r0"]
        shapes = {value: zigzag_points(float(value)) for value in np.unique(rise)}
        count = max(len(columns) for columns, _ in shapes.values()) - 1
        segments = []
        for k in range(count):
            ends = np.zeros((4, n))
            present = np.zeros(n, bool)
            for value, (columns, rows) in shapes.items():
                if k + 1 < len(columns):
                    chosen = rise == value
                    ends[:, chosen] = np.array(
                        [[columns[k]], [rows[k]], [columns[k + 1]], [rows[k + 1]]]
                    )
                    present |= chosen
            ends[1] += points["r0"]
            ends[3] += points["r0"]
            ends[2] = np.where(present, ends[2], 1.0)  # a placeholder segment, masked below
            ink = line_from_points(ends[0], ends[1], ends[2], ends[3])
            segments.append(np.where(present[:, None, None], ink, 0.0))
        return segments
