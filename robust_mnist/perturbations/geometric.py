"""Geometric perturbations: shifts, rotation, zoom, shear and Simard's elastic distortion.

Conventions (array indices, as displayed by ``imshow``): ``x`` is the column and grows to the
right, ``y`` is the row and grows downwards. Positive ``translate_x`` moves the digit right,
positive ``translate_y`` moves it down, positive ``rotate`` turns it counter-clockwise as
seen on screen, positive ``shear`` leans its top to the right (forward slant, like italics).
Rotation, zoom and shear act about each digit's own centre of mass.

Every family warps the batch the same way (:func:`~._shared.warp_affine` and
:func:`~._shared.bilinear`): each output pixel reads the input at a source coordinate (one
coordinate map per image) by bilinear interpolation, with blank background outside the frame
(scipy's ``mode="grid-constant"``: a half-pixel shift at the border keeps half the ink).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..images import check_images
from ._shared import (
    CHUNK,
    bilinear,
    draw_seeds,
    gaussian_matrix,
    param_column,
    seed_column,
    smooth_rows_and_columns,
    uniform_pair,
    warp_affine,
)
from .base import Perturbation, register

_GRID = np.arange(28, dtype=np.float32)


class _Affine(Perturbation):
    """A family whose ``apply`` is one affine warp per image (see :func:`warp_affine`)."""

    #: The params do not depend on the digit (see :mod:`.compose`).
    needs_images = False

    def _inverse_map(self, params, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(linear, offset)`` of :func:`warp_affine` from the params."""
        raise NotImplementedError

    def apply(self, images, params):
        images = check_images(images)
        linear, offset = self._inverse_map(params, len(images))
        return warp_affine(images, linear, offset)


def _shift_map(dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Moving the digit by +d means each pixel reads from -d.
    return np.zeros((len(dx), 2, 2)), -np.stack([dx, dy], axis=1)


@register
class TranslateX(_Affine):
    """Horizontal shift by exactly ``magnitude`` pixels (positive = right). Params: ``dx``."""

    name = "translate_x"
    unit = "px"
    description = "horizontal shift (positive = right); sub-pixel shifts interpolate bilinearly"
    default_magnitudes = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)
    magnitude_range = (-28.0, 28.0)
    random = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"dx": np.full(n, self.check_magnitude(magnitude))}

    def _inverse_map(self, params, n):
        return _shift_map(param_column(params, "dx", n, self.name), np.zeros(n))


@register
class TranslateY(_Affine):
    """Vertical shift by exactly ``magnitude`` pixels (positive = down). Params: ``dy``."""

    name = "translate_y"
    unit = "px"
    description = "vertical shift (positive = down); sub-pixel shifts interpolate bilinearly"
    default_magnitudes = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)
    magnitude_range = (-28.0, 28.0)
    random = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"dy": np.full(n, self.check_magnitude(magnitude))}

    def _inverse_map(self, params, n):
        return _shift_map(np.zeros(n), param_column(params, "dy", n, self.name))


@register
class Translate(_Affine):
    """Shift by ``magnitude`` pixels in a uniformly random direction.

    Params: ``dx`` (positive = right) and ``dy`` (positive = down), with
    ``hypot(dx, dy) == magnitude``.
    """

    name = "translate"
    unit = "px"
    description = "shift of this length in a uniformly random direction"
    default_magnitudes = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    magnitude_range = (0.0, 28.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        direction = rng.uniform(0.0, 2.0 * np.pi, size=n)
        return {"dx": magnitude * np.cos(direction), "dy": magnitude * np.sin(direction)}

    def _inverse_map(self, params, n):
        return _shift_map(
            param_column(params, "dx", n, self.name), param_column(params, "dy", n, self.name)
        )


@register
class Rotate(_Affine):
    """Rotation by ``magnitude`` degrees about the centre of mass, counter-clockwise on screen.

    Params: ``angle`` (degrees).
    """

    name = "rotate"
    unit = "degrees"
    description = "rotation about the centre of mass (positive = counter-clockwise on screen)"
    default_magnitudes = (-60.0, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 60.0)
    magnitude_range = (-180.0, 180.0)
    random = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"angle": np.full(n, self.check_magnitude(magnitude))}

    def _inverse_map(self, params, n):
        angle = np.deg2rad(param_column(params, "angle", n, self.name))
        # With y pointing down, a counter-clockwise turn on screen maps (x, y) to
        # (x cos + y sin, -x sin + y cos); each output pixel reads through the inverse.
        # cos - 1 written as -2 sin^2(a/2) stays exact near zero.
        cos_minus_one = -2.0 * np.sin(angle / 2) ** 2
        sin = np.sin(angle)
        linear = np.stack(
            [np.stack([cos_minus_one, -sin], axis=1), np.stack([sin, cos_minus_one], axis=1)],
            axis=1,
        )
        return linear, np.zeros((n, 2))


@register
class Scale(_Affine):
    """Zoom about the centre of mass by ``1 + magnitude / 100``.

    The magnitude is the change of the digit's size in percent (0 = identity, +20 = 1.2
    times larger, -20 = 0.8 times the size). Params: ``zoom`` (the factor, 1 = identity).
    """

    name = "scale"
    unit = "% size change"
    description = "zoom about the centre of mass by a factor 1 + magnitude/100 (+20 = 1.2x larger)"
    default_magnitudes = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0)
    magnitude_range = (-90.0, 100.0)
    random = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"zoom": np.full(n, 1.0 + self.check_magnitude(magnitude) / 100.0)}

    def _inverse_map(self, params, n):
        zoom = param_column(params, "zoom", n, self.name)
        if (zoom <= 0).any():
            raise ValueError(f"{self.name}: param 'zoom' must be > 0")
        linear = (1.0 / zoom - 1.0)[:, None, None] * np.eye(2)
        return linear, np.zeros((n, 2))


@register
class Shear(_Affine):
    """Horizontal shear (slant) by ``magnitude`` degrees about the centre of mass.

    Rows move sideways in proportion to their height above the centre of mass,
    ``x' = x + tan(angle) * (c_y - y)``: positive angles lean the top to the right (a
    forward slant, like italics). Params: ``angle`` (degrees).
    """

    name = "shear"
    unit = "degrees"
    description = "horizontal shear (slant) about the centre of mass (positive = top leans right)"
    default_magnitudes = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0)
    magnitude_range = (-60.0, 60.0)
    random = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"angle": np.full(n, self.check_magnitude(magnitude))}

    def _inverse_map(self, params, n):
        slope = np.tan(np.deg2rad(param_column(params, "angle", n, self.name)))
        linear = np.zeros((n, 2, 2))
        linear[:, 0, 1] = slope
        return linear, np.zeros((n, 2))


@register
class Elastic(Perturbation):
    """Elastic distortion of Simard, Steinkraus and Platt (2003).

    Two fields of independent uniform [-1, 1] values per pixel are smoothed by a Gaussian of
    standard deviation ``sigma`` pixels (blank beyond the frame, as in the widely used
    reference implementation, with ``scipy.ndimage.gaussian_filter``'s truncation) and multiplied by ``alpha = magnitude``; each output pixel
    reads the input at its own position plus that displacement. With the default sigma = 4 px
    the displacement's root mean square per axis is about 0.04 * alpha px (alpha = 34, the
    paper's setting for MNIST, moves pixels by about 1.3 px per axis).

    Options
    -------
    sigma : float > 0
        Smoothing of the displacement field, in pixels (default 4, as in the paper).

    Params: ``alpha`` (the magnitude) and ``seed`` (per image).
    """

    name = "elastic"
    unit = "px (alpha)"
    description = "Simard et al. (2003) elastic distortion: smoothed random field (sigma option, default 4 px) scaled by alpha"
    default_magnitudes = (0.0, 8.0, 16.0, 24.0, 34.0, 48.0, 64.0)
    magnitude_range = (0.0, 300.0)
    random = True
    needs_images = False

    def __init__(self, sigma: float = 4.0) -> None:
        if not (np.isfinite(sigma) and float(sigma) > 0):
            raise InvalidArgumentError(f"elastic: sigma {sigma!r} must be a positive number of pixels")
        self.sigma = float(sigma)
        self.options = {"sigma": self.sigma}

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        return {"alpha": np.full(n, magnitude), "seed": draw_seeds(n, rng)}

    def displacement(self, alpha: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``(dx, dy)`` displacement fields, each (N, 28, 28) float32, in pixels.

        Parameters
        ----------
        alpha : (N,) ndarray of float
        seeds : (N,) ndarray of int
        """
        n = len(seeds)
        kernel = gaussian_matrix(self.sigma, "constant")
        high, low = uniform_pair(seeds, 28 * 28)
        scale = np.asarray(alpha, dtype=np.float32)[:, None, None]
        dx, dy = (
            smooth_rows_and_columns((2.0 * uniform - 1.0).reshape(n, 28, 28), kernel) * scale
            for uniform in (high, low)
        )
        return dx, dy

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        alpha = param_column(params, "alpha", n, self.name)
        seeds = seed_column(params, n, self.name)
        out = np.empty_like(images)
        for start in range(0, n, CHUNK):
            block = slice(start, min(start + CHUNK, n))
            dx, dy = self.displacement(alpha[block], seeds[block])
            out[block] = bilinear(images[block], _GRID[:, None] + dy, _GRID[None, :] + dx)
        return np.clip(out, 0.0, 1.0, out=out)
