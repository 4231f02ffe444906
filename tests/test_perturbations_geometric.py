"""Geometric families: exact small cases, a naive per-image reference, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from robust_mnist.data import to_float
from robust_mnist.perturbations import get, perturb
from robust_mnist.perturbations._shared import bilinear, centre_of_mass, gaussian_matrix, smooth_rows_and_columns


def one_hot(row: int, col: int, value: float = 1.0) -> np.ndarray:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, row, col] = value
    return image


@pytest.fixture(scope="module")
def digits(mnist):
    return to_float(mnist.x_test[:40])


# ------------------------------------------------------------------ shifts


@pytest.mark.parametrize(
    "name, magnitude, moved_to",
    [
        ("translate_x", 1.0, (10, 13)),  # right
        ("translate_x", -1.0, (10, 11)),  # left
        ("translate_y", 1.0, (11, 12)),  # down
        ("translate_y", -1.0, (9, 12)),  # up
        ("translate_x", 3.0, (10, 15)),
    ],
)
def test_an_integer_shift_moves_a_pixel_by_exactly_that_many_pixels(name, magnitude, moved_to):
    out, params = perturb(name, one_hot(10, 12), magnitude)
    np.testing.assert_array_equal(out, one_hot(*moved_to))
    assert list(params.values())[0].tolist() == [magnitude]


def test_a_half_pixel_shift_splits_a_pixel_into_two_halves():
    out, _ = perturb("translate_x", one_hot(10, 12), 0.5)
    expected = np.zeros((1, 28, 28), np.float32)
    expected[0, 10, 12] = expected[0, 10, 13] = 0.5
    np.testing.assert_allclose(out, expected, atol=1e-7)
    out, _ = perturb("translate_y", one_hot(10, 12), -0.5)
    expected = np.zeros((1, 28, 28), np.float32)
    expected[0, 10, 12] = expected[0, 9, 12] = 0.5
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_a_half_pixel_shift_past_the_border_keeps_the_half_still_inside():
    out, _ = perturb("translate_x", one_hot(5, 27), 0.5)
    assert out.sum() == pytest.approx(0.5)
    assert out[0, 5, 27] == pytest.approx(0.5)


def test_a_shift_beyond_the_frame_leaves_a_blank_image(digits):
    out, _ = perturb("translate_y", digits[:3], 28.0)
    assert out.max() == 0.0


def test_translate_shifts_by_the_magnitude_in_a_uniformly_random_direction(digits):
    out, params = perturb("translate", digits[:5], 3.0, seed=1)
    np.testing.assert_allclose(np.hypot(params["dx"], params["dy"]), 3.0)
    # The same shift through the per-axis families, one after the other (bilinear
    # interpolation is separable, so the two agree to rounding).
    for i in range(5):
        along_x, _ = perturb("translate_x", digits[i : i + 1], params["dx"][i])
        both, _ = perturb("translate_y", along_x, params["dy"][i])
        np.testing.assert_allclose(out[i], both[0], atol=1e-5)
    directions = np.arctan2(
        *[perturb("translate", np.zeros((2000, 28, 28)), 1.0, seed=2)[1][k] for k in ("dy", "dx")]
    )
    counts, _ = np.histogram(directions, bins=8, range=(-np.pi, np.pi))
    assert counts.min() > 2000 / 8 * 0.75 and counts.max() < 2000 / 8 * 1.25


@settings(max_examples=30, deadline=None)
@given(k=st.integers(-6, 6), axis=st.sampled_from(["translate_x", "translate_y"]), seed=st.integers(0, 2**16))
def test_shifting_by_k_then_minus_k_restores_the_interior(k, axis, seed):
    image = np.random.default_rng(seed).random((2, 28, 28), dtype=np.float32)
    there, _ = perturb(axis, image, float(k))
    back, _ = perturb(axis, there, float(-k))
    inner = slice(abs(k), 28 - abs(k))
    interior = np.s_[:, :, inner] if axis == "translate_x" else np.s_[:, inner, :]
    np.testing.assert_array_equal(back[interior], image[interior])


# ------------------------------------------------------------------ rotation, zoom, shear


def centred_asymmetric_pattern() -> np.ndarray:
    """Centre of mass exactly at (13.5, 13.5), and not symmetric under a half turn.

    So a rotation about the centre of mass is a rotation about the frame's centre, and a
    clockwise quarter turn differs from a counter-clockwise one.
    """
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 13, 16] = 0.5  # (row, col): offsets (x, y) = (+2.5, -0.5)
    image[0, 14, 13] = 1.0  # (-0.5, +0.5)
    image[0, 13, 12] = 0.5  # (-1.5, -0.5)
    image[0, 20, 10] = image[0, 7, 17] = 0.25  # a point-symmetric pair, to add extent
    return image


def test_the_pattern_is_centred():
    pattern = centred_asymmetric_pattern()
    np.testing.assert_allclose(ndimage.center_of_mass(pattern[0]), (13.5, 13.5))
    assert not np.array_equal(np.rot90(pattern[0], 1), np.rot90(pattern[0], -1))


@pytest.mark.parametrize("angle, quarter_turns", [(90.0, 1), (-90.0, -1), (180.0, 2), (-180.0, 2)])
def test_rotating_by_quarter_turns_equals_numpy_rot90(angle, quarter_turns):
    # np.rot90 turns counter-clockwise as displayed, the documented sign of `rotate`.
    pattern = centred_asymmetric_pattern()
    out, _ = perturb("rotate", pattern, angle)
    np.testing.assert_allclose(out[0], np.rot90(pattern[0], quarter_turns), atol=1e-5)


def test_a_positive_angle_turns_counter_clockwise_on_screen():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 14, 14] = 1.0
    image[0, 14, 17] = 0.5  # centre of mass (x, y) = (15, 14)
    out, _ = perturb("rotate", image, 90.0)
    expected = np.zeros((28, 28), np.float32)
    expected[12, 15] = 0.5  # 2 px right of the centre -> 2 px above it
    expected[15, 15] = 1.0  # 1 px left of the centre -> 1 px below it
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def naive_affine(image: np.ndarray, matrix_xy: np.ndarray) -> np.ndarray:
    """Reference: one scipy affine_transform per image about its scipy centre of mass.

    ``matrix_xy`` maps output offsets (x, y) from the centre to input offsets.
    """
    cy, cx = ndimage.center_of_mass(image)
    # Reorder (x, y) to scipy's (row, col) = (y, x).
    matrix = np.array([[matrix_xy[1, 1], matrix_xy[1, 0]], [matrix_xy[0, 1], matrix_xy[0, 0]]])
    centre = np.array([cy, cx])
    return ndimage.affine_transform(
        image, matrix, offset=centre - matrix @ centre, order=1, mode="grid-constant", cval=0.0
    )


@pytest.mark.parametrize("angle", [-47.0, 12.5, 30.0, 135.0])
def test_rotate_matches_a_per_image_scipy_reference(digits, angle):
    a = np.deg2rad(angle)
    # Screen counter-clockwise with y down: an output offset (x, y) reads the input at the
    # offset turned back, (x cos a - y sin a, x sin a + y cos a).
    inverse = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out, _ = perturb("rotate", digits[:10], angle)
    for image, got in zip(digits[:10], out):
        np.testing.assert_allclose(got, naive_affine(image, inverse), atol=2e-5)


@pytest.mark.parametrize("percent", [-50.0, -10.0, 25.0, 100.0])
def test_scale_matches_a_per_image_scipy_reference(digits, percent):
    zoom = 1 + percent / 100
    out, params = perturb("scale", digits[:10], percent)
    np.testing.assert_allclose(params["zoom"], zoom)
    for image, got in zip(digits[:10], out):
        np.testing.assert_allclose(got, naive_affine(image, np.eye(2) / zoom), atol=2e-5)


@pytest.mark.parametrize("angle", [-30.0, 15.0, 45.0])
def test_shear_matches_a_per_image_scipy_reference(digits, angle):
    # Output offset (x, y) reads input offset (x + tan(angle) y, y): rows above the centre
    # (y < 0) read from the left, so their ink moves right.
    inverse = np.array([[1.0, np.tan(np.deg2rad(angle))], [0.0, 1.0]])
    out, _ = perturb("shear", digits[:10], angle)
    for image, got in zip(digits[:10], out):
        np.testing.assert_allclose(got, naive_affine(image, inverse), atol=2e-5)


def test_doubling_the_size_spreads_each_pixel_over_a_3x3_tent():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 14, 12] = image[0, 14, 16] = 1.0  # centre of mass (x, y) = (14, 14)
    out, _ = perturb("scale", image, 100.0)
    tent = np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5])
    expected = np.zeros((28, 28), np.float32)
    expected[13:16, 9:12] = tent  # x = 12 -> 14 + 2 * (12 - 14) = 10
    expected[13:16, 17:20] = tent  # x = 16 -> 18
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    assert out.sum() == pytest.approx(4 * image.sum())  # area grows with zoom squared


def test_a_45_degree_shear_leans_a_vertical_bar_to_the_right_at_the_top():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 10:19, 14] = 1.0  # centre of mass at row 14, column 14
    out, _ = perturb("shear", image, 45.0)
    expected = np.zeros((28, 28), np.float32)
    for row in range(10, 19):
        expected[row, 14 + (14 - row)] = 1.0
    np.testing.assert_allclose(out[0], expected, atol=1e-5)


@pytest.mark.parametrize("name, magnitude", [("rotate", 35.0), ("scale", -20.0), ("shear", 30.0)])
def test_rotate_scale_and_shear_keep_the_centre_of_mass(digits, name, magnitude):
    out, _ = perturb(name, digits, magnitude)
    moved = np.hypot(*(centre_of_mass(out) - centre_of_mass(digits)).T)
    # Only digits pushed partly out of the frame (ink on its outer ring) may drift.
    ring = np.ones((28, 28), bool)
    ring[1:-1, 1:-1] = False
    inside = out[:, ring].max(axis=1) == 0
    assert inside.sum() >= len(digits) // 2
    assert moved[inside].max() < 0.15


def test_centre_of_mass_matches_scipy_and_falls_back_to_the_frame_centre(digits):
    expected = np.array([ndimage.center_of_mass(image)[::-1] for image in digits[:5]])
    np.testing.assert_allclose(centre_of_mass(digits[:5]), expected, atol=1e-5)
    np.testing.assert_array_equal(centre_of_mass(np.zeros((1, 28, 28), np.float32)), [[13.5, 13.5]])


def test_bilinear_sampling_equals_scipy_map_coordinates(digits):
    rng = np.random.default_rng(0)
    n = 8
    source_y = rng.uniform(-4, 32, (n, 28, 28)).astype(np.float32)
    source_x = rng.uniform(-4, 32, (n, 28, 28)).astype(np.float32)
    index = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 28, 28))
    expected = ndimage.map_coordinates(
        digits[:n], [index, source_y, source_x], order=1, mode="grid-constant", cval=0.0
    )
    np.testing.assert_allclose(bilinear(digits[:n], source_y, source_x), expected, atol=1e-6)


def test_the_map_accepts_integer_or_float64_input(digits):
    as_uint8 = np.round(digits[:3] * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        perturb("rotate", as_uint8, 10.0)
    out, _ = perturb("rotate", digits[:3].astype(np.float64), 10.0)
    assert out.dtype == np.float32


# ------------------------------------------------------------------ elastic


def test_elastic_displacement_is_a_gaussian_smoothed_uniform_field_times_alpha():
    elastic = get("elastic", sigma=3.0)
    seeds = np.arange(4)
    dx1, dy1 = elastic.displacement(np.ones(4), seeds)
    dx5, dy5 = elastic.displacement(np.full(4, 5.0), seeds)
    np.testing.assert_allclose(dx5, 5 * dx1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dy5, 5 * dy1, rtol=1e-5, atol=1e-7)
    # Smoothing removes fine structure: neighbouring displacements are strongly correlated.
    correlation = np.corrcoef(dx1[:, :, :-1].ravel(), dx1[:, :, 1:].ravel())[0, 1]
    assert correlation > 0.9
    assert np.corrcoef(dx1.ravel(), dy1.ravel())[0, 1] == pytest.approx(0.0, abs=0.15)


def test_elastic_displacement_size_is_as_documented():
    # Documented: RMS displacement per axis about 0.04 * alpha for sigma = 4 (a smoothed
    # uniform [-1, 1] field: sqrt(1/3 / (4 pi sigma^2)) = 0.041 away from the border).
    dx, dy = get("elastic").displacement(np.ones(500), np.arange(500))
    rms = np.sqrt(np.mean(np.concatenate([dx, dy]) ** 2))
    assert 0.03 < rms < 0.05
    assert abs(dx.mean()) < 0.005


def test_elastic_warps_each_pixel_by_its_displacement(digits):
    elastic = get("elastic")
    params = elastic.sample_params(6, 34.0, np.random.default_rng(3))
    dx, dy = elastic.displacement(params["alpha"], params["seed"])
    grid_y, grid_x = np.mgrid[0:28, 0:28].astype(np.float32)
    index = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], (6, 28, 28))
    expected = ndimage.map_coordinates(
        digits[:6], [index, grid_y + dy, grid_x + dx], order=1, mode="grid-constant"
    )
    np.testing.assert_allclose(elastic.apply(digits[:6], params), expected, atol=1e-6)


def test_elastic_rejects_a_non_positive_sigma():
    with pytest.raises(ValueError, match="sigma"):
        get("elastic", sigma=0.0)


def test_the_smoothing_matrices_equal_scipy_gaussian_filter():
    images = np.random.default_rng(1).random((3, 28, 28), dtype=np.float32)
    for sigma in (0.7, 2.0, 4.0):
        for mode in ("constant", "reflect"):
            expected = ndimage.gaussian_filter(images, (0, sigma, sigma), mode=mode)
            got = smooth_rows_and_columns(images, gaussian_matrix(sigma, mode))
            np.testing.assert_allclose(got, expected, atol=1e-6)


# ------------------------------------------------------------------ composition


ROTATE_THEN_SHIFT = [{"family": "rotate", "magnitude": 30.0}, {"family": "translate_x", "magnitude": 2.0}]


@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0])
def test_compose_runs_each_step_at_the_strength_times_its_magnitude(digits, strength):
    out, params = perturb("compose", digits[:6], strength, steps=ROTATE_THEN_SHIFT)
    rotated, _ = perturb("rotate", digits[:6], 30.0 * strength)
    expected, _ = perturb("translate_x", rotated, 2.0 * strength)
    np.testing.assert_array_equal(out, expected)
    assert sorted(params) == ["s0_angle", "s1_dx"]
    np.testing.assert_array_equal(params["s0_angle"], 30.0 * strength)


def test_a_fixed_step_ignores_the_strength(digits):
    steps = [{"family": "rotate", "magnitude": 20.0, "fixed": True}, {"family": "blur", "magnitude": 1.0}]
    out, params = perturb("compose", digits[:4], 0.0, steps=steps)
    np.testing.assert_array_equal(params["s0_angle"], 20.0)
    np.testing.assert_array_equal(out, perturb("rotate", digits[:4], 20.0)[0])


def test_compose_range_keeps_every_step_inside_its_own_range():
    compose = get("compose", steps=[{"family": "rotate", "magnitude": -90.0}, {"family": "blur", "magnitude": 1.0}])
    assert compose.magnitude_range == (0.0, 2.0)  # rotate -90 * 2 = -180, its limit
    assert not get("compose", steps=ROTATE_THEN_SHIFT).random
    with pytest.raises(ValueError, match="outside"):
        perturb("compose", np.zeros((1, 28, 28)), 2.5, steps=compose.options["steps"])


def test_a_later_step_that_looks_at_the_digit_sees_it_as_transformed(digits):
    steps = [{"family": "translate_x", "magnitude": 5.0}, {"family": "occlude", "magnitude": 1.0, "shape": "patch"}]
    _, params = perturb("compose", digits[:10], 1.0, seed=0, steps=steps)
    shifted, _ = perturb("translate_x", digits[:10], 5.0)
    rows, cols = params["s1_y"].astype(int), params["s1_x"].astype(int)
    assert (shifted[np.arange(10), rows, cols] >= 0.5 * shifted.max(axis=(1, 2))).all()


@pytest.mark.parametrize(
    "steps, message",
    [
        (None, "compose needs steps"),
        ([], "compose needs steps"),
        ([{"magnitude": 1.0}], "'family' and 'magnitude'"),
        ([{"family": "rotat", "magnitude": 1.0}], "known: "),
        ([{"family": "rotate", "magnitude": 500.0, "fixed": True}], "outside"),
        ([{"family": "occlude", "magnitude": 1.0, "shape": "circle"}], "circle"),
    ],
)
def test_bad_steps_are_rejected_with_a_reason(steps, message):
    with pytest.raises(ValueError, match=message):
        get("compose", steps=steps)
