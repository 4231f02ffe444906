"""Helpers shared by the perturbation families: parameter columns, seeded noise, smoothing, warping.

- Parameters: :func:`param_column` and :func:`seed_column` read and check one realised
  parameter per image; :func:`draw_seeds` draws the per-image seeds.
- Seeded noise: per-image randomness is stored as an integer ``seed`` param, and ``apply``
  turns each seed into that image's noise with a counter-based generator
  (:func:`random_bits`, SplitMix64 hashing of (seed, pixel index)). One vectorised hash serves
  the whole batch, so the noise of image ``i`` depends only on its own seed (never on the batch
  it is in, or its position), it costs a few nanoseconds per pixel instead of ~20 us to build
  a ``numpy.random.Generator`` per image, and it is the same on every platform and NumPy
  version.
- Smoothing: :func:`gaussian_matrix` and :func:`smooth_rows_and_columns` blur a batch with
  two matrix products.
- Warping: :func:`bilinear` samples each image at per-pixel source coordinates (a vectorised
  gather, about four times faster than ``scipy.ndimage.map_coordinates`` with the same
  values), and :func:`warp_affine` warps each image about its centre of mass
  (:func:`centre_of_mass`). Conventions are :mod:`.geometric`'s: ``x`` is the column, ``y``
  the row, in array indices.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

#: Images processed per block inside ``apply``: keeps the temporaries in cache. Results do
#: not depend on it (every image is computed from its own params only).
CHUNK = 256

#: Seeds are drawn below 2**53 so that they survive a round trip through a float64 column.
SEED_LIMIT = 2**53

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (golden ratio)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, in place on a uint64 array (wrapping arithmetic)."""
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def random_bits(seeds: np.ndarray, count: int) -> np.ndarray:
    """``count`` pseudo-random 64-bit words per seed: SplitMix64 streams, one per seed.

    Parameters
    ----------
    seeds : (N,) array_like of int in [0, 2**53)
    count : int

    Returns
    -------
    (N, count) ndarray of uint64
        Row ``i`` is a function of ``seeds[i]`` alone.
    """
    with np.errstate(over="ignore"):
        # Hashing the seed first makes neighbouring seeds (0, 1, 2...) start far apart.
        keys = _mix64(np.asarray(seeds).astype(np.int64).astype(np.uint64) * _GAMMA + _GAMMA)
        counters = np.arange(1, count + 1, dtype=np.uint64) * _GAMMA
        return _mix64(keys[:, None] + counters[None, :])


def uniform_pair(seeds: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniform arrays in [0, 1) per seed, 24 bits each, from one hash.

    Returns
    -------
    high, low : (N, count) ndarray of float32
        Multiples of 2**-24 in [0, 1 - 2**-24].
    """
    bits = random_bits(seeds, count)
    scale = np.float32(2.0**-24)
    high = (bits >> np.uint64(40)).astype(np.float32) * scale
    low = ((bits >> np.uint64(8)) & np.uint64(0xFFFFFF)).astype(np.float32) * scale
    return high, low


def standard_normal(seeds: np.ndarray, count: int) -> np.ndarray:
    """Standard normal float32 deviates, ``count`` (even) per seed, by the Box-Muller method."""
    high, low = uniform_pair(seeds, count // 2)
    radius = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - high))  # 1 - high in (0, 1]
    angle = np.float32(2.0 * np.pi) * low
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def draw_seeds(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` per-image seeds from ``rng``, exactly representable as float64."""
    return rng.integers(0, SEED_LIMIT, size=n, dtype=np.int64)


def param_column(params: Mapping[str, np.ndarray], key: str, n: int, family: str) -> np.ndarray:
    """``params[key]`` as a float64 array of length ``n``, or a ValueError naming what is wrong."""
    if key not in params:
        raise ValueError(f"{family}: params lack {key!r} (got {sorted(params)})")
    column = np.asarray(params[key], dtype=np.float64)
    if column.shape != (n,):
        raise ValueError(f"{family}: param {key!r} has shape {column.shape}; expected ({n},)")
    if not np.isfinite(column).all():
        raise ValueError(f"{family}: param {key!r} contains NaN or infinite values")
    return column


def seed_column(params: Mapping[str, np.ndarray], n: int, family: str) -> np.ndarray:
    """The per-image ``seed`` param as int64, checked to be integers in [0, 2**53)."""
    seeds = param_column(params, "seed", n, family)
    if n and (seeds.min() < 0 or seeds.max() >= SEED_LIMIT or (seeds != np.floor(seeds)).any()):
        raise ValueError(f"{family}: param 'seed' must hold integers in [0, 2**53)")
    return seeds.astype(np.int64)


def gaussian_matrix(sigma: float, mode: str) -> np.ndarray:
    """The 28x28 matrix ``K`` with ``K @ v == scipy.ndimage.gaussian_filter1d(v, sigma, mode=mode)``.

    Filtering every row and column of a batch with two matrix products is many times faster
    than :func:`scipy.ndimage.gaussian_filter` on the stack, and gives the same numbers.
    """
    if sigma == 0:  # scipy divides by sigma**2
        return np.eye(28, dtype=np.float32)
    return ndimage.gaussian_filter1d(np.eye(28), sigma, axis=0, mode=mode).astype(np.float32)


def smooth_rows_and_columns(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``kernel @ image @ kernel.T`` for every image of a float32 (N, 28, 28) batch."""
    # A stacked matmul computes each image on its own, so the result does not depend on the
    # batch; one big (N*28, 28) product is no faster and its rounding depends on N.
    return np.matmul(np.matmul(kernel, np.ascontiguousarray(images)), kernel.T)


_GRID = np.arange(28, dtype=np.float32)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of each image.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]

    Returns
    -------
    (N, 2) ndarray of float64
        ``(x, y)``: column and row, in pixel indices; (13.5, 13.5), the frame's centre, for
        a blank image.
    """
    positions = np.arange(28, dtype=np.float64)
    ones = np.ones(28, np.float32)
    # Stacked matmuls sum each image on its own (so the result does not depend on the batch)
    # and run several times faster than ``sum(axis=...)`` here.
    rows = np.matmul(images, ones).astype(np.float64)  # (N, 28): ink per row
    columns = np.matmul(ones, images).astype(np.float64)  # (N, 28): ink per column
    mass = rows.sum(axis=1)
    blank = mass <= 0
    safe_mass = np.where(blank, 1.0, mass)
    x = np.where(blank, 13.5, (columns * positions).sum(axis=1) / safe_mass)
    y = np.where(blank, 13.5, (rows * positions).sum(axis=1) / safe_mass)
    return np.stack([x, y], axis=1)


def bilinear(images: np.ndarray, source_y: np.ndarray, source_x: np.ndarray) -> np.ndarray:
    """Sample each image at per-pixel source coordinates, bilinearly, blank outside the frame.

    Equal to ``scipy.ndimage.map_coordinates(images, [index, source_y, source_x], order=1,
    mode="grid-constant", cval=0)`` with ``index`` the image number.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32
    source_y, source_x : (N, 28, 28) ndarray of float32
        Row and column, in the image's pixel indices, that each output pixel reads.

    Returns
    -------
    (N, 28, 28) ndarray of float32
    """
    n = len(images)
    # A zero border (1 before, 2 after) lets every clipped coordinate read real neighbours:
    # coordinates beyond [-1, 28] only ever see background, so clipping them changes nothing.
    padded = np.zeros((n, 31, 31), np.float32)
    padded[:, 1:29, 1:29] = images
    flat = padded.reshape(-1)
    y = np.clip(source_y, -1.0, 28.0)
    x = np.clip(source_x, -1.0, 28.0)
    y0 = np.floor(y)
    x0 = np.floor(x)
    fy = y - y0
    fx = x - x0
    index = y0.astype(np.int32) * 31 + x0.astype(np.int32)
    index += (np.arange(n, dtype=np.int32) * 31 * 31 + 32)[:, None, None]
    top_left, top_right = flat.take(index), flat.take(index + 1)
    bottom_left, bottom_right = flat.take(index + 31), flat.take(index + 32)
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    return top + (bottom - top) * fy


def warp_affine(images: np.ndarray, linear: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Warp each image by an affine map about its centre of mass.

    Output pixel ``p = (x, y)`` reads the input at ``p + linear @ (p - c) + offset``, with
    ``c`` the image's centre of mass. Writing the map as a difference from the identity keeps
    it exact when ``linear`` and ``offset`` are zero, and exact for integer shifts.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    linear : (N, 2, 2) ndarray of float
        Inverse linear map minus the identity, acting on ``(x, y)``.
    offset : (N, 2) ndarray of float
        ``(x, y)`` offset of the source coordinate.

    Returns
    -------
    (N, 28, 28) ndarray of float32 in [0, 1]
    """
    n = len(images)
    centres = centre_of_mass(images)
    out = np.empty_like(images)
    for start in range(0, n, CHUNK):
        block = slice(start, min(start + CHUNK, n))
        # Each term of the map depends on x or on y alone: compute (n, 28) profiles and
        # broadcast them into (n, 28, 28) once.
        dx = (_GRID[None, :] - centres[block, 0:1]).astype(np.float32)
        dy = (_GRID[None, :] - centres[block, 1:2]).astype(np.float32)
        a = linear[block].astype(np.float32)
        b = offset[block].astype(np.float32)
        source_x = (
            (_GRID[None, :] + a[:, 0, 0:1] * dx + b[:, 0:1])[:, None, :]
            + (a[:, 0, 1:2] * dy)[:, :, None]
        )
        source_y = (
            (_GRID[None, :] + a[:, 1, 1:2] * dy + b[:, 1:2])[:, :, None]
            + (a[:, 1, 0:1] * dx)[:, None, :]
        )
        out[block] = bilinear(images[block], source_y, source_x)
    return np.clip(out, 0.0, 1.0, out=out)
