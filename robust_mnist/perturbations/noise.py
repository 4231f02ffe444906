"""Intensity perturbations: additive Gaussian noise, salt-and-pepper, Gaussian blur, occlusion.

Per-image randomness is stored as an integer ``seed`` param, and ``apply`` turns each seed
into that image's noise with the counter-based generator of :mod:`._shared`
(:func:`~._shared.random_bits`), so the noise of image ``i`` depends only on its own seed,
never on the batch it is in.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..images import check_images
from ._shared import (
    CHUNK,
    draw_seeds,
    gaussian_matrix,
    param_column,
    random_bits,
    seed_column,
    smooth_rows_and_columns,
    standard_normal,
)
from .base import Perturbation, register


def _blocks(n: int):
    for start in range(0, n, CHUNK):
        yield slice(start, min(start + CHUNK, n))


@register
class GaussianNoise(Perturbation):
    """Additive Gaussian noise of standard deviation ``magnitude``, clipped to [0, 1].

    Params: ``sd`` (the magnitude) and ``seed`` (per image).
    """

    name = "gaussian_noise"
    unit = "intensity sd"
    description = "additive Gaussian noise of this standard deviation (intensities in [0, 1]), clipped to [0, 1]"
    default_magnitudes = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
    magnitude_range = (0.0, 1.0)
    random = True
    needs_images = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        return {"sd": np.full(n, magnitude), "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        sd = param_column(params, "sd", n, self.name).astype(np.float32)
        seeds = seed_column(params, n, self.name)
        out = np.empty_like(images)
        for block in _blocks(n):
            noise = standard_normal(seeds[block], 28 * 28).reshape(-1, 28, 28)
            noise *= sd[block, None, None]
            noise += images[block]
            np.clip(noise, 0.0, 1.0, out=out[block])
        return out


@register
class SaltPepper(Perturbation):
    """Each pixel is, with probability ``magnitude``, replaced by 0 or 1 (half each).

    Params: ``fraction`` (the magnitude) and ``seed`` (per image). A replaced pixel may
    already have had that value, so the visibly changed fraction can be smaller.
    """

    name = "salt_pepper"
    unit = "fraction of pixels"
    description = "fraction of pixels replaced by 0 (pepper) or 1 (salt), half each"
    default_magnitudes = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
    magnitude_range = (0.0, 1.0)
    random = True
    needs_images = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        return {"fraction": np.full(n, magnitude), "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        fraction = param_column(params, "fraction", n, self.name)
        seeds = seed_column(params, n, self.name)
        out = np.empty_like(images)
        for block in _blocks(n):
            bits = random_bits(seeds[block], 28 * 28).reshape(-1, 28, 28)
            # Top 24 bits decide whether the pixel flips, bit 0 whether it becomes 0 or 1.
            # Comparing integers keeps fraction 0 exact and fraction 1 complete.
            threshold = np.ceil(fraction[block] * 2.0**24).astype(np.uint64)
            flip = (bits >> np.uint64(40)) < threshold[:, None, None]
            salt = (bits & np.uint64(1)).astype(np.float32)
            out[block] = np.where(flip, salt, images[block])
        return out


@register
class Blur(Perturbation):
    """Gaussian blur of standard deviation ``magnitude`` pixels.

    The background beyond the 28x28 frame counts as blank (``mode="constant"``), so ink is
    conserved except what spreads over the border. Params: ``sigma`` (the magnitude).
    """

    name = "blur"
    unit = "px (Gaussian sigma)"
    description = "Gaussian blur with this standard deviation in pixels"
    default_magnitudes = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    magnitude_range = (0.0, 10.0)
    random = False
    needs_images = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"sigma": np.full(n, self.check_magnitude(magnitude))}

    def apply(self, images, params):
        images = check_images(images)
        sigma = param_column(params, "sigma", len(images), self.name)
        if (sigma < 0).any():
            raise ValueError(f"{self.name}: param 'sigma' must be >= 0")
        out = np.empty_like(images)
        # Usually one sigma for the whole batch: one matrix, one pair of products.
        for value in np.unique(sigma):
            chosen = sigma == value
            smoothed = smooth_rows_and_columns(images[chosen], gaussian_matrix(value, "constant"))
            out[chosen] = np.clip(smoothed, 0.0, 1.0)
        return out


def _coverage(centres: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Fraction of each pixel [k - 1/2, k + 1/2] covered by [centre - size/2, centre + size/2].

    Returns (N, 28) float32: anti-aliased edges, so a size of 2.5 px paints two pixels and
    half of a third.
    """
    pixels = np.arange(28, dtype=np.float64)[None, :]
    low = (centres - size / 2)[:, None]
    high = (centres + size / 2)[:, None]
    overlap = np.minimum(high, pixels + 0.5) - np.maximum(low, pixels - 0.5)
    return np.clip(overlap, 0.0, 1.0).astype(np.float32)


@register
class Occlude(Perturbation):
    """A bar or square patch painted over the digit where it has ink.

    The magnitude is the bar's width (it spans the whole frame, like MNIST-C's stripe) or
    the patch's side, in pixels; edges are anti-aliased, so sizes need not be integers.
    Its centre is a uniformly chosen ink pixel (value >= half the image's maximum), so it
    always lies inside the digit's bounding box and covers ink.

    Options
    -------
    shape : {"bar", "patch"}
    orientation : {"vertical", "horizontal", "random"}
        Of a bar (ignored for patches); "random" picks one per image, half and half.
    value : float in [0, 1]
        What is painted: 0 erases ink (the default), 1 paints ink.

    Params: ``x``, ``y`` (centre, in pixel indices: column, row), ``size`` and, for bars,
    ``vertical`` (1 or 0).
    """

    name = "occlude"
    unit = "px"
    description = "width of a bar (or side of a square patch) painted over the digit at a random ink pixel"
    default_magnitudes = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
    magnitude_range = (0.0, 28.0)
    random = True
    needs_images = True

    SHAPES = ("bar", "patch")
    ORIENTATIONS = ("vertical", "horizontal", "random")

    def __init__(self, shape: str = "bar", orientation: str = "vertical", value: float = 0.0) -> None:
        if shape not in self.SHAPES:
            raise InvalidArgumentError(f"occlude: shape {shape!r} not in {self.SHAPES}")
        if orientation not in self.ORIENTATIONS:
            raise InvalidArgumentError(f"occlude: orientation {orientation!r} not in {self.ORIENTATIONS}")
        if not 0.0 <= float(value) <= 1.0:
            raise InvalidArgumentError(f"occlude: value {value!r} outside [0, 1]")
        self.shape, self.orientation, self.value = shape, orientation, float(value)
        self.options = {"shape": shape, "orientation": orientation, "value": self.value}

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        if images is None:
            raise ValueError("occlude: sample_params needs the images, to place the occluder on ink")
        images = check_images(images)
        if len(images) != n:
            raise ValueError(f"occlude: got {len(images)} images for n={n}")
        flat = images.reshape(n, -1)
        # A blank image has max 0: every pixel qualifies and the position is anywhere.
        ink = flat >= 0.5 * flat.max(axis=1, keepdims=True)
        rank = np.floor(rng.random(n) * ink.sum(axis=1)).astype(np.int64)
        position = np.argmax(np.cumsum(ink, axis=1) > rank[:, None], axis=1)
        params = {
            "x": (position % 28).astype(np.float64),
            "y": (position // 28).astype(np.float64),
            "size": np.full(n, magnitude),
        }
        if self.shape == "bar":
            if self.orientation == "random":
                params["vertical"] = (rng.random(n) < 0.5).astype(np.float64)
            else:
                params["vertical"] = np.full(n, float(self.orientation == "vertical"))
        return params

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        size = param_column(params, "size", n, self.name)
        if (size < 0).any():
            raise ValueError(f"{self.name}: param 'size' must be >= 0")
        across_columns = _coverage(param_column(params, "x", n, self.name), size)
        across_rows = _coverage(param_column(params, "y", n, self.name), size)
        if self.shape == "patch":
            cover = across_rows[:, :, None] * across_columns[:, None, :]
        else:
            vertical = param_column(params, "vertical", n, self.name).astype(bool)
            cover = np.where(
                vertical[:, None, None], across_columns[:, None, :], across_rows[:, :, None]
            )
        return (images * (1.0 - cover) + np.float32(self.value) * cover).astype(np.float32)
