"""MNIST-C's blurs: Gaussian, glass, defocus, motion and zoom blur.

Quirks of MNIST-C's code that decide what these corruptions look like, kept here:

- ``skimage.filters.gaussian(x, sigma, multichannel=True)`` on a 2-D image takes the last
  axis for colour channels and blurs along the first axis only: MNIST-C's Gaussian and glass
  blurs are *vertical* (each column blurred on its own), with scikit-image's default
  ``mode="nearest"`` and ``truncate=4``. Our ``blur`` is isotropic with a blank border.
- Glass blur truncates to 8 bits between its blur and its shuffle (``np.uint8``).
- Motion blur is ImageMagick's ``-motion-blur`` (through Wand) on the 8-bit PNG: a
  one-sided Gaussian trail of ``2 ceil(radius) + 1`` taps at integer offsets along a random
  angle in [-45, 45] degrees, rounded back to 8 bits (:func:`~.mnistc_ops.motion_blur_bytes`).
- Defocus blur convolves with OpenCV's anti-aliased disk, mirrored at the border
  (``BORDER_REFLECT_101``: SciPy's ``mode="mirror"``).
- Zoom blur averages the image with its centre zooms by 1, 1 + step, ... (MNIST-C's
  ``np.arange`` lists, whose floating-point ends include 1.11 at level 1), each zoom with
  SciPy's bilinear weights applied as two matrix products (equal to ``scipy.ndimage.zoom``
  up to float rounding).

Where MNIST-C's table has several parameters, the magnitude is the one that grows with the
level (a blur's sigma or radius, the largest zoom) and the others are those of the first
level at or above the magnitude (:func:`~.mnistc_ops.step_index`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..images import check_images
from ._shared import draw_seeds, param_column, seed_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import (
    clipped_zoom,
    finish,
    gaussian_along,
    image_bits,
    levels64,
    motion_blur_bytes,
    step_index,
    to_bytes,
)


def _groups(*columns: np.ndarray):
    """Index arrays of the images sharing each distinct combination of param values."""
    keys = np.stack(columns, axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    for row, values in enumerate(unique):
        yield values, np.flatnonzero(inverse.reshape(-1) == row)


@register
class GaussianBlur(MnistcFamily):
    """MNIST-C's Gaussian blur: vertical, standard deviation ``magnitude`` pixels.

    Each column is blurred along its length (see the module note: MNIST-C's
    ``multichannel=True`` on a 2-D image), edge pixels repeated beyond the frame
    (``mode="nearest"``), kernel truncated at 4 sigma. Our ``blur`` is isotropic with a
    blank border. MNIST-C's ``gaussian_blur``: sigma = ``[1, 2, 3, 4, 6]``, default level 2.

    Params: ``sigma`` (the magnitude).
    """

    name = "gaussian_blur"
    mnistc_name = "gaussian_blur"
    unit = "px (vertical sigma)"
    description = "MNIST-C gaussian_blur: Gaussian blur along columns only (edge-repeating border)"
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 6.0)
    default_severity = 2
    magnitude_range = (0.0, 10.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"sigma": np.full(n, self.check_magnitude(magnitude))}

    def apply(self, images, params):
        images = check_images(images)
        sigma = param_column(params, "sigma", len(images), self.name)
        if (sigma < 0).any():
            raise ValueError(f"{self.name}: param 'sigma' must be >= 0")
        out = images.copy()
        for (value,), chosen in _groups(sigma):
            if value > 0:
                out[chosen] = finish(gaussian_along(levels64(images[chosen]), value, (0,), "nearest"))
        return out


def glass_permutation(seeds: np.ndarray, max_delta: int, iterations: int) -> np.ndarray:
    """Where each pixel comes from after MNIST-C's glass-blur pixel shuffle.

    MNIST-C visits, ``iterations`` times, the pixels ``(h, w)`` for ``h`` and ``w`` from
    ``28 - d`` down to ``d + 1`` (rows outer); with probability 1/2 it swaps the pixel with
    ``(h + dy, w + dx)``, ``dx, dy`` uniform integers in ``[-d, d - 1]`` (``np.random.randint
    (-d, d)``: the upper end excluded). The swaps only move values, so they compose into one
    permutation per image, computed here for the whole batch one swap step at a time.
    Draws of step ``s``: bit 63 of word ``s`` of the image's stream (:func:`image_bits`) is
    the coin, bits 32-62 give ``dx`` and bits 0-31 ``dy``.

    Returns
    -------
    (N, 784) ndarray of int64
        ``out[i, p]`` is the flat index of the pixel of image ``i`` that ends at ``p``.
    """
    n = len(seeds)
    positions = [
        (h, w)
        for h in range(28 - max_delta, max_delta, -1)
        for w in range(28 - max_delta, max_delta, -1)
    ]
    steps = iterations * len(positions)
    words = image_bits(seeds, steps).T.copy()  # (steps, N): one contiguous row per step
    span = np.uint64(2 * max_delta)
    coins = (words >> np.uint64(63)).astype(bool)
    dx = (((words >> np.uint64(32)) & np.uint64(0x7FFFFFFF)) * span >> np.uint64(31)).astype(
        np.int64
    ) - max_delta
    dy = (((words & np.uint64(0xFFFFFFFF)) * span) >> np.uint64(32)).astype(np.int64) - max_delta
    source = np.tile(np.arange(784, dtype=np.int64)[:, None], (1, n))  # (784, N)
    images = np.arange(n)
    step = 0
    for _ in range(iterations):
        for h, w in positions:
            here = h * 28 + w
            there = (h + dy[step]) * 28 + (w + dx[step])
            coin = coins[step]
            mine = source[here].copy()
            theirs = source[there, images]
            source[here] = np.where(coin, theirs, mine)
            source[there, images] = np.where(coin, mine, theirs)
            step += 1
    return source.T.copy()


#: Glass blur's (sigma, max_delta, iterations) at MNIST-C's levels 1 to 5.
GLASS_LEVELS = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


@register
class GlassBlur(MnistcFamily):
    """MNIST-C's glass blur: vertical blur, local pixel shuffle, vertical blur again.

    Steps (MNIST-C's ``glass_blur``): blur each column with a Gaussian of standard
    deviation ``sigma`` (see the module note), truncate to 8 bits, swap pixels with random
    neighbours up to ``max_delta`` away, ``iterations`` passes (:func:`glass_permutation`),
    blur again. Its table (sigma, max_delta, iterations) is (0.7, 1, 2), (0.9, 2, 1),
    (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2); the published set uses level 1.

    The magnitude is ``sigma``, the one parameter that grows with the level; the shuffle's
    radius and passes are those of the first level whose sigma is at or above the magnitude
    (level 5's beyond 1.5), so each level's sigma reproduces that level. The strength is
    therefore stepwise in the shuffle: between 0 and 0.7 px the shuffle is level 1's.
    Magnitude 0 blurs and shuffles nothing (the identity).

    Params: ``sigma``, ``max_delta``, ``iterations`` and ``seed`` (per image).
    """

    name = "glass_blur"
    mnistc_name = "glass_blur"
    unit = "px (vertical sigma)"
    description = "MNIST-C glass_blur: vertical blur, local pixel shuffle (radius and passes from MNIST-C's level), blur"
    SEVERITIES = tuple(level[0] for level in GLASS_LEVELS)
    default_severity = 1
    magnitude_range = (0.0, 3.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        _, max_delta, iterations = GLASS_LEVELS[int(step_index(self.SEVERITIES, magnitude))]
        if magnitude == 0:
            max_delta = iterations = 0
        return {
            "sigma": np.full(n, magnitude),
            "max_delta": np.full(n, float(max_delta)),
            "iterations": np.full(n, float(iterations)),
            "seed": draw_seeds(n, rng),
        }

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        sigma = param_column(params, "sigma", n, self.name)
        max_delta = param_column(params, "max_delta", n, self.name)
        iterations = param_column(params, "iterations", n, self.name)
        seeds = seed_column(params, n, self.name)
        if (sigma < 0).any() or (
            (max_delta != np.round(max_delta)) | (max_delta < 0) | (max_delta > 13)
        ).any():
            raise ValueError(f"{self.name}: params need sigma >= 0 and max_delta an integer in [0, 13]")
        if ((iterations != np.round(iterations)) | (iterations < 0)).any():
            raise ValueError(f"{self.name}: param 'iterations' must be a non-negative integer")
        out = images.copy()
        for (value, delta, passes), chosen in _groups(sigma, max_delta, iterations):
            delta, passes = int(delta), int(passes)
            if value == 0 and (delta == 0 or passes == 0):
                continue
            blurred = gaussian_along(levels64(images[chosen]), value, (0,), "nearest")
            # MNIST-C's np.uint8(... * 255) truncates; the blur of [0, 1] stays in [0, 1].
            quantised = np.minimum(np.floor(blurred * 255.0), 255.0).reshape(len(chosen), 784)
            if delta > 0 and passes > 0:
                source = glass_permutation(seeds[chosen], delta, passes)
                quantised = np.take_along_axis(quantised, source, axis=1)
            shuffled = quantised.reshape(-1, 28, 28) / 255.0
            out[chosen] = finish(gaussian_along(shuffled, value, (0,), "nearest"))
        return out


#: Defocus blur's (disk radius, anti-aliasing sigma) at MNIST-C's levels 1 to 5.
DEFOCUS_LEVELS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))


@lru_cache(maxsize=32)
def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """MNIST-C's ``disk``: a normalised disk, anti-aliased by a small Gaussian (float32).

    On a 17x17 grid up to radius 8 (3x3 Gaussian), else on ``2 ceil(r) + 1`` (5x5); the
    Gaussian is OpenCV's ``GaussianBlur`` (rows, then columns, mirrored border).
    """
    half = 8 if radius <= 8 else int(math.ceil(radius))
    size = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    x, y = np.meshgrid(grid, grid)
    disk = np.array((x**2 + y**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    taps = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(taps**2) / (2.0 * alias_blur**2))
    weights = (weights / weights.sum()).astype(np.float32)
    rows_done = ndimage.correlate1d(disk, weights, axis=1, mode="mirror")
    kernel = ndimage.correlate1d(rows_done, weights, axis=0, mode="mirror")
    kernel.flags.writeable = False  # cached: shared by every caller
    return kernel


@register
class DefocusBlur(MnistcFamily):
    """MNIST-C's defocus blur: convolution with an anti-aliased disk of radius ``magnitude``.

    The image is mirrored at the frame's border (OpenCV's ``filter2D`` default), and the
    result clipped. From radius 8 on, the disk reaches the edge of its grid and OpenCV's
    mirrored anti-aliasing adds mass to the kernel (1.3 % at radius 8, 1.1 % at 10), so
    those levels also brighten the digit slightly, as MNIST-C's do. MNIST-C's ``defocus_blur`` table
    (radius, anti-aliasing sigma): (3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5);
    default level 1 (not in the published set). The anti-aliasing sigma follows the
    radius's level (0.1 up to radius 3, 0.5 beyond). Magnitude 0 is the identity.

    Params: ``radius`` (the magnitude) and ``alias_blur``.
    """

    name = "defocus_blur"
    mnistc_name = "defocus_blur"
    unit = "px (disk radius)"
    description = "MNIST-C defocus_blur: convolution with an anti-aliased disk of this radius"
    SEVERITIES = tuple(float(level[0]) for level in DEFOCUS_LEVELS)
    default_severity = 1
    magnitude_range = (0.0, 13.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        alias = DEFOCUS_LEVELS[int(step_index(self.SEVERITIES, magnitude))][1]
        return {"radius": np.full(n, magnitude), "alias_blur": np.full(n, alias)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        radius = param_column(params, "radius", n, self.name)
        alias = param_column(params, "alias_blur", n, self.name)
        if (radius < 0).any() or (radius > 13).any() or (alias <= 0).any():
            raise ValueError(f"{self.name}: params need radius in [0, 13] and alias_blur > 0")
        out = images.copy()
        for (value, blur), chosen in _groups(radius, alias):
            if value == 0:
                continue
            kernel = defocus_kernel(float(value), float(blur)).astype(np.float64)
            blurred = ndimage.correlate(levels64(images[chosen]), kernel[None], mode="mirror")
            out[chosen] = finish(blurred)
        return out


#: Motion blur's (ImageMagick radius, sigma) at MNIST-C's levels 1 to 5.
MOTION_LEVELS = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))


@register
class MotionBlur(MnistcFamily):
    """MNIST-C's motion blur: ImageMagick's one-sided Gaussian trail at a random angle.

    Each output pixel averages the pixels ``round(w (cos a, sin a))`` away for taps
    ``w = 0 .. 2 ceil(radius)``, weighted ``exp(-w^2 / (2 sigma^2))`` (normalised); edge
    pixels repeat beyond the frame; the result is truncated to 8 bits, as MNIST-C's PNG
    round trip through ImageMagick does (:func:`~.mnistc_ops.motion_blur_bytes`). The angle ``a`` is uniform in
    [-45, 45] degrees per image (0 smears ink to the left, positive angles upwards-left).

    The magnitude is ImageMagick's ``sigma``, the length scale of the trail in pixels.
    MNIST-C's table (radius, sigma): (10, 3), (15, 5), (15, 8), (15, 12), (20, 15); the
    radius only truncates the trail and follows the sigma's level. The published set uses
    level 1. Magnitude 0 is the identity.

    Params: ``sigma`` (the magnitude), ``radius`` and ``angle`` (degrees, per image).
    """

    name = "motion_blur"
    mnistc_name = "motion_blur"
    unit = "px (trail sigma)"
    description = "MNIST-C motion_blur: ImageMagick one-sided Gaussian trail of this sigma at a random angle in [-45, 45] deg"
    SEVERITIES = tuple(float(level[1]) for level in MOTION_LEVELS)
    default_severity = 1
    magnitude_range = (0.0, 30.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        radius = MOTION_LEVELS[int(step_index(self.SEVERITIES, magnitude))][0]
        return {
            "sigma": np.full(n, magnitude),
            "radius": np.full(n, float(radius)),
            "angle": rng.uniform(-45.0, 45.0, size=n),
        }

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        sigma = param_column(params, "sigma", n, self.name)
        radius = param_column(params, "radius", n, self.name)
        angle = param_column(params, "angle", n, self.name)
        if (sigma < 0).any() or (radius <= 0).any() or (radius > 40).any():
            raise ValueError(f"{self.name}: params need sigma >= 0 and radius in (0, 40]")
        out = images.copy()
        for (value, reach), chosen in _groups(sigma, radius):
            if value > 0:
                blurred = motion_blur_bytes(to_bytes(images[chosen]), reach, value, angle[chosen])
                out[chosen] = finish(blurred / 255.0)
        return out


#: Zoom blur's (largest zoom, step), in percent, at MNIST-C's levels 1 to 5: its lists are
#: np.arange(1, 1.11, 0.01) (12 zooms, up to 1.11), (1, 1.16, .01), (1, 1.21, .02),
#: (1, 1.26, .02) and (1, 1.31, .03).
ZOOM_LEVELS = ((11, 1), (15, 1), (20, 2), (24, 2), (30, 3))


def zoom_factors(max_zoom: float, step: float) -> np.ndarray:
    """The zoom factors of zoom blur, from 1 in steps of ``step`` % up to ``max_zoom`` %.

    At MNIST-C's levels this is its ``np.arange`` list bit for bit (same start and step);
    a largest zoom between steps is added as a last factor.
    """
    step_fraction = step / 100.0
    count = int(math.floor(max_zoom / step + 1e-9))
    factors = np.arange(1.0, 1.0 + (count + 0.5) * step_fraction, step_fraction)
    if max_zoom - count * step > 1e-9:
        factors = np.append(factors, 1.0 + max_zoom / 100.0)
    return factors


@register
class ZoomBlur(MnistcFamily):
    """MNIST-C's zoom blur: the average of the digit and its centre zooms up to ``magnitude`` %.

    The image is averaged with its zooms about the frame's centre (MNIST-C's
    ``clipped_zoom``: crop the central ``ceil(28 / z)`` square, zoom bilinearly, keep the
    middle 28x28) by the factors 1, 1 + step, ..., 1 + magnitude/100 (:func:`zoom_factors`).
    MNIST-C's levels have largest zooms 11, 15, 20, 24, 30 % in steps of 1, 1, 2, 2, 3 %;
    the step follows the level; default level 5 (not in the published set). Computed in
    float32, as MNIST-C does. Magnitude 0 is the identity.

    Params: ``max_zoom`` (the magnitude, %) and ``zoom_step`` (%).
    """

    name = "zoom_blur"
    mnistc_name = "zoom_blur"
    unit = "% largest zoom"
    description = "MNIST-C zoom_blur: average of the digit and its centre zooms up to 1 + magnitude/100"
    SEVERITIES = tuple(float(level[0]) for level in ZOOM_LEVELS)
    default_severity = 5
    magnitude_range = (0.0, 100.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        step = ZOOM_LEVELS[int(step_index(self.SEVERITIES, magnitude))][1]
        return {"max_zoom": np.full(n, magnitude), "zoom_step": np.full(n, float(step))}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        max_zoom = param_column(params, "max_zoom", n, self.name)
        step = param_column(params, "zoom_step", n, self.name)
        if (max_zoom < 0).any() or (max_zoom > 100).any() or (step <= 0).any():
            raise ValueError(f"{self.name}: params need max_zoom in [0, 100] and zoom_step > 0")
        out = images.copy()
        for (largest, size), chosen in _groups(max_zoom, step):
            if largest == 0:
                continue
            factors = zoom_factors(float(largest), float(size))
            values = levels64(images[chosen]).astype(np.float32)
            total = np.zeros_like(values)
            for factor in factors:
                total += clipped_zoom(values, float(factor))
            out[chosen] = finish((values + total) / np.float32(len(factors) + 1))
        return out
