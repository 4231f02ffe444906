"""MNIST-C's canny_edges: the digit replaced by its Canny edge map, for a whole batch at once.

MNIST-C calls ``skimage.feature.canny`` with its defaults (sigma 1, thresholds 0.1 and 0.2
of the intensity range, blank border). :func:`canny_batch` runs the same steps on a stack
of images in one pass each, instead of one library call per digit (about 0.5 ms each):
Gaussian smoothing renormalised by the smoothed frame ("bleed-over"), Sobel gradients,
non-maximum suppression with bilinear interpolation of the magnitude along the gradient
(scikit-image's ``_nonmaximum_suppression_bilinear``, written as array operations), and
hysteresis by labelling each image's 8-connected candidate pixels. The tests compare it
with ``skimage.feature.canny`` digit by digit.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..images import check_images
from ._shared import param_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import blocks, finish, gaussian_along, levels64

#: scikit-image passes the low threshold to its Cython kernel as a C float.
LOW_THRESHOLD = float(np.float32(0.1))
HIGH_THRESHOLD = 0.2
#: 8-connectivity within an image, none across the batch axis.
_STRUCTURE = np.zeros((3, 3, 3), bool)
_STRUCTURE[1] = True


def _sobel(values: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.ndimage.sobel(image, axis)`` of every image: derivative, then smoothing."""
    other = 2 if axis == 1 else 1
    derivative = ndimage.correlate1d(values, [-1, 0, 1], axis=axis, mode="reflect")
    return ndimage.correlate1d(derivative, [1, 2, 1], axis=other, mode="reflect")


def _suppress(isobel: np.ndarray, jsobel: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """scikit-image's non-maximum suppression and low threshold on (N, 28, 28) stacks.

    Only the interior pixels at or above the low threshold can survive, so only they are
    examined (about a fifth of a digit's pixels), each against the magnitudes its gradient
    points to, interpolated between two neighbours, in the four cases of the Cython kernel
    with its comparisons (``>`` against ``<=``, ``<`` against ``>=``).
    """
    n = len(magnitude)
    candidate = magnitude >= LOW_THRESHOLD
    candidate[:, 0, :] = candidate[:, -1, :] = candidate[:, :, 0] = candidate[:, :, -1] = False
    where = np.flatnonzero(candidate)
    out = np.zeros(magnitude.shape)
    if not where.size:
        return out
    m, i, j = magnitude.reshape(-1)[where], isobel.reshape(-1)[where], jsobel.reshape(-1)[where]
    flat = magnitude.reshape(-1)
    abs_i, abs_j = np.abs(i), np.abs(j)
    down, left = i <= 0, j <= 0
    up, right = ~down, ~left
    diagonal = (up & right) | (down & left)
    anti = ~diagonal & ((down & right) | (up & left))
    # Interior pixels only: every neighbour offset stays inside the image.
    cases = (
        (diagonal & (abs_i > abs_j), False, ((1, 0), (1, 1), (-1, 0), (-1, -1))),
        (diagonal & (abs_i <= abs_j), True, ((0, 1), (1, 1), (0, -1), (-1, -1))),
        (anti & (abs_i < abs_j), True, ((0, 1), (-1, 1), (0, -1), (1, -1))),
        (anti & (abs_i >= abs_j), False, ((-1, 0), (-1, 1), (1, 0), (1, -1))),
    )
    keep = np.zeros(where.size, bool)
    for chosen, across, offsets in cases:
        at = np.flatnonzero(chosen)
        if not at.size:
            continue
        # w = |i| / |j| when the gradient is mostly along the columns, else |j| / |i|.
        weight = abs_i[at] / abs_j[at] if across else abs_j[at] / abs_i[at]
        here = where[at]
        plus_1, plus_2, minus_1, minus_2 = (flat[here + 28 * dr + dc] for dr, dc in offsets)
        c_plus = (plus_2 * weight + plus_1 * (1.0 - weight)) <= m[at]
        c_minus = (minus_2 * weight + minus_1 * (1.0 - weight)) <= m[at]
        keep[at] = c_plus & c_minus
    out.reshape(-1)[where[keep]] = m[keep]
    return out.reshape(n, 28, 28)


def canny_batch(values: np.ndarray) -> np.ndarray:
    """``skimage.feature.canny(image)`` (default arguments) of every image of a stack.

    Parameters
    ----------
    values : (N, 28, 28) ndarray of float64 in [0, 1]

    Returns
    -------
    (N, 28, 28) ndarray of bool
    """
    out = np.zeros(values.shape, bool)
    for block in blocks(len(values)):
        out[block] = _canny_block(values[block])
    return out


def _canny_block(values: np.ndarray) -> np.ndarray:
    bleed_over = gaussian_along(np.ones((1, 28, 28)), 1.0, (0, 1), "constant") + np.finfo(np.float64).eps
    smoothed = gaussian_along(values, 1.0, (0, 1), "constant") / bleed_over
    jsobel = _sobel(smoothed, axis=2)
    isobel = _sobel(smoothed, axis=1)
    magnitude = isobel * isobel
    magnitude += jsobel * jsobel
    np.sqrt(magnitude, out=magnitude)
    candidates = _suppress(isobel, jsobel, magnitude)
    low = candidates > 0
    labels, count = ndimage.label(low, _STRUCTURE)
    if count == 0:
        return low
    good = np.zeros(count + 1, bool)
    good[np.unique(labels[low & (candidates >= HIGH_THRESHOLD)])] = True
    good[0] = False
    return good[labels]


@register
class CannyEdges(MnistcFamily):
    """MNIST-C's canny_edges as a blend: ``(1 - t) x + t edges``, ``t = 1`` the edge map.

    The edge map is 1 on the pixels ``skimage.feature.canny`` marks (default sigma 1,
    thresholds 0.1 and 0.2) and 0 elsewhere (:func:`canny_batch`): the digit becomes its
    outline. MNIST-C has no levels; its corruption is magnitude 1 (``published_magnitude``).

    Params: ``weight`` (the magnitude).
    """

    name = "canny_edges"
    mnistc_name = "canny_edges"
    unit = "weight (1 = MNIST-C)"
    description = "MNIST-C canny_edges: blend towards the binary Canny edge map (1 = MNIST-C's edges)"
    published_magnitude = 1.0
    default_magnitudes = (0.0, 0.25, 0.5, 0.75, 1.0)
    magnitude_range = (0.0, 1.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"weight": np.full(n, self.check_magnitude(magnitude))}

    def apply(self, images, params):
        images = check_images(images)
        weight = param_column(params, "weight", len(images), self.name)
        out = images.copy()
        chosen = np.flatnonzero(weight != 0)
        if chosen.size:
            values = levels64(images[chosen])
            edges = canny_batch(values).astype(np.float64)
            blend = weight[chosen, None, None]
            out[chosen] = finish((1.0 - blend) * values + blend * edges)
        return out
