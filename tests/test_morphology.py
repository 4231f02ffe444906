"""Thin and thicken: the thickness they achieve, their guarantees, and their exact pieces.

The conformance test (test_perturbations_contract.py) covers the shared contract; this file
checks what is particular to stroke morphology. Expected thicknesses come from the stroke
widths the test draws, not from the code's output.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.morphology import disk

from robust_mnist import morphometrics
from robust_mnist.data import to_float
from robust_mnist.perturbations import get, perturb
from robust_mnist.perturbations.morphology import _from_block_means, disk_filter, thicken, thin

#: A few hundred MNIST test digits, loaded once for the property tests.
DIGITS = 200


@pytest.fixture(scope="module")
def digits(mnist):
    return to_float(mnist.x_test[:DIGITS])


def bar(width: int, length: int = 16) -> np.ndarray:
    """(1, 28, 28) vertical bar of full intensity, aligned with the pixels."""
    image = np.zeros((1, 28, 28), np.float32)
    left = 14 - width // 2
    image[0, 14 - length // 2 : 14 + length // 2, left : left + width] = 1.0
    return image


@pytest.mark.parametrize("width, change", [(3, 1.0), (3, 2.0), (2, 1.0), (5, 3.0)])
def test_thickening_a_bar_adds_the_magnitude_to_its_measured_thickness(width, change):
    out, params = perturb("thicken", bar(width), change)
    assert params["thickness_before"][0] == pytest.approx(width, abs=0.01)
    assert params["thickness_after"][0] == pytest.approx(width + change, abs=0.1)
    assert morphometrics.thickness(out)[0] == params["thickness_after"][0]


@pytest.mark.parametrize("width, change", [(3, 1.0), (5, 2.0), (6, 3.0)])
def test_thinning_a_bar_removes_the_magnitude_from_its_measured_thickness(width, change):
    out, params = perturb("thin", bar(width), change)
    assert params["thickness_after"][0] == pytest.approx(width - change, abs=0.1)
    assert params["saturated"][0] == 0


def test_thinning_stops_at_a_one_pixel_stroke_and_says_so():
    out, params = perturb("thin", bar(3), 5.0)
    assert params["saturated"][0] == 1
    assert params["thickness_after"][0] == pytest.approx(1.0, abs=0.1)
    # Still the whole stroke, at full intensity: a line of the bar's length.
    assert out.max() == pytest.approx(1.0, abs=1e-6)
    assert (out[0].max(axis=1) > 0.5).sum() >= 14


def test_thinning_mnist_digits_as_far_as_possible_leaves_one_pixel_strokes(digits):
    out, params = perturb("thin", digits[:50], 10.0)
    assert params["saturated"].all()
    assert np.median(params["thickness_after"]) == pytest.approx(1.0, abs=0.15)
    assert (out.reshape(50, -1).max(axis=1) > 0.9 * digits[:50].reshape(50, -1).max(axis=1)).all()


def morpho_mnist_thickness_after(images, change, erode):
    """Morpho-MNIST's own result: binary erosion/dilation of the 4x mask, measured as is."""
    mask = morphometrics.binarise(morphometrics.upsample(images))
    operation = ndimage.binary_erosion if erode else ndimage.binary_dilation
    changed = operation(mask, structure=disk(int(2 * change))[None])
    return morphometrics.stroke_thickness(changed, morphometrics.skeletons(changed))


def test_on_mnist_the_measured_change_follows_morpho_mnists_binary_operation(digits):
    # On real digits the mean thickness moves a little less than the magnitude even for
    # Morpho-MNIST's binary operation (stroke ends and junctions), so compare with that.
    images = digits[:100]
    _, thick = perturb("thicken", images, 2.0)
    gained = thick["thickness_after"] - thick["thickness_before"]
    ideal = morpho_mnist_thickness_after(images, 2.0, erode=False) - thick["thickness_before"]
    assert np.median(gained) == pytest.approx(2.0, abs=0.2)
    assert np.median(gained) == pytest.approx(np.median(ideal), abs=0.15)
    _, thinned = perturb("thin", images, 1.0)
    lost = thinned["thickness_before"] - thinned["thickness_after"]
    ideal = thinned["thickness_before"] - morpho_mnist_thickness_after(images, 1.0, erode=True)
    # The floor stops thin parts, so the mean stroke never loses more than the magnitude.
    assert (lost > 0).all() and (lost <= 1.0 + 0.1).all()
    free = thinned["saturated"] == 0
    assert np.median(lost[free]) == pytest.approx(np.median(ideal[free]), abs=0.15)


def test_relative_magnitudes_are_fractions_of_each_digits_thickness(digits):
    images = digits[:40]
    _, params = perturb("thicken", images, 0.5, relative=True)
    np.testing.assert_allclose(params["change"], 0.5 * params["thickness_before"])
    ratio = params["thickness_after"] / params["thickness_before"]
    assert np.median(ratio) == pytest.approx(1.5, abs=0.1)
    assert get("thin", relative=True).magnitude_range == (0.0, 1.0)
    with pytest.raises(ValueError, match="outside"):
        perturb("thin", images, 1.5, relative=True)


def measurement_noise(magnitude: float) -> float:
    """How far the measured thickness may move against a change below the 4x grid's step.

    A change of less than half a pixel moves each edge by less than one 4x pixel; the
    skeleton then shifts by a pixel here and there, and the mean thickness by up to ~0.15 px
    either way (seen on MNIST test digits). From half a pixel on, the direction is right.
    """
    return 0.15 if magnitude < 0.5 else 0.0


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, DIGITS - 1), magnitude=st.floats(0.0, 4.0))
def test_thinning_never_adds_ink_and_never_erases_the_digit(digits, index, magnitude):
    image = digits[index : index + 1]
    out, params = perturb("thin", image, magnitude)
    assert (out <= image).all()
    assert out.max() >= 0.5 * image.max()
    assert params["thickness_after"][0] <= params["thickness_before"][0] + measurement_noise(magnitude)


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, DIGITS - 1), magnitude=st.floats(0.0, 4.0))
def test_thickening_never_removes_ink(digits, index, magnitude):
    image = digits[index : index + 1]
    out, params = perturb("thicken", image, magnitude)
    assert (out >= image).all()
    assert params["thickness_after"][0] >= params["thickness_before"][0] - measurement_noise(magnitude)


@settings(max_examples=10, deadline=None)
@given(index=st.integers(0, DIGITS - 1), low=st.floats(0.0, 3.0), step=st.floats(0.05, 1.0))
def test_more_thickening_gives_more_ink(digits, index, low, step):
    # In total, not pixel by pixel: going back to 28x28 sharpens edges, which can ring by
    # ~0.1. Nor always a larger mean thickness: when strokes merge and loops fill in, the
    # skeleton changes shape and its mean distance to the background can drop.
    image = digits[index : index + 1]
    less, _ = perturb("thicken", image, low)
    more, _ = perturb("thicken", image, low + step)
    assert more.sum() > less.sum()


def test_the_result_changes_smoothly_with_the_magnitude(digits):
    images = digits[:10]
    previous = images
    for magnitude in np.linspace(0.1, 1.0, 10):
        out, _ = perturb("thicken", images, magnitude)
        # A tenth of a pixel of thickness moves each edge by a twentieth: small steps only.
        assert np.abs(out - previous).max() < 0.35
        previous = out


def test_magnitude_zero_returns_the_input_bit_for_bit(digits):
    for name in ("thin", "thicken"):
        out, params = perturb(name, digits[:20], 0.0)
        np.testing.assert_array_equal(out, digits[:20])
        np.testing.assert_array_equal(params["thickness_before"], params["thickness_after"])


def test_functions_and_families_agree_and_apply_recomputes_the_same(digits):
    images = digits[:30]
    change = np.linspace(0.0, 2.0, 30)
    thinned, before, saturated = thin(images, change)
    family = get("thin")
    params = {"change": change}
    np.testing.assert_array_equal(family.apply(images, params), thinned)
    np.testing.assert_array_equal(before, morphometrics.thickness(images))
    assert saturated.dtype == bool
    np.testing.assert_array_equal(get("thicken").apply(images, params), thicken(images, change))


def test_blank_images_pass_through(digits):
    images = np.concatenate([np.zeros((1, 28, 28), np.float32), digits[:2]])
    for name in ("thin", "thicken"):
        out, params = perturb(name, images, 1.0)
        np.testing.assert_array_equal(out[0], 0.0)
        assert np.isnan(params["thickness_before"][0]) and np.isnan(params["thickness_after"][0])


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
@pytest.mark.parametrize("erode", [True, False])
def test_disk_filter_equals_a_filter_with_the_disk_footprint(digits, radius, erode):
    hires = morphometrics.upsample(digits[:3])
    reference = (ndimage.grey_erosion if erode else ndimage.grey_dilation)(
        hires, footprint=disk(radius)[None].astype(bool), mode="constant", cval=0.0
    )
    np.testing.assert_array_equal(disk_filter(hires, radius, erode), reference)


def test_grey_erosion_binarised_is_morpho_mnists_binary_erosion(digits):
    # The grey-level operation binarised at any threshold is the binary erosion of the
    # binarised digit: the stroke moves by the same distance at every intensity.
    hires = morphometrics.upsample(digits[:5])
    eroded = disk_filter(hires, 3, erode=True)
    for level in (0.2, 0.5, 0.8):
        expected = ndimage.binary_erosion(hires >= level, structure=disk(3)[None], border_value=0)
        np.testing.assert_array_equal(eroded >= level, expected)


def test_sample_params_needs_the_images():
    with pytest.raises(ValueError, match="needs the images"):
        get("thin").sample_params(3, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="relative"):
        get("thicken", relative="yes")
    with pytest.raises(ValueError, match="change"):
        get("thin").apply(bar(3), {"change": np.array([-1.0])})


def test_going_back_to_28x28_inverts_the_upsampling_exactly(digits):
    # At radius 0 the pipeline must return the digit itself: the deconvolution undoes the
    # blur of upsampling then block-averaging.
    images = digits[:10]
    round_trip = morphometrics.downsample(morphometrics.upsample(images))
    assert np.abs(round_trip - images).max() > 0.05  # the blur it has to undo
    np.testing.assert_allclose(_from_block_means(round_trip), images, atol=1e-5)
