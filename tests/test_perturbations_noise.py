"""Noise, blur and occlusion: statistics, exact cases and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, stats

from robust_mnist.data import to_float
from robust_mnist.perturbations import get, perturb
from robust_mnist.perturbations._shared import random_bits, standard_normal, uniform_pair

GREY = np.full((20, 28, 28), 0.5, np.float32)


@pytest.fixture(scope="module")
def digits(mnist):
    return to_float(mnist.x_test[:30])


# ------------------------------------------------------------------ the per-image generator


def test_each_seed_has_its_own_stream_and_rows_depend_only_on_their_seed():
    seeds = np.array([0, 1, 2, 2**53 - 1])
    bits = random_bits(seeds, 100)
    assert len({tuple(row) for row in bits}) == 4
    np.testing.assert_array_equal(random_bits(seeds[2:3], 100), bits[2:3])
    np.testing.assert_array_equal(random_bits(seeds, 40), bits[:, :40])


def test_uniforms_and_normals_have_the_right_distribution():
    high, low = uniform_pair(np.arange(50), 1000)
    for uniform in (high, low):
        assert uniform.min() >= 0.0 and uniform.max() < 1.0
        assert stats.kstest(uniform.ravel(), "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(high.ravel(), low.ravel())[0, 1]) < 0.01
    normal = standard_normal(np.arange(50), 1000)
    assert stats.kstest(normal.ravel(), "norm").pvalue > 1e-3
    # Neighbouring seeds are uncorrelated.
    assert abs(np.corrcoef(normal[0], normal[1])[0, 1]) < 0.15


# ------------------------------------------------------------------ gaussian noise


def test_gaussian_noise_adds_zero_mean_noise_of_the_requested_sd():
    out, params = perturb("gaussian_noise", GREY, 0.1, seed=0)
    change = (out - GREY).ravel()  # 0.5 +- 5 sd never clips
    assert change.std() == pytest.approx(0.1, rel=0.03)
    assert abs(change.mean()) < 0.003
    assert np.mean(np.abs(change) < 0.1) == pytest.approx(0.6827, abs=0.015)
    assert len(np.unique(params["seed"])) == len(GREY)


def test_gaussian_noise_clips_to_the_unit_interval(digits):
    out, _ = perturb("gaussian_noise", digits, 1.0, seed=0)
    assert out.min() == 0.0 and out.max() == 1.0


@settings(max_examples=20, deadline=None)
@given(
    sd=st.floats(0.0, 0.9),
    extra=st.floats(0.02, 0.1),
    seed=st.integers(0, 2**32),
    other_seed=st.integers(0, 2**32),
)
def test_larger_noise_gives_a_larger_mean_change(digits, sd, extra, seed, other_seed):
    def mean_change(magnitude, s):
        return np.abs(perturb("gaussian_noise", digits, magnitude, seed=s)[0] - digits).mean()

    # With the same draws the change grows pixel by pixel; with other draws, on average: two
    # means over these pixels differ by chance by at most a few sd / sqrt(pixels) (a fixed
    # 0.004 failed at sd 0.875, extra 0.02, where chance alone is about 0.006).
    assert mean_change(sd + extra, seed) >= mean_change(sd, seed)
    chance = 5 * (sd + extra) / np.sqrt(digits.size)
    assert mean_change(sd + extra, other_seed) > mean_change(sd, seed) - chance


# ------------------------------------------------------------------ salt and pepper


@settings(max_examples=25, deadline=None)
@given(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**32))
def test_salt_pepper_replaces_the_requested_fraction_half_salt_half_pepper(fraction, seed):
    out, _ = perturb("salt_pepper", GREY, fraction, seed=seed)
    assert set(np.unique(out)) <= {0.0, 0.5, 1.0}
    replaced = out != 0.5  # on grey, every replacement shows
    pixels = replaced.size
    tolerance = 5 * np.sqrt(pixels * fraction * (1 - fraction)) + 1
    assert abs(replaced.sum() - fraction * pixels) <= tolerance
    salt = (out == 1.0).sum()
    assert abs(salt - replaced.sum() / 2) <= 5 * np.sqrt(replaced.sum() / 4) + 1


def test_salt_pepper_at_fraction_one_replaces_every_pixel():
    out, _ = perturb("salt_pepper", GREY, 1.0)
    assert not (out == 0.5).any()


# ------------------------------------------------------------------ blur


def test_blur_preserves_the_ink_of_a_digit_away_from_the_border():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 12:16, 10:18] = 0.8
    out, _ = perturb("blur", image, 1.5)
    assert out.sum() == pytest.approx(image.sum(), rel=1e-5)
    assert out.max() < image.max()
    np.testing.assert_allclose(out[0], out[0, ::-1, ::-1], atol=1e-6)  # symmetric stays symmetric


def test_blur_equals_scipy_gaussian_filter_with_a_blank_surround(digits):
    out, _ = perturb("blur", digits[:5], 2.0)
    expected = ndimage.gaussian_filter(digits[:5], (0, 2.0, 2.0), mode="constant", cval=0.0)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_blur_handles_a_different_sigma_per_image(digits):
    blur = get("blur")
    sigma = np.array([0.0, 1.0, 2.0, 1.0])
    out = blur.apply(digits[:4], {"sigma": sigma})
    np.testing.assert_array_equal(out[0], digits[0])
    for i in (1, 2, 3):
        np.testing.assert_allclose(
            out[i], ndimage.gaussian_filter(digits[i], sigma[i], mode="constant"), atol=1e-6
        )


# ------------------------------------------------------------------ occlusion


def test_a_vertical_bar_erases_whole_columns_with_antialiased_edges():
    ones = np.ones((1, 28, 28), np.float32)
    occlude = get("occlude", shape="bar", orientation="vertical")
    out = occlude.apply(ones, {"x": np.array([10.0]), "y": np.array([5.0]),
                               "size": np.array([2.5]), "vertical": np.array([1.0])})
    # The bar covers x in [8.75, 11.25]: columns 9 and 11 three quarters, column 10 fully.
    expected = np.ones((28, 28), np.float32)
    expected[:, 9] = expected[:, 11] = 0.25
    expected[:, 10] = 0.0
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_a_patch_paints_a_square_of_the_requested_side_and_value():
    blank = np.zeros((1, 28, 28), np.float32)
    occlude = get("occlude", shape="patch", value=1.0)
    out = occlude.apply(blank, {"x": np.array([6.0]), "y": np.array([20.0]), "size": np.array([3.0])})
    expected = np.zeros((28, 28), np.float32)
    expected[19:22, 5:8] = 1.0
    np.testing.assert_array_equal(out[0], expected)


def test_the_occluder_is_centred_on_ink_and_hits_it(digits):
    out, params = perturb("occlude", digits, 2.0, seed=4, shape="patch")
    rows, cols = params["y"].astype(int), params["x"].astype(int)
    centre_ink = digits[np.arange(len(digits)), rows, cols]
    assert (centre_ink >= 0.5 * digits.max(axis=(1, 2))).all()
    assert (np.abs(out - digits).reshape(len(digits), -1).max(axis=1) > 0.3).all()
    # Random positions: not all the same place.
    assert len(set(zip(rows, cols))) > len(digits) // 2


def test_random_orientation_draws_both_orientations(digits):
    _, params = perturb("occlude", digits, 2.0, seed=0, orientation="random")
    assert 0 < params["vertical"].sum() < len(digits)


def test_occlude_needs_the_images_to_place_the_occluder():
    with pytest.raises(ValueError, match="needs the images"):
        get("occlude").sample_params(3, 2.0, np.random.default_rng(0))


@pytest.mark.parametrize("options", [{"shape": "circle"}, {"orientation": "diagonal"}, {"value": 2.0}])
def test_occlude_rejects_unknown_options(options):
    with pytest.raises(ValueError, match="occlude"):
        get("occlude", **options)


@settings(max_examples=30, deadline=None)
@given(
    size=st.floats(0.0, 28.0),
    seed=st.integers(0, 2**32),
    shape=st.sampled_from(["bar", "patch"]),
    orientation=st.sampled_from(["vertical", "horizontal", "random"]),
)
def test_erasing_never_adds_ink_and_painting_never_removes_it(digits, size, seed, shape, orientation):
    erased, _ = perturb("occlude", digits[:8], size, seed=seed, shape=shape, orientation=orientation)
    assert (erased <= digits[:8]).all()
    painted, _ = perturb(
        "occlude", digits[:8], size, seed=seed, shape=shape, orientation=orientation, value=1.0
    )
    assert (painted >= digits[:8]).all()
