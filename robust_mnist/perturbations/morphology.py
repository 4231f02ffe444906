"""Stroke thinning and thickening, as Morpho-MNIST does them, at sub-pixel resolution.

Morpho-MNIST (Castro et al. 2019) upsamples a digit 4 times, binarises it, erodes or dilates
the mask with a disk of radius ``r`` and downsamples the result: every stroke loses or gains
``2 r / 4`` pixels of thickness. Here:

- **Magnitude**: the change of stroke thickness, in pixels of the 28x28 image (``thin`` by 1
  turns a 3 px stroke into a 2 px one). With ``relative=True`` it is a fraction of each
  digit's measured thickness (Morpho-MNIST's ``amount``: ``thin`` by 0.5 halves it).
  Magnitude 0 returns the input unchanged.
- **Operation**: the digit is upsampled 4x (bilinear) and eroded (``thin``) or dilated
  (``thicken``) by a disk of radius ``2 * change`` 4x-pixels, as a *grey-level* erosion or
  dilation (a minimum or maximum filter over the disk). That is Morpho-MNIST's binary
  operation applied at every binarisation threshold at once: the stroke edge moves by the
  same distance at every intensity, so the 4x result binarised at any threshold is exactly
  Morpho-MNIST's eroded (dilated) mask, and the anti-aliased edge keeps its profile. A
  radius between two integers blends the results for the two neighbouring disks linearly,
  so the output changes smoothly with the magnitude.
- **Back to 28x28**: the 4x result is block-averaged and then deconvolved by the blur that
  bilinear upsampling followed by block-averaging applies (``[1/8, 3/4, 1/8]`` along each
  axis), i.e. the output is the 28x28 image whose own 4x upsampling block-averages to the
  eroded (dilated) image; at radius 0 that is the input itself. Then ``thin`` keeps the
  pixelwise minimum with the input and ``thicken`` the maximum, so thinning never adds
  ink and thickening never removes any. (The deconvolution sharpens edges and can ring:
  between two magnitudes a pixel may move against the trend by up to about 0.1, though the
  total ink always follows it.)
- **Never erased**: ``thin`` keeps, whatever the magnitude, the original intensity on the
  skeleton of the binarised 4x digit and its 8 neighbours: a stroke that measures about
  one pixel. Param ``saturated`` is 1 when that floor was needed, i.e. when the requested
  erosion would have cut the binarised stroke at some skeleton pixel.
- **Measured**: params ``thickness_before`` and ``thickness_after`` are the stroke
  thickness of the input and of the output as :func:`robust_mnist.morphometrics.thickness`
  measures them (NaN for a blank image); ``change`` is the requested change in pixels.
  On straight strokes the measurement moves in steps of 0.5 px (it reads distances on the
  4x grid), so compare it with the magnitude over many digits or whole pixels.

``sample_params`` needs the images (it measures them, and runs the operation to record the
achieved thickness); the result is kept, so the ``apply`` that follows with the same images
and params does not compute it again. ``apply`` depends only on ``change``.

Speed: each digit is processed in a crop around its ink, digits of similar size together,
and the batch is split over two threads. The costly steps (the disk filter, the thinning and
the distances of the two thickness measurements) are compiled kernels
(:mod:`robust_mnist.kernels`) that release the GIL, so two threads run about 1.6 to 2 times
as fast as one.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.linalg import solve_banded

from .. import morphometrics
from ..errors import InvalidArgumentError
from ..images import check_images
from ..kernels import disk_filter
from ..morphometrics import SCALE, binarise, downsample, map_crops, skeletons, upsample
from ._shared import param_column
from .base import Perturbation, register

#: Images per thread task: large enough to amortise Python overhead, small enough to balance.
CHUNK = 512
#: Outputs of recent ``sample_params`` calls, reused by the ``apply`` that follows.
_CACHE_SIZE = 4


def thin(images: np.ndarray, change: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin each digit's strokes by ``change`` pixels (see the module docstring).

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    change : (N,) ndarray of float
        Decrease of stroke thickness, in pixels, >= 0.

    Returns
    -------
    thinned : (N, 28, 28) ndarray of float32 in [0, 1]
    thickness_before : (N,) ndarray of float64
        The input's measured thickness.
    saturated : (N,) ndarray of bool
        Where the one-pixel floor stopped the thinning somewhere along the stroke.
    """
    images = check_images(images)
    result = _transform(images, thinning=True, change=_check_change(change, len(images)))
    return result["out"], result["before"], result["saturated"]


def thicken(images: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Thicken each digit's strokes by ``change`` pixels (see the module docstring).

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    change : (N,) ndarray of float
        Increase of stroke thickness, in pixels, >= 0.

    Returns
    -------
    (N, 28, 28) ndarray of float32 in [0, 1]
    """
    images = check_images(images)
    return _transform(images, thinning=False, change=_check_change(change, len(images)))["out"]


def _check_change(change, n: int, family: str = "change") -> np.ndarray:
    change = np.asarray(change, dtype=np.float64)
    if change.shape != (n,) or not np.isfinite(change).all() or (n and change.min() < 0):
        raise ValueError(f"{family}: need {n} finite changes >= 0 px; got shape {change.shape}")
    return change


def _transform(images, thinning: bool, change=None, fraction=None, measure=False) -> dict:
    """Thin or thicken by ``change`` px, or by ``fraction`` of each digit's thickness.

    Works crop group by crop group (:func:`robust_mnist.morphometrics.map_crops`), on up to
    two threads. Returns a dict of ``out`` and, per image, ``change`` (px), ``before`` (the
    input's thickness, measured when thinning, when ``fraction`` is given or when
    ``measure`` is set), ``saturated`` (thin) and ``after`` (the output's thickness, when
    ``measure`` is set). Measured on the crops, which gives exactly what
    :func:`robust_mnist.morphometrics.thickness` gives on the full images.
    """
    n = len(images)
    result = {
        "out": np.empty_like(images),
        "change": np.zeros(n) if change is None else change,
        "before": np.full(n, np.nan),
        "after": np.full(n, np.nan),
        "saturated": np.zeros(n, dtype=bool),
    }
    needs_before = thinning or measure or fraction is not None
    if fraction is not None and not thinning:
        # How far the dilation reaches depends on the thickness: measure it first.
        def measure_before(block):
            result["before"][block] = morphometrics.thickness(images[block])

        _in_chunks(measure_before, n)
        result["change"] = fraction * np.nan_to_num(result["before"])
        fraction, needs_before = None, False

    def per_group(crops, index, inside):
        hires = upsample(crops)
        if needs_before:
            mask = binarise(hires)
            skeleton, pixels = skeletons(mask, return_pixels=True)
            result["before"][index] = morphometrics.stroke_thickness(mask, skeleton, pixels=pixels)
        if fraction is not None:
            result["change"][index] = fraction * np.nan_to_num(result["before"][index])
        amount = result["change"][index]
        if thinning:
            out, result["saturated"][index] = _thin_crops(crops, hires, pixels, amount)
        else:
            out = _thicken_crops(crops, hires, amount)
        if measure:
            # Only what lands in the frame counts (thickening can reach past its edge).
            result["after"][index] = morphometrics.crop_thickness(np.where(inside, out, 0))
        return out

    def work(block):
        if thinning:
            # Erosion never reaches beyond the ink: one black pixel around it is enough.
            margin = 1
        else:
            # The dilation reaches change / 2 px beyond the ink: keep it inside the crop.
            margin = 1 + np.ceil(result["change"][block] / 2).astype(int)
        result["out"][block] = map_crops(
            lambda crops, index, inside: per_group(crops, index + block.start, inside),
            images[block],
            margin,
        )

    _in_chunks(work, n)
    return result


def _thin_crops(crops, hires, pixels, change):
    """Thinned crops, and whether the one-pixel floor was needed."""
    image, row, col = pixels
    eroded = _grey_morphology(hires, SCALE / 2 * change, erode=True)
    threshold = morphometrics.THRESHOLD * hires.max(axis=(1, 2))
    cut = eroded[image, row, col] < threshold[image]
    saturated = np.bincount(image[cut], minlength=len(crops)) > 0
    # The floor: the original intensity on the skeleton and its 8 neighbours (the skeleton
    # stays inside the mask, which stays a 4x pixel inside the crop: no index leaves it).
    _, height, width = hires.shape
    dy, dx = np.divmod(np.arange(9), 3)
    band = (((image * height + row) * width + col)[:, None] + (dy - 1) * width + (dx - 1)).ravel()
    flat = eroded.reshape(-1)  # a view: both arrays are C-contiguous
    flat[band] = np.maximum(flat[band], hires.reshape(-1)[band])
    thinned = np.clip(np.minimum(crops, _from_block_means(downsample(eroded))), 0.0, 1.0)
    unchanged = change == 0
    thinned[unchanged] = crops[unchanged]
    return thinned, saturated


def _thicken_crops(crops, hires, change):
    dilated = _grey_morphology(hires, SCALE / 2 * change, erode=False)
    thickened = np.clip(np.maximum(crops, _from_block_means(downsample(dilated))), 0.0, 1.0)
    unchanged = change == 0
    thickened[unchanged] = crops[unchanged]
    return thickened


def _from_block_means(means: np.ndarray) -> np.ndarray:
    """The images whose bilinear 4x upsampling has these 4x4 block means.

    ``downsample(upsample(x))`` blurs ``x`` by ``[1/8, 3/4, 1/8]`` along each axis (black
    outside); this solves that tridiagonal system along rows, then columns. The system is
    diagonally dominant, so the solution is stable and exact up to rounding. Pixels whose
    block holds no ink at all are set to 0: the inverse of the blur rings (about 0.17 of an
    edge's height one pixel out, alternating in sign), and a faint halo where there is no
    ink would be an artefact.
    """
    n, height, width = means.shape
    out = np.moveaxis(means.astype(np.float64), 1, 0).reshape(height, -1)
    out = solve_banded((1, 1), _blur_bands(height), out).reshape(height, n, width)
    out = np.moveaxis(out, 2, 0).reshape(width, -1)
    out = solve_banded((1, 1), _blur_bands(width), out).reshape(width, height, n)
    out = np.ascontiguousarray(out.transpose(2, 1, 0), dtype=np.float32)
    out[means <= 0] = 0.0
    return out


def _blur_bands(size: int) -> np.ndarray:
    bands = np.zeros((3, size))
    bands[0, 1:] = bands[2, :-1] = 1 / 8
    bands[1] = 3 / 4
    return bands


def _grey_morphology(hires: np.ndarray, radius: np.ndarray, erode: bool) -> np.ndarray:
    """Grey erosion (or dilation) of each image by a disk of its own real radius.

    A radius ``r = k + f`` (``k`` integer, ``0 <= f < 1``) blends the results for the disks of
    radius ``k`` and ``k + 1`` with weights ``1 - f`` and ``f``.
    """
    out = np.zeros(hires.shape, dtype=hires.dtype)  # C-contiguous, whatever hires is
    lower = np.floor(radius).astype(int)
    fraction = (radius - lower).astype(np.float32)
    for r in np.unique(np.concatenate([lower, lower[fraction > 0] + 1])):
        weight = np.where(lower == r, 1 - fraction, 0) + np.where(lower + 1 == r, fraction, 0)
        chosen = np.flatnonzero(weight > 0)
        if len(chosen):
            result = disk_filter(hires[chosen], int(r), erode)
            out[chosen] += weight[chosen, None, None].astype(np.float32) * result
    return out


def _workers() -> int:
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, min(2, os.cpu_count() or 1))


def _in_chunks(function, n: int) -> None:
    """Call ``function(block)`` for consecutive slices of ``range(n)``, on up to two threads.

    Every operation here is per image (with crops that depend only on the image), so the
    chunking never changes a result.
    """
    blocks = [slice(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]
    workers = _workers()
    if len(blocks) <= 1 or workers == 1:
        for block in blocks:
            function(block)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(function, blocks))


class _StrokeMorphology(Perturbation):
    random = False
    thins: bool
    relative_range: tuple[float, float]
    relative_magnitudes: tuple[float, ...]

    def __init__(self, relative: bool = False) -> None:
        if not isinstance(relative, (bool, np.bool_)):
            raise InvalidArgumentError(f"{self.name}: option relative must be True or False; got {relative!r}")
        self.options = {"relative": bool(relative)}
        if relative:
            # Instance attributes shadow the class's absolute-pixel metadata.
            self.unit = "fraction of thickness"
            self.magnitude_range = self.relative_range
            self.default_magnitudes = self.relative_magnitudes
        self._recent: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        if images is None:
            raise ValueError(f"{self.name}: sample_params needs the images (it measures their strokes)")
        images = check_images(images)
        if len(images) != n:
            raise ValueError(f"{self.name}: got {len(images)} images for n={n}")
        if self.options["relative"]:
            result = _transform(images, self.thins, fraction=magnitude, measure=True)
        else:
            result = _transform(images, self.thins, change=np.full(n, magnitude), measure=True)
        self._recent[self._key(images, result["change"])] = result["out"]
        while len(self._recent) > _CACHE_SIZE:
            self._recent.popitem(last=False)
        params = {
            "change": result["change"],
            "thickness_before": result["before"],
            "thickness_after": result["after"],
        }
        if self.thins:
            params["saturated"] = result["saturated"].astype(np.float64)
        return params

    def apply(self, images: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        images = check_images(images)
        change = _check_change(param_column(params, "change", len(images), self.name), len(images), self.name)
        if not change.any():
            return images.copy()
        # The output of the sample_params call that made these params, if it was this one.
        recent = self._recent.pop(self._key(images, change), None)
        return recent if recent is not None else _transform(images, self.thins, change=change)["out"]

    def _key(self, images: np.ndarray, change: np.ndarray) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.name}{images.shape}".encode())
        digest.update(np.ascontiguousarray(images).data)
        digest.update(np.ascontiguousarray(change, dtype=np.float64).data)
        return digest.digest()


@register
class Thin(_StrokeMorphology):
    """Thin the strokes by ``magnitude`` pixels, or a fraction of the thickness (see module).

    Params: ``change`` (px, the requested decrease), ``thickness_before`` and
    ``thickness_after`` (px, measured), ``saturated`` (1 where the one-pixel floor held).
    """

    name = "thin"
    unit = "px"
    description = (
        "decrease of stroke thickness in pixels (Morpho-MNIST erosion at 4x; strokes stop at "
        "about 1 px); relative=True: fraction of the digit's thickness"
    )
    default_magnitudes = (0.0, 0.5, 1.0, 1.5, 2.0)
    magnitude_range = (0.0, 10.0)
    relative_range = (0.0, 1.0)
    relative_magnitudes = (0.0, 0.2, 0.4, 0.6, 0.8)
    thins = True


@register
class Thicken(_StrokeMorphology):
    """Thicken the strokes by ``magnitude`` pixels, or a fraction of the thickness (see module).

    Params: ``change`` (px, the requested increase), ``thickness_before`` and
    ``thickness_after`` (px, measured).
    """

    name = "thicken"
    unit = "px"
    description = (
        "increase of stroke thickness in pixels (Morpho-MNIST dilation at 4x); "
        "relative=True: fraction of the digit's thickness"
    )
    default_magnitudes = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
    magnitude_range = (0.0, 10.0)
    relative_range = (0.0, 3.0)
    relative_magnitudes = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    thins = False
