"""Numerical building blocks of the MNIST-C families, batched over (N, 28, 28) stacks.

MNIST-C works on 8-bit images (PIL images of MNIST digits) in float64 after dividing by 255,
and several of its steps go through a library (scikit-image, SciPy, ImageMagick, PIL).
These helpers reproduce those steps on a whole batch with the same arithmetic, so that our
[0, 1] result is MNIST-C's divided by 255:

- Levels: :func:`levels64` recovers the exact 8-bit level ``k / 255`` in float64 from its
  float32 rounding (and leaves other values alone); :func:`to_bytes` rounds to 8 bits where
  MNIST-C's step needs an 8-bit image; :func:`finish` clips and returns float32.
- Randomness: :func:`image_bits` gives each image its own PCG64 stream from its stored seed
  (NumPy keeps bit generators' raw output stable across versions; at the hundreds to tens of
  thousands of draws per image these corruptions need, a stream per image is several times
  faster than hashing counters), and :func:`uniforms` and :func:`normals` turn the raw bits
  into deviates.
- Filters: :func:`gaussian_along` is SciPy's 1-D Gaussian on the rows or columns of every
  image (scikit-image's ``gaussian`` is SciPy's, axis after axis, so the bits match);
  :func:`smoothing_matrix` the same as a matrix, for long kernels on our own noise;
  :func:`bilinear64` samples each image at its own coordinates (blank outside, like
  ``skimage.transform.warp``); :func:`clipped_zoom` is MNIST-C's centre zoom, as two
  matrix products with SciPy's weights; :func:`motion_blur_bytes` is ImageMagick's
  ``MotionBlurImage`` on 8-bit images.
- Tables: :func:`step_index` and :func:`interpolate_levels` read a severity table at a
  continuous magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ._shared import CHUNK


def blocks(n: int, size: int = CHUNK) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` images covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


_LEVELS32 = (np.arange(256) / 255.0).astype(np.float32)
_LEVELS64 = np.arange(256) / 255.0


def levels64(images: np.ndarray) -> np.ndarray:
    """The batch in float64, with float32 roundings of 8-bit levels made exact.

    MNIST-C computes on ``uint8 / 255.`` in float64; our float32 images hold ``k / 255``
    only to about 1e-8. A value equal to the float32 rounding of some ``k / 255`` (both
    ``np.float32(k / 255)`` and ``np.float32(k) / 255``, which agree for every ``k``)
    becomes exactly ``k / 255.`` in float64, so that thresholds and roundings downstream
    (Canny's hysteresis, glass blur's truncation to 8 bits, quantize) decide as MNIST-C's
    do. Other values (images not on the 8-bit grid) are kept as they are.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]

    Returns
    -------
    (N, 28, 28) ndarray of float64 in [0, 1]
    """
    source = np.ascontiguousarray(images, dtype=np.float32).reshape(-1)
    out = np.empty(source.shape, np.float64)
    step = 1 << 16  # in pieces that stay in cache: whole-batch temporaries cost more than the work
    for start in range(0, source.size, step):
        values = source[start : start + step]
        level = np.rint(values * np.float32(255.0)).astype(np.intp)
        np.clip(level, 0, 255, out=level)
        out[start : start + step] = np.where(_LEVELS32[level] == values, _LEVELS64[level], values)
    return out.reshape(images.shape)


def to_bytes(images: np.ndarray) -> np.ndarray:
    """The batch as 8-bit images (MNIST-C's PIL input): ``round(255 x)`` as uint8."""
    return np.clip(np.rint(images.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def finish(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and return float32 (MNIST-C's final ``np.clip(x, 0, 1)``)."""
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def image_bits(seeds: np.ndarray, count: int) -> np.ndarray:
    """``count`` raw 64-bit words per image from a PCG64 stream seeded by the image's seed.

    Parameters
    ----------
    seeds : (N,) ndarray of int
    count : int

    Returns
    -------
    (N, count) ndarray of uint64
        Row ``i`` depends on ``seeds[i]`` alone (never on the batch).
    """
    out = np.empty((len(seeds), count), dtype=np.uint64)
    for row, seed in enumerate(np.asarray(seeds, dtype=np.int64)):
        # One generator per image is what makes its draws independent of the batch; the
        # draws are the hot part, done in one call per image.
        out[row] = np.random.PCG64(int(seed)).random_raw(count)
    return out


def uniforms(bits: np.ndarray) -> np.ndarray:
    """Uniform float64 deviates in (0, 1), 53 bits each, one per 64-bit word."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def normals(seeds: np.ndarray, count: int) -> np.ndarray:
    """``count`` standard normal float64 deviates per image (Box-Muller, 32-bit uniforms).

    Returns
    -------
    (N, count) ndarray of float64
    """
    bits = image_bits(seeds, (count + 1) // 2)
    high = ((bits >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0**-32
    low = ((bits & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * 2.0**-32
    radius = np.sqrt(-2.0 * np.log(high))
    angle = 2.0 * np.pi * low
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :count]


def gaussian_along(
    images: np.ndarray, sigma: float, axes: tuple[int, ...], mode: str, truncate: float = 4.0
) -> np.ndarray:
    """SciPy's 1-D Gaussian filter along image axes, one axis after the other.

    ``axes`` are image axes: 0 filters along the rows index (each column blurred
    vertically), 1 along the columns index. On a 2-D image, ``skimage.filters.gaussian``
    (and so ``scipy.ndimage.gaussian_filter``) filters axis 0 then axis 1 with the same
    1-D calls, so the bits match. ``sigma == 0`` leaves the images as they are.
    """
    out = images
    if sigma <= 0:
        return out.copy()
    for axis in axes:
        out = ndimage.gaussian_filter1d(out, sigma, axis=axis + 1, mode=mode, truncate=truncate)
    return out


@lru_cache(maxsize=64)
def smoothing_matrix(sigma: float, mode: str, truncate: float = 4.0) -> np.ndarray:
    """The 28x28 float64 matrix ``K`` with ``K @ v == gaussian_filter1d(v, sigma, mode, truncate)``.

    ``K @ image @ K.T`` is the 2-D Gaussian of an image, up to rounding, at the cost of two
    small matrix products whatever the kernel's length.
    """
    matrix = ndimage.gaussian_filter1d(np.eye(28), sigma, axis=0, mode=mode, truncate=truncate)
    matrix.flags.writeable = False  # cached: shared by every caller
    return matrix


def bilinear64(images: np.ndarray, source_y: np.ndarray, source_x: np.ndarray) -> np.ndarray:
    """Sample each image at per-pixel source coordinates, bilinearly, blank outside (float64).

    Each neighbour outside the frame reads 0, as in ``skimage.transform.warp(order=1,
    mode="constant", cval=0)`` and ``scipy.ndimage.map_coordinates(mode="grid-constant")``.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float
    source_y, source_x : (N, 28, 28) ndarray of float
        Row and column of the input that each output pixel reads.

    Returns
    -------
    (N, 28, 28) ndarray of float64
    """
    n = len(images)
    padded = np.zeros((n, 31, 31), np.float64)
    padded[:, 1:29, 1:29] = images
    flat = padded.reshape(-1)
    # Beyond [-1, 28] every neighbour is background: clipping there changes nothing.
    y = np.clip(source_y, -1.0, 28.0)
    x = np.clip(source_x, -1.0, 28.0)
    y0 = np.floor(y)
    x0 = np.floor(x)
    fy = y - y0
    fx = x - x0
    index = y0.astype(np.int64) * 31 + x0.astype(np.int64)
    index += (np.arange(n, dtype=np.int64) * 31 * 31 + 32)[:, None, None]
    top_left, top_right = flat.take(index), flat.take(index + 1)
    bottom_left, bottom_right = flat.take(index + 31), flat.take(index + 32)
    # skimage's order: top and bottom rows first, then between them.
    top = (1.0 - fx) * top_left + fx * top_right
    bottom = (1.0 - fx) * bottom_left + fx * bottom_right
    return (1.0 - fy) * top + fy * bottom


@lru_cache(maxsize=64)
def zoom_matrix(factor: float, size: int = 28) -> tuple[np.ndarray, int]:
    """MNIST-C's ``clipped_zoom`` along one axis, as a matrix: ``(Z, top)``.

    ``clipped_zoom`` crops the central ``ceil(size / factor)`` pixels from ``top``, zooms
    them with ``scipy.ndimage.zoom(order=1)`` (output pixel ``o`` reads input ``o (crop -
    1) / (out - 1)``, ``out = round(crop * factor)``) and keeps the middle ``size``. That is
    linear and separable: ``Z`` (size x crop) holds SciPy's own interpolation weights (the
    zoom of each unit vector), so ``Z @ crop @ Z.T`` is the 2-D zoom.
    """
    crop = int(np.ceil(size / float(factor)))
    top = (size - crop) // 2
    columns = ndimage.zoom(np.eye(crop), (factor, 1), order=1)
    trim = (columns.shape[0] - size) // 2
    matrix = np.ascontiguousarray(columns[trim : trim + size])
    matrix.flags.writeable = False  # cached: shared by every caller
    return matrix, top


def clipped_zoom(images: np.ndarray, factor: float) -> np.ndarray:
    """MNIST-C's ``clipped_zoom`` of every image: zoom about the centre by ``factor`` >= 1.

    The central ``ceil(28 / factor)`` square is zoomed bilinearly (SciPy's weights, see
    :func:`zoom_matrix`) and the middle 28x28 kept; equal to ``scipy.ndimage.zoom`` on each
    image up to float rounding. Returns the input's dtype.
    """
    matrix, top = zoom_matrix(float(factor), images.shape[1])
    crop = matrix.shape[1]
    square = images[:, top : top + crop, top : top + crop].astype(np.float64)
    # Stacked products: each image on its own, whatever the batch.
    return np.matmul(np.matmul(matrix, square), matrix.T).astype(images.dtype)


def motion_blur_kernel(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick's motion-blur weights: a one-sided Gaussian of ``2 ceil(radius) + 1`` taps.

    ``GetOptimalKernelWidth1D`` gives ``2 ceil(radius) + 1`` taps for a positive radius and
    ``GetMotionBlurKernel`` weighs tap ``i`` by ``exp(-i^2 / (2 sigma^2))``, normalised to 1.
    """
    width = int(2.0 * math.ceil(radius) + 1.0)
    sigma = sigma if abs(sigma) >= 1e-12 else 1e-12  # MagickSigma
    sqrt_two_pi = 2.50662827463100024161235523934010416269302368164062
    kernel = [
        math.exp(-float(i * i) / (2.0 * sigma * sigma)) / (sqrt_two_pi * sigma) for i in range(width)
    ]
    normalize = 0.0
    for value in kernel:  # summed in ImageMagick's order
        normalize += value
    return np.array([value / normalize for value in kernel])


def motion_offsets(width: int, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ImageMagick's integer tap offsets along each angle (degrees): ``(dx, dy)``, each (N, width).

    Tap ``w`` reads the pixel ``(x + round(w cos a), y + round(w sin a))`` (rounded half
    down: ``ceil(v - 0.5)``), with ``y`` the row, growing downwards.
    """
    radians = np.pi * np.asarray(angles, dtype=np.float64) / 180.0
    point_x = width * np.sin(radians)
    point_y = width * np.cos(radians)
    length = np.hypot(point_x, point_y)[:, None]
    taps = np.arange(width, dtype=np.float64)[None, :]
    dx = np.ceil(taps * point_y[:, None] / length - 0.5).astype(np.int64)
    dy = np.ceil(taps * point_x[:, None] / length - 0.5).astype(np.int64)
    return dx, dy


def motion_blur_bytes(values: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` on 8-bit images, as MNIST-C calls it through Wand.

    Each output pixel is ``sum_w kernel[w] * input[y + dy_w, x + dx_w]`` (reads beyond the
    border take the nearest edge pixel, ImageMagick's default "edge" virtual pixels),
    accumulated in float64 in tap order, and written back to 8 bits by truncation (measured
    against ImageMagick 6.9 through Wand, as MNIST-C calls it: flooring the exact sums matches
    it on 99.9% of pixels, rounding on 79%).

    Parameters
    ----------
    values : (N, 28, 28) ndarray of uint8 or float
        8-bit intensities, 0 to 255.
    radius, sigma : float
    angles : (N,) ndarray of float
        Degrees; 0 trails to the left, 90 upwards (ink is smeared along ``-direction``).

    Returns
    -------
    (N, 28, 28) ndarray of float64
        Integers 0 to 255.
    """
    kernel = motion_blur_kernel(radius, sigma)
    dx, dy = motion_offsets(len(kernel), angles)
    n = len(values)
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    grid = np.arange(28, dtype=np.int64)
    out = np.empty((n, 28, 28), np.float64)
    for block in blocks(n):
        count = block.stop - block.start
        base = (np.arange(block.start, block.stop, dtype=np.int64) * 784)[:, None, None]
        total = np.zeros((count, 28, 28), np.float64)
        for tap, weight in enumerate(kernel):
            rows = np.clip(grid[None, :] + dy[block, tap : tap + 1], 0, 27) * 28
            columns = np.clip(grid[None, :] + dx[block, tap : tap + 1], 0, 27)
            total += weight * flat.take(base + rows[:, :, None] + columns[:, None, :])
        out[block] = total
    # The guard keeps a sum that is an integer up to float error (254.9999999) on that integer.
    return np.clip(np.floor(out + 1e-9), 0.0, 255.0)


def step_index(table: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Per magnitude, the index of the first table level at or above it (the last beyond).

    A family whose interpretable parameter is swept continuously takes its other, discrete
    parameters (glass blur's shuffle radius, motion blur's kernel radius...) from this level,
    so that each table magnitude reproduces its level exactly.
    """
    index = np.searchsorted(np.asarray(table, dtype=np.float64), magnitude, side="left")
    return np.minimum(index, len(table) - 1)


def interpolate_levels(levels: np.ndarray, severity: np.ndarray) -> np.ndarray:
    """Parameters at a continuous severity, linear between MNIST-C's levels.

    Parameters
    ----------
    levels : (6, P) ndarray
        Row 0 is the identity's parameters, rows 1 to 5 MNIST-C's levels.
    severity : (N,) ndarray of float in [0, 5]

    Returns
    -------
    (N, P) ndarray of float64
        Exactly row ``k`` at integer severity ``k``.
    """
    levels = np.asarray(levels, dtype=np.float64)
    severity = np.clip(np.asarray(severity, dtype=np.float64), 0.0, 5.0)
    low = np.minimum(np.floor(severity), 4).astype(np.int64)
    weight = (severity - low)[:, None]
    # (1 - w) a + w b is exactly a at w = 0 and exactly b at w = 1.
    return (1.0 - weight) * levels[low] + weight * levels[low + 1]
