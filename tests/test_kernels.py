"""The compiled kernels against scikit-image and SciPy, on masks and images that touch the frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk
from skimage.morphology import thin as skimage_thin

from robust_mnist import kernels


def random_masks(seed: int, n: int = 40, shape=(23, 31)) -> np.ndarray:
    """Blobs and strokes of assorted density, many touching the edge of the frame."""
    rng = np.random.default_rng(seed)
    noise = rng.random((n, *shape))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 1.5, 1.5))
    fractions = rng.uniform(0.2, 0.8, n)  # of the frame left as background
    return np.stack([image >= np.quantile(image, q) for image, q in zip(smooth, fractions)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thinning_is_scikit_image_thin(seed):
    masks = random_masks(seed)
    expected = np.stack([skimage_thin(m) for m in masks])
    np.testing.assert_array_equal(kernels.thin(masks), expected)


def test_thinning_never_erases_a_small_blob_and_leaves_blank_masks_blank():
    # Zhang and Suen's thinning erases a 2x2 square entirely; Guo and Hall's keeps a pixel.
    mask = np.zeros((3, 6, 6), dtype=bool)
    mask[0, 2:4, 2:4] = True
    mask[1, 0:2, 4:6] = True  # in a corner of the frame
    skeleton = kernels.thin(mask)
    assert skeleton[0].any() and skeleton[1].any() and not skeleton[2].any()
    assert not (skeleton & ~mask).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_distances_are_the_euclidean_distance_transform_with_background_outside(seed):
    masks = random_masks(seed)
    pixels = np.nonzero(masks)
    expected = np.concatenate(
        [ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1][m] for m in masks]
    )
    np.testing.assert_allclose(kernels.distances(masks, pixels), expected, atol=1e-12)


@pytest.mark.parametrize("radius", [1, 4, 6])
@pytest.mark.parametrize("erode", [True, False])
def test_disk_filter_is_a_grey_filter_with_the_disk_footprint(radius, erode):
    rng = np.random.default_rng(radius)
    images = (rng.random((5, 19, 26)) * (rng.random((5, 19, 26)) < 0.6)).astype(np.float32)
    expected = (ndimage.grey_erosion if erode else ndimage.grey_dilation)(
        images, footprint=disk(radius)[None].astype(bool), mode="constant", cval=0.0
    )
    np.testing.assert_array_equal(kernels.disk_filter(images, radius, erode), expected)
