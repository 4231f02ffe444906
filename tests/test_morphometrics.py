"""Morphometrics against shapes of known size and against Morpho-MNIST's own pipeline.

Synthetic strokes are rendered independently of the code under test: a shape is evaluated on
a 16x finer grid and block-averaged, which gives exact anti-aliased edges at any sub-pixel
position.

Tolerances: the measurements read distances on the 4x grid, so an edge is located to within
a quarter pixel; a thickness is twice a distance, so straight strokes come out within about
0.25 px of their width (exactly, when the edges fall on the 4x grid).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure as skmeasure
from skimage import morphology, transform

from robust_mnist import morphometrics
from robust_mnist.data import to_float


def render(inside, supersample: int = 16) -> np.ndarray:
    """(28, 28) float32 image of the region ``inside(y, x)`` (pixel-centre coordinates)."""
    centres = (np.arange(28 * supersample) + 0.5) / supersample - 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    covered = inside(y, x).reshape(28, supersample, 28, supersample)
    return covered.mean(axis=(1, 3)).astype(np.float32)


def vertical_bar(width, length=16.0, x0=14.0, y0=14.0):
    return render(lambda y, x: (np.abs(x - x0) < width / 2) & (np.abs(y - y0) < length / 2))


def horizontal_bar(width, length=16.0):
    return render(lambda y, x: (np.abs(y - 14.0) < width / 2) & (np.abs(x - 14.0) < length / 2))


def slanted_bar(angle_deg, width=3.0, height=18.0):
    """A parallelogram whose centre line is x = 14 + tan(angle) * (14 - y): top leans right."""
    shear = np.tan(np.radians(angle_deg))
    return render(
        lambda y, x: (np.abs(x - 14.0 - shear * (14.0 - y)) < width / 2) & (np.abs(y - 14.0) < height / 2)
    )


@pytest.mark.parametrize("width", [3.0, 5.0])
@pytest.mark.parametrize("x0", [14.0, 13.5, 13.8, 14.3])
def test_a_bar_measures_its_width(width, x0):
    image = vertical_bar(width, x0=x0)[None]
    assert morphometrics.thickness(image)[0] == pytest.approx(width, abs=0.25)


@pytest.mark.parametrize("width", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
def test_bars_aligned_with_the_pixels_measure_exactly_their_width(width):
    image = np.zeros((1, 28, 28), np.float32)
    left = 14 - int(width) // 2
    image[0, 6:22, left : left + int(width)] = 1.0
    # Every skeleton pixel lies width * 4 / 2 4x-pixels from both edges, except that a 1 px
    # bar's skeleton (4 px wide at 4x) reaches into one end cap: one of its 61 pixels is only
    # sqrt(2) from the background, which costs it half a percent.
    tolerance = 0.01 if width == 1 else 1e-9
    assert morphometrics.thickness(image)[0] == pytest.approx(width, abs=tolerance)
    # Transposed: thinning is not symmetric under transposition, and the ends of a 1 px bar
    # get a slightly different skeleton.
    assert morphometrics.thickness(np.swapaxes(image, 1, 2))[0] == pytest.approx(width, abs=0.01)


def test_a_diagonal_stroke_measures_its_perpendicular_width():
    # Distances on a grid are less regular along diagonals: a third of a pixel.
    stroke = render(
        lambda y, x: (np.abs((x - 14) - (y - 14)) / np.sqrt(2) < 1.5)
        & (np.abs((x - 14) + (y - 14)) / np.sqrt(2) < 8)
    )
    assert morphometrics.thickness(stroke[None])[0] == pytest.approx(3.0, abs=0.35)


@pytest.mark.parametrize("bar", [vertical_bar, horizontal_bar])
def test_the_length_of_a_straight_bar_is_its_skeleton(bar):
    # The skeleton of a straight stroke stops about half a width short of each end,
    # so a 16 px bar 2 px wide has a skeleton about 14 px long (within a pixel).
    measured = morphometrics.measure(bar(2.0)[None])["length"][0]
    assert measured == pytest.approx(16.0 - 2.0, abs=1.0)


def test_a_longer_bar_measures_longer_by_the_difference():
    bars = np.stack([vertical_bar(2.0, length=10.0), vertical_bar(2.0, length=18.0)])
    lengths = morphometrics.measure(bars)["length"]
    assert lengths[1] - lengths[0] == pytest.approx(8.0, abs=0.5)


@pytest.mark.parametrize("angle", [-25.0, -10.0, 0.0, 10.0, 20.0, 30.0])
def test_the_slant_of_a_sheared_bar_is_the_shear_angle(angle):
    slant = morphometrics.measure(slanted_bar(angle)[None])["slant"][0]
    assert slant == pytest.approx(angle, abs=1.5)


def test_slant_matches_image_moments_computed_by_scikit_image():
    # Independent formula: slant = arctan(-mu11 / mu02) on the binarised 4x digit, with
    # skimage's central moments (mu[p, q] sums row^p * column^q).
    image = slanted_bar(17.0, width=4.0)
    mask = morphometrics.binarise(morphometrics.upsample(image[None]))[0].astype(float)
    mu = skmeasure.moments_central(mask)
    expected = np.degrees(np.arctan(-mu[1, 1] / mu[2, 0]))
    assert morphometrics.measure(image[None])["slant"][0] == pytest.approx(expected, abs=1e-9)


def test_width_and_height_of_a_block_and_of_a_slanted_bar():
    # Both exclude 1% of the ink on each side (Morpho-MNIST's bounding parallelogram).
    block = render(lambda y, x: (np.abs(x - 14) < 3) & (np.abs(y - 14) < 8))  # 6 x 16 px
    row = morphometrics.measure(block[None]).iloc[0]
    assert row["width"] == pytest.approx(0.98 * 6, abs=0.25)
    assert row["height"] == pytest.approx(0.98 * 16, abs=0.3)
    # The width is measured across the slant: a leaning 3 px bar stays 3 px wide.
    leaning = morphometrics.measure(slanted_bar(25.0, width=3.0)[None]).iloc[0]
    assert leaning["width"] == pytest.approx(0.98 * 3, abs=0.3)


def test_area_counts_the_binarised_ink_in_square_pixels():
    block = np.zeros((1, 28, 28), np.float32)
    block[0, 8:18, 10:16] = 1.0  # 10 x 6 = 60 px
    # Bilinear upsampling rounds each corner off by one 4x pixel (1/16 px^2).
    assert morphometrics.measure(block)["area"][0] == pytest.approx(60.0, abs=0.3)
    # The threshold is relative to the peak: faint ink measures the same.
    assert morphometrics.measure(block * np.float32(0.4))["area"][0] == pytest.approx(60.0, abs=0.3)


def test_a_blank_image_has_no_stroke():
    row = morphometrics.measure(np.zeros((1, 28, 28), np.float32)).iloc[0]
    assert np.isnan(row["thickness"]) and np.isnan(row["slant"]) and np.isnan(row["width"])
    assert row["area"] == 0 and row["length"] == 0


def test_measure_returns_one_row_per_image_with_the_documented_columns(mnist):
    images = to_float(mnist.x_test[:5])
    table = morphometrics.measure(images)
    assert list(table.columns) == ["thickness", "length", "slant", "width", "height", "area"]
    assert len(table) == 5
    np.testing.assert_array_equal(table["thickness"].to_numpy(), morphometrics.thickness(images))


def test_measurements_do_not_depend_on_the_batch_or_the_position(mnist):
    images = to_float(mnist.x_test[:20])
    whole = morphometrics.measure(images)
    alone = morphometrics.measure(images[7:8])
    np.testing.assert_array_equal(whole.iloc[7].to_numpy(), alone.iloc[0].to_numpy())
    shifted = np.roll(images[7:8], (2, -3), axis=(1, 2))  # the digit's ink stays in frame
    assert images[7, -2:].max() == 0 and images[7, :, :3].max() == 0
    np.testing.assert_allclose(morphometrics.measure(shifted).iloc[0], alone.iloc[0], rtol=1e-9, atol=1e-9)


def test_skeleton_distances_equal_the_full_euclidean_distance_transform(mnist):
    images = to_float(mnist.x_test[:30])
    mask = morphometrics.binarise(morphometrics.upsample(images))
    skeleton = morphometrics.skeletons(mask)
    image, distance = morphometrics.skeleton_distances(mask, skeleton)
    # Reference: scipy's transform of each mask padded with background (outside = background).
    expected = np.concatenate(
        [ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1][s] for m, s in zip(mask, skeleton)]
    )
    np.testing.assert_allclose(distance, expected, atol=1e-12)
    np.testing.assert_array_equal(image, np.nonzero(skeleton)[0])


def test_skeletons_are_scikit_image_thinning(mnist):
    mask = morphometrics.binarise(morphometrics.upsample(to_float(mnist.x_test[:5])))
    expected = np.stack([morphology.thin(m) for m in mask])
    np.testing.assert_array_equal(morphometrics.skeletons(mask), expected)


def test_thickness_agrees_with_morpho_mnist_on_mnist_digits(mnist):
    # Morpho-MNIST's pipeline, per image: pyramid_expand (order 3), threshold half-way
    # between min and max, medial axis with distances, 2 * mean distance / 4.
    digits = mnist.x_test[:20]

    def morpho_mnist_thickness(image):
        up = transform.pyramid_expand(image, upscale=4, order=3)
        binary = up >= up.min() + 0.5 * (up.max() - up.min())
        skeleton, distance = morphology.medial_axis(binary, return_distance=True)
        return 2.0 * distance[skeleton].mean() / 4

    reference = np.array([morpho_mnist_thickness(d) for d in digits])
    ours = morphometrics.thickness(to_float(digits))
    difference = np.abs(ours - reference)
    assert difference.mean() < 0.15
    assert difference.max() < 0.4


def test_upsample_matches_scikit_image_resize_and_downsample_inverts_the_box(mnist):
    images = to_float(mnist.x_test[:3])
    expected = transform.resize(images, (3, 112, 112), order=1, mode="constant", anti_aliasing=False)
    np.testing.assert_allclose(morphometrics.upsample(images), expected, atol=1e-6)
    np.testing.assert_allclose(
        morphometrics.downsample(np.kron(images, np.ones((1, 4, 4), np.float32))), images, atol=1e-6
    )


@pytest.mark.parametrize("bad", [np.zeros((28, 28)), np.full((1, 28, 28), 2.0), np.zeros((1, 27, 28))])
def test_invalid_batches_are_rejected(bad):
    with pytest.raises(ValueError):
        morphometrics.measure(bad)


@pytest.mark.parametrize("angle", [-20.0, 15.0])
def test_slant_reads_back_the_shear_perturbation_angle(angle):
    # The two modules share one sign convention: positive leans the top to the right.
    from robust_mnist.perturbations import perturb

    upright = np.zeros((1, 28, 28), np.float32)
    upright[0, 5:23, 13:16] = 1.0
    sheared, _ = perturb("shear", upright, angle)
    assert morphometrics.measure(sheared)["slant"][0] == pytest.approx(angle, abs=0.5)


def test_thickness_and_slant_alone_equal_the_full_measurement(mnist):
    images = np.concatenate([to_float(mnist.x_test[:40]), np.zeros((1, 28, 28), np.float32)])
    full = morphometrics.measure(images)
    np.testing.assert_array_equal(morphometrics.thickness(images), full["thickness"].to_numpy())
    np.testing.assert_array_equal(morphometrics.slant(images), full["slant"].to_numpy())
    assert np.isnan(morphometrics.slant(images)[-1])
