"""MNIST-C's geometric corruptions: shear, rotate, scale, translate and its elastic transform.

MNIST-C builds each affine map with ``skimage.transform.AffineTransform`` and a translation
that keeps the frame's centre (13.5, 13.5) fixed, and warps with ``skimage.transform.warp``
(bilinear, blank outside): each output pixel ``(x, y)`` (column, row) reads the input at
``A (x, y) + t``. The parameter is fixed by the severity; only its sign is random (shear,
rotate: one sign per image; translate: one per axis). Our own ``shear``, ``rotate``,
``scale`` and ``translate`` differ: they act about each digit's centre of mass, take a
signed magnitude swept continuously (translate: a length in a random direction), and our
shear is a pure slant. Hence the ``mnistc_`` prefix here.

``AffineTransform(shear=c)`` is taken as scikit-image defined it when MNIST-C was made
(before 0.21): the matrix ``[[1, -sin c], [0, cos c]]``, a slant of ``sin c`` per row with
a vertical squash by ``cos c``; scikit-image 0.21+ reads ``shear`` as ``[[1, -tan c], [0,
1]]``, which would be a different corruption.
"""

from __future__ import annotations

import numpy as np

from ..images import check_images
from ._shared import draw_seeds, param_column, seed_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import (
    bilinear64,
    blocks,
    finish,
    image_bits,
    interpolate_levels,
    levels64,
    smoothing_matrix,
    uniforms,
)

_GRID = np.arange(28, dtype=np.float64)
_RADIANS = (0.2, 0.4, 0.6, 0.8, 1.0)  # MNIST-C's c for shear and rotate


def _radians(degrees: np.ndarray) -> np.ndarray:
    # Rounded so that the degrees of MNIST-C's 0.4 rad give back exactly 0.4.
    return np.round(np.deg2rad(degrees), 12)


def warp_centred(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """``skimage.transform.warp`` of each image by ``A p + t`` with ``t`` fixing (13.5, 13.5).

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    matrices : (N, 2, 2) ndarray of float64
        ``A``, acting on ``(x, y)`` = (column, row) of the output pixel.

    Returns
    -------
    (N, 28, 28) ndarray of float32 in [0, 1]
    """
    values = levels64(images)
    out = np.empty(images.shape, np.float32)
    for block in blocks(len(images)):
        a = matrices[block]
        # MNIST-C's a3 = 13.5 (1 - a1 - a2), b3 = 13.5 (1 - b1 - b2).
        shift_x = 13.5 * (1 - a[:, 0, 0] - a[:, 0, 1])
        shift_y = 13.5 * (1 - a[:, 1, 0] - a[:, 1, 1])
        x = _GRID[None, None, :]
        y = _GRID[None, :, None]
        # skimage's order of operations: H0 x + H1 y + H2.
        source_x = a[:, 0, 0, None, None] * x + a[:, 0, 1, None, None] * y + shift_x[:, None, None]
        source_y = a[:, 1, 0, None, None] * x + a[:, 1, 1, None, None] * y + shift_y[:, None, None]
        out[block] = finish(bilinear64(values[block], source_y, source_x))
    return out


class _SignedAngle(MnistcFamily):
    """Shared sampling of shear and rotate: MNIST-C's fixed angle with a random sign."""

    unit = "degrees"
    SEVERITIES = tuple(float(np.rad2deg(value)) for value in _RADIANS)
    default_severity = 2
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        sign = rng.choice(np.array([-1.0, 1.0]), size=n)
        return {"angle": sign * magnitude}

    def _matrices(self, radians: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply(self, images, params):
        images = check_images(images)
        angle = param_column(params, "angle", len(images), self.name)
        out = images.copy()
        turned = np.flatnonzero(angle != 0)
        if turned.size:
            out[turned] = warp_centred(images[turned], self._matrices(_radians(angle[turned])))
        return out


@register
class MnistcShear(_SignedAngle):
    """MNIST-C's shear: ``AffineTransform(shear=c)`` about the frame centre, random sign.

    Each output pixel reads the input at ``x - sin(c) (y - 13.5)``, ``13.5 + cos(c) (y -
    13.5)``: rows slide sideways by ``sin c`` per row and the digit is stretched vertically
    by ``1 / cos c`` (scikit-image's pre-0.21 shear; see the module note). Positive ``c``
    leans the top to the left. MNIST-C: ``c = [0.2, 0.4, 0.6, 0.8, 1.0]`` radians, so
    ``SEVERITIES`` are 11.46, 22.92, 34.38, 45.84, 57.30 degrees; the sign is +-1 with
    probability 1/2; the published set uses level 2 (0.4 rad). Our ``shear`` is a pure slant
    ``tan(angle)`` about the centre of mass, signed, without the squash.

    Params: ``angle`` (degrees, signed).
    """

    name = "mnistc_shear"
    mnistc_name = "shear"
    description = "MNIST-C shear: skimage shear angle (slant sin c, squash cos c) about the frame centre, random sign"
    magnitude_range = (0.0, 80.0)

    def _matrices(self, radians):
        matrices = np.zeros((len(radians), 2, 2))
        matrices[:, 0, 0] = 1.0
        matrices[:, 0, 1] = -np.sin(radians)
        matrices[:, 1, 1] = np.cos(radians)
        return matrices


@register
class MnistcRotate(_SignedAngle):
    """MNIST-C's rotate: rotation by a fixed angle about the frame centre, random sign.

    Each output pixel reads the input at ``R(c) (p - 13.5) + 13.5`` with ``R(c) = [[cos c,
    -sin c], [sin c, cos c]]``: positive ``c`` turns the digit counter-clockwise on screen
    (our ``rotate``'s convention). MNIST-C: ``c = [0.2, 0.4, 0.6, 0.8, 1.0]`` radians
    (11.46 to 57.30 degrees), the angle is exactly ``+c`` or ``-c`` (probability 1/2 each,
    not a range), and the published set uses level 2 (0.4 rad = 22.92 degrees). Our
    ``rotate`` turns about the centre of mass by a signed magnitude.

    Params: ``angle`` (degrees, signed).
    """

    name = "mnistc_rotate"
    mnistc_name = "rotate"
    description = "MNIST-C rotate: rotation by +-magnitude about the frame centre (sign random)"
    magnitude_range = (0.0, 180.0)

    def _matrices(self, radians):
        cos, sin = np.cos(radians), np.sin(radians)
        return np.stack([np.stack([cos, -sin], axis=1), np.stack([sin, cos], axis=1)], axis=1)


@register
class MnistcScale(MnistcFamily):
    """MNIST-C's scale: the digit shrunk about the frame centre by ``magnitude`` percent.

    Each output pixel reads the input at ``13.5 + (p - 13.5) / zoom`` with ``zoom = 1 -
    magnitude / 100`` (MNIST-C's ``AffineTransform(scale=1/zoom)`` as the inverse map).
    MNIST-C: ``zoom = [.9, .8, .7, .6, .5]``, so ``SEVERITIES = (10, 20, 30, 40, 50)``;
    always smaller, no randomness; the published set uses level 3 (0.7). Our ``scale``
    zooms about the centre of mass by a signed percentage.

    Params: ``zoom`` (the size factor, 1 = identity).
    """

    name = "mnistc_scale"
    mnistc_name = "scale"
    unit = "% size reduction"
    description = "MNIST-C scale: the digit shrunk about the frame centre by this percentage"
    SEVERITIES = (10.0, 20.0, 30.0, 40.0, 50.0)
    default_severity = 3
    magnitude_range = (0.0, 90.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        # 1 - 30/100 is MNIST-C's .7 to the last bit, and so for every table level.
        return {"zoom": np.full(n, 1.0 - magnitude / 100.0)}

    def apply(self, images, params):
        images = check_images(images)
        zoom = param_column(params, "zoom", len(images), self.name)
        if (zoom <= 0).any():
            raise ValueError(f"{self.name}: param 'zoom' must be > 0")
        out = images.copy()
        scaled = np.flatnonzero(zoom != 1)
        if scaled.size:
            matrices = (1.0 / zoom[scaled])[:, None, None] * np.eye(2)
            out[scaled] = warp_centred(images[scaled], matrices)
        return out


@register
class MnistcTranslate(MnistcFamily):
    """MNIST-C's translate: a shift by exactly ``magnitude`` pixels along *both* axes.

    The digit moves by ``(+-c, +-c)``, the two signs independent and each +-1 with
    probability 1/2: a diagonal shift of length ``c sqrt 2``, never along one axis only.
    Integer magnitudes move whole pixels (what leaves the frame is lost, blank enters).
    MNIST-C: ``c = [1, 2, 3, 4, 5]``; the published set uses level 3. Our ``translate``
    shifts by the magnitude in a uniformly random direction.

    Params: ``dx`` (positive = right) and ``dy`` (positive = down), in pixels.
    """

    name = "mnistc_translate"
    mnistc_name = "translate"
    unit = "px per axis"
    description = "MNIST-C translate: shift by +-magnitude px along both axes (signs random)"
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)
    default_severity = 3
    magnitude_range = (0.0, 28.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(2, n))
        return {"dx": signs[0] * magnitude, "dy": signs[1] * magnitude}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        dx = param_column(params, "dx", n, self.name)
        dy = param_column(params, "dy", n, self.name)
        out = images.copy()
        moved = np.flatnonzero((dx != 0) | (dy != 0))
        for block in blocks(moved.size):
            chosen = moved[block]
            shape = (chosen.size, 28, 28)
            source_x = np.broadcast_to(_GRID[None, None, :] - dx[chosen, None, None], shape)
            source_y = np.broadcast_to(_GRID[None, :, None] - dy[chosen, None, None], shape)
            out[chosen] = finish(bilinear64(levels64(images[chosen]), source_y, source_x))
        return out


#: Elastic transform's (alpha, sigma, affine): the identity, then MNIST-C's levels 1 to 5,
#: written as MNIST-C writes them (28 * fraction) to get its floating-point values.
ELASTIC_LEVELS = (
    (0.0, 28 * 0.7, 0.0),
    (28 * 2, 28 * 0.7, 28 * 0.1),
    (28 * 2, 28 * 0.08, 28 * 0.2),
    (28 * 0.05, 28 * 0.01, 28 * 0.02),
    (28 * 0.07, 28 * 0.01, 28 * 0.02),
    (28 * 0.12, 28 * 0.01, 28 * 0.02),
)
_ANCHORS = np.array([[23.0, 23.0], [23.0, 5.0], [5.0, 5.0]], dtype=np.float32)


def opencv_warp_affine(images: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """OpenCV's ``warpAffine(image, M, (28, 28))``: bilinear, blank border, float32.

    OpenCV inverts ``M`` (``invertAffineTransform``), computes each source position in
    fixed point (1/1024 px, rounded to 1/32 px) and interpolates with float32 weights that
    are multiples of 1/32.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32
    forward : (N, 2, 3) ndarray of float64
        The maps ``M`` from input to output coordinates ``(x, y)``.
    """
    m = forward
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    det = np.where(det != 0, 1.0 / np.where(det != 0, det, 1.0), 0.0)
    a11, a22 = m[:, 1, 1] * det, m[:, 0, 0] * det
    a12, a21 = -m[:, 0, 1] * det, -m[:, 1, 0] * det
    b1 = -a11 * m[:, 0, 2] - a12 * m[:, 1, 2]
    b2 = -a21 * m[:, 0, 2] - a22 * m[:, 1, 2]
    scale = 1024.0
    x = _GRID[None, None, :]
    y = _GRID[None, :, None]
    fixed_x = (np.rint((a12[:, None, None] * y + b1[:, None, None]) * scale) + 16) + np.rint(
        a11[:, None, None] * x * scale
    )
    fixed_y = (np.rint((a22[:, None, None] * y + b2[:, None, None]) * scale) + 16) + np.rint(
        a21[:, None, None] * x * scale
    )
    fine_x = np.floor(fixed_x / 32.0)  # position in 1/32 px: OpenCV's ">> 5"
    fine_y = np.floor(fixed_y / 32.0)
    column, frac_x = np.floor(fine_x / 32.0), np.mod(fine_x, 32.0) / np.float32(32.0)
    row, frac_y = np.floor(fine_y / 32.0), np.mod(fine_y, 32.0) / np.float32(32.0)
    n = len(images)
    padded = np.zeros((n, 31, 31), np.float32)
    padded[:, 1:29, 1:29] = images
    flat = padded.reshape(-1)
    inside = (column >= -1) & (column <= 27) & (row >= -1) & (row <= 27)
    index = np.clip(row, -1, 27).astype(np.int64) * 31 + np.clip(column, -1, 27).astype(np.int64)
    index += (np.arange(n, dtype=np.int64) * 31 * 31 + 32)[:, None, None]
    fx = frac_x.astype(np.float32)
    fy = frac_y.astype(np.float32)
    one = np.float32(1.0)
    value = (
        flat.take(index) * ((one - fy) * (one - fx))
        + flat.take(index + 1) * ((one - fy) * fx)
        + flat.take(index + 31) * (fy * (one - fx))
        + flat.take(index + 32) * (fy * fx)
    )
    return np.where(inside, value, np.float32(0.0)).astype(np.float32)


@register
class ElasticTransform(MnistcFamily):
    """MNIST-C's elastic transform: a random affine map, then a smoothed random displacement.

    The three points (23, 23), (23, 5), (5, 5) are moved by uniform offsets in ``[-affine,
    affine]`` px and the image warped by the affine map between the two triangles (OpenCV's
    ``warpAffine``, :func:`opencv_warp_affine`); then two fields of uniform [-1, 1] values,
    smoothed by a Gaussian of ``sigma`` px (mirrored border, truncated at 3 sigma) and
    multiplied by ``alpha``, displace each pixel's reading position (bilinear, blank
    outside the frame). MNIST-C's table (alpha, sigma, affine) is 28 times (2, .7, .1),
    (2, .08, .2), (.05, .01, .02), (.07, .01, .02), (.12, .01, .02): levels 1 and 2 are
    large smooth warps, 3 to 5 nearly per-pixel jitter; default level 1 (not in the
    published set). Our ``elastic`` is Simard's field alone, blank border, no affine part.

    The magnitude is the severity, continuous (parameters linear between levels; below 1,
    level 1's alpha and affine offsets scaled by the magnitude; 0 is the identity).

    Params: ``alpha``, ``sigma``, ``affine`` and ``seed`` (per image).
    """

    name = "elastic_transform"
    mnistc_name = "elastic_transform"
    unit = "MNIST-C severity"
    description = "MNIST-C elastic_transform: random affine map then smoothed random displacement; magnitude = severity"
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)
    default_severity = 1
    magnitude_range = (0.0, 5.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        alpha, sigma, affine = interpolate_levels(np.array(ELASTIC_LEVELS), np.full(n, magnitude)).T
        return {"alpha": alpha, "sigma": sigma, "affine": affine, "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        alpha = param_column(params, "alpha", n, self.name)
        sigma = param_column(params, "sigma", n, self.name)
        affine = param_column(params, "affine", n, self.name)
        seeds = seed_column(params, n, self.name)
        if (sigma <= 0).any():
            raise ValueError(f"{self.name}: param 'sigma' must be > 0")
        out = images.copy()
        moved = np.flatnonzero((alpha != 0) | (affine != 0))
        for block in blocks(moved.size):
            chosen = moved[block]
            out[chosen] = self._warp(
                images[chosen], alpha[chosen], sigma[chosen], affine[chosen], seeds[chosen]
            )
        return out

    @staticmethod
    def _warp(images, alpha, sigma, affine, seeds) -> np.ndarray:
        draws = 2.0 * uniforms(image_bits(seeds, 2 * 784 + 6)) - 1.0
        offsets = (draws[:, :6].reshape(-1, 3, 2) * affine[:, None, None]).astype(np.float32)
        target = (_ANCHORS[None] + offsets).astype(np.float64)
        source = np.concatenate([_ANCHORS.astype(np.float64), np.ones((3, 1))], axis=1)
        forward = np.linalg.solve(source[None], target).transpose(0, 2, 1)  # (N, 2, 3)
        warped = opencv_warp_affine(levels64(images).astype(np.float32), forward)
        fields = draws[:, 6:].reshape(-1, 2, 28, 28)
        out = np.empty(images.shape, np.float32)
        for value in np.unique(sigma):
            chosen = np.flatnonzero(sigma == value)
            strength = alpha[chosen, None, None]
            # skimage's gaussian(mode="reflect", truncate=3) as one matrix per axis: at
            # sigma 19.6 its 119 taps per pixel would dominate the cost.
            kernel = smoothing_matrix(float(value), "reflect", 3.0)
            dx = (kernel @ fields[chosen, 0] @ kernel.T * strength).astype(np.float32)
            dy = (kernel @ fields[chosen, 1] @ kernel.T * strength).astype(np.float32)
            source_y = _GRID[None, :, None] + dy
            source_x = _GRID[None, None, :] + dx
            # scipy's map_coordinates(order=1, mode="constant"): bilinear inside the frame
            # (blank neighbours beyond it), 0 wherever the position itself is outside.
            outside = (source_y < 0) | (source_y > 27) | (source_x < 0) | (source_x > 27)
            sampled = bilinear64(warped[chosen], source_y, source_x)
            out[chosen] = finish(np.where(outside, 0.0, sampled))
        return out
