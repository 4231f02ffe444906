"""MNIST-C's digital, geometric, line and edge corruptions: one tight property each.

Expected values come from hand calculation or from an independent route (scikit-image's
colour conversions, warps and Canny, PIL's JPEG and box resize), called the way MNIST-C calls
them, one image at a time. The severity tables are checked in ``test_mnistc.py``.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image
from skimage import color, feature, transform

from robust_mnist.data import to_float
from robust_mnist.perturbations import get, perturb, severity_magnitude
from robust_mnist.perturbations.mnistc_geometric import opencv_warp_affine
from robust_mnist.perturbations.mnistc_lines import zigzag_points


@pytest.fixture(scope="module")
def digits(mnist):
    """200 test digits as MNIST-C sees them (uint8) and as we do (float32)."""
    return mnist.x_test[:200], to_float(mnist.x_test[:200])


def run(name, images, magnitude, seed=0):
    return perturb(name, images, magnitude, seed=seed)[0]


def constant(value, n=1):
    return np.full((n, 28, 28), value, np.float32)


# ------------------------------------------------------------------------------- digital


def skimage_hsv(image_uint8, function):
    hsv = color.rgb2hsv(color.gray2rgb(image_uint8 / 255.0))
    return np.clip(color.rgb2gray(color.hsv2rgb(function(hsv))), 0, 1)


def test_brightness_adds_the_hsv_value_shift(digits):
    uint8, images = digits
    out = run("brightness", images[:5], 0.3)
    np.testing.assert_allclose(out, np.minimum(images[:5] + 0.3, 1), atol=1e-6)

    def raise_value(hsv):
        hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
        return hsv

    for image, result in zip(uint8[:5], out):
        np.testing.assert_allclose(result, skimage_hsv(image, raise_value), atol=1e-6)


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_saturate_matches_mnistc_hsv_route(digits, level):
    uint8, images = digits
    gain, offset = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)][level - 1]
    out = run("saturate", images[:4], float(level))
    for image, result in zip(uint8[:4], out):
        np.testing.assert_allclose(
            result, skimage_hsv(image, lambda hsv: np.clip(hsv * gain + offset, 0, 1)), atol=1e-6
        )
    if level == 3:
        np.testing.assert_allclose(out, np.minimum(2 * images[:4], 1), atol=1e-6)


def test_contrast_pulls_to_the_mean():
    images = constant(0.0)
    images[0, :, 14:] = 1.0  # mean 0.5
    out = run("contrast", images, 0.9)[0]
    np.testing.assert_allclose(out[:, :14], 0.45, atol=1e-7)
    np.testing.assert_allclose(out[:, 14:], 0.55, atol=1e-7)


def test_jpeg_keeps_flat_mid_grey_and_is_pil_jpeg(digits):
    uint8, images = digits
    np.testing.assert_array_equal(
        run("jpeg_compression", constant(128 / 255, 2), 93.0), np.float32(128 / 255)
    )
    out = run("jpeg_compression", images[:5], 93.0)
    for image, result in zip(uint8[:5], out):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=7)
        np.testing.assert_array_equal(result * 255, np.asarray(Image.open(buffer)).astype(np.float32))
    assert (np.abs(out - images[:5]) > 0.05).any()


def test_pixelate_half_resolution_is_two_by_two_block_means():
    base = np.random.default_rng(0).integers(0, 60, size=(14, 14)) * 4
    blocks = np.kron(base, np.ones((2, 2), int))
    blocks += np.tile(np.array([[0, 2], [4, 6]]), (14, 14))  # rows average +1 and +5, then +3
    out = run("pixelate", (blocks / 255.0)[None].astype(np.float32), 0.5)[0]
    np.testing.assert_array_equal(np.rint(out * 255), np.kron(base + 3, np.ones((2, 2))))


def test_pixelate_equals_pil_one_image_at_a_time(digits):
    uint8, images = digits
    for c in (0.6, 0.25):
        size = int(28 * c)
        expected = [
            np.asarray(Image.fromarray(v).resize((size, size), Image.BOX).resize((28, 28), Image.BOX))
            for v in uint8[:50]
        ]
        np.testing.assert_array_equal(
            run("pixelate", images[:50], round(1 - c, 12)) * 255, np.array(expected, np.float32)
        )


def test_quantize_rounds_to_the_allowed_levels():
    values = np.array([0, 42, 43, 127, 128, 212, 213, 255]) / 255.0
    images = np.broadcast_to(np.resize(values, 784).reshape(28, 28), (1, 28, 28)).astype(np.float32)
    one_bit = run("quantize", images, 7.0)[0].reshape(-1)[:8]
    np.testing.assert_array_equal(one_bit, [0, 0, 0, 0, 1, 1, 1, 1])
    two_bits = run("quantize", images, 6.0)[0].reshape(-1)[:8]  # levels 0, 1/3, 2/3, 1
    np.testing.assert_allclose(two_bits, [0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1], atol=1e-7)


def test_inverse_is_one_minus_x(digits):
    _, images = digits
    np.testing.assert_allclose(run("inverse", images, 1.0), 1 - images, atol=1e-7)
    np.testing.assert_allclose(run("inverse", images, 0.5), 0.5, atol=1e-7)


def test_stripe_inverts_exactly_columns_0_to_6_and_21_to_27(digits):
    _, images = digits
    out = run("stripe", images, 7.0)
    outer = np.r_[0:7, 21:28]
    np.testing.assert_allclose(out[:, :, outer], 1 - images[:, :, outer], atol=1e-7)
    np.testing.assert_array_equal(out[:, :, 7:21], images[:, :, 7:21])
    half = run("stripe", images, 3.5)
    np.testing.assert_allclose(half[:, :, [3, 24]], 0.5, atol=1e-7)


# ------------------------------------------------------------------------------ geometry


def skimage_warp(image_uint8, matrix):
    (a1, a2), (b1, b2) = matrix
    full = np.array([[a1, a2, 13.5 * (1 - a1 - a2)], [b1, b2, 13.5 * (1 - b1 - b2)], [0, 0, 1]])
    return np.clip(
        transform.warp(image_uint8 / 255.0, inverse_map=transform.AffineTransform(matrix=full)), 0, 1
    )


def test_mnistc_rotate_is_plus_or_minus_c_about_the_frame_centre(digits):
    uint8, images = digits
    params = get("mnistc_rotate").sample_params(
        200, severity_magnitude("mnistc_rotate", 2), np.random.default_rng(0)
    )
    np.testing.assert_allclose(np.abs(params["angle"]), math.degrees(0.4))
    assert set(np.sign(params["angle"])) == {-1.0, 1.0}
    out = get("mnistc_rotate").apply(images[:10], {"angle": params["angle"][:10]})
    for image, angle, result in zip(uint8[:10], params["angle"], out):
        # skimage's rotate turns counter-clockwise about ((cols - 1) / 2, (rows - 1) / 2).
        np.testing.assert_allclose(result, transform.rotate(image / 255.0, angle, order=1), atol=1e-6)


def test_mnistc_shear_is_pre_021_skimage_shear(digits):
    uint8, images = digits
    params = {"angle": np.array([math.degrees(1.0), -math.degrees(1.0)])}
    out = get("mnistc_shear").apply(images[:2], params)
    for image, c, result in zip(uint8[:2], (1.0, -1.0), out):
        np.testing.assert_allclose(
            result, skimage_warp(image, [[1, -math.sin(c)], [0, math.cos(c)]]), atol=1e-6
        )


def test_mnistc_scale_shrinks_about_the_frame_centre(digits):
    uint8, images = digits
    out = run("mnistc_scale", images[:5], 30.0)
    for image, result in zip(uint8[:5], out):
        np.testing.assert_allclose(result, skimage_warp(image, [[1 / 0.7, 0], [0, 1 / 0.7]]), atol=1e-6)


def test_mnistc_translate_moves_exactly_c_pixels_along_both_axes(digits):
    _, images = digits
    perturbation = get("mnistc_translate")
    params = perturbation.sample_params(200, 3.0, np.random.default_rng(0))
    assert set(np.abs(params["dx"])) == {3.0} and set(np.abs(params["dy"])) == {3.0}
    assert set(zip(np.sign(params["dx"]), np.sign(params["dy"]))) == {(-1, -1), (-1, 1), (1, -1), (1, 1)}
    out = perturbation.apply(images, params)
    for image, dx, dy, result in zip(images, params["dx"], params["dy"], out):
        padded = np.pad(image, 3)
        expected = padded[3 - int(dy) : 31 - int(dy), 3 - int(dx) : 31 - int(dx)]
        np.testing.assert_array_equal(result, expected)


def test_opencv_affine_warp_is_exact_for_whole_pixel_maps(digits):
    _, images = digits
    identity = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    np.testing.assert_array_equal(opencv_warp_affine(images[:1], identity), images[:1])
    shift = np.array([[[1.0, 0, 2], [0, 1.0, -1]]])  # content moves right 2, up 1
    expected = np.zeros((28, 28), np.float32)
    expected[:27, 2:] = images[0, 1:, :26]
    np.testing.assert_array_equal(opencv_warp_affine(images[:1], shift)[0], expected)


def test_elastic_transform_is_mild_at_level_3_and_large_at_level_1(digits):
    _, images = digits
    small = np.abs(run("elastic_transform", images, 3.0) - images).mean()
    large = np.abs(run("elastic_transform", images, 1.0) - images).mean()
    assert 0 < small < large


# --------------------------------------------------------------------------------- lines


def test_line_profile_is_mnistc_log_decay_within_its_columns():
    params = {
        "intensity": np.ones(1),
        "c0": np.array([2.0]),
        "c1": np.array([24.0]),
        "r0": np.array([10.0]),
        "r1": np.array([10.0]),
    }
    out = get("line").apply(constant(0.0), params)[0]
    side = 1 + math.log(1 - 1 / 2.3)  # 0.4296: one row off the line
    column = np.zeros(28)
    column[[9, 10, 11]] = side, 1.0, side
    np.testing.assert_allclose(out[:, 2:24], np.repeat(column[:, None], 22, axis=1), atol=1e-7)
    np.testing.assert_array_equal(out[:, :2], 0)
    np.testing.assert_array_equal(out[:, 24:], 0)
    drawn = get("line").sample_params(2000, 1.0, np.random.default_rng(0))
    assert (set(drawn["c0"]), set(drawn["c1"])) == ({0, 1, 2, 3, 4}, {22, 23, 24, 25, 26})
    assert set(drawn["r0"]) == set(range(27))


def test_dotted_line_leaves_mnistc_gap_columns_blank():
    params = {"intensity": np.ones(1), "r0": np.array([5.0]), "r1": np.array([5.0])}
    out = get("dotted_line").apply(constant(0.0), params)[0]
    gaps = [0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 27]
    dashes = [c for c in range(28) if c not in gaps]
    np.testing.assert_array_equal(out[:, gaps], 0)
    np.testing.assert_allclose(out[5, dashes], 1.0)


def test_zigzag_corners_and_rise():
    columns, rows = zigzag_points(0.0)  # flat: d = 23, teeth 2 x 2, MNIST-C's end (d, r / (2 (d - 20)))
    np.testing.assert_allclose(columns, [2, 4, 8, 12, 16, 20, 24, 25])
    np.testing.assert_allclose(rows, [0, 2, -2, 2, -2, 2, -2, -1 / 3])
    params = {"intensity": np.ones(1), "r0": np.array([10.0]), "r1": np.array([10.0])}
    out = get("zigzag").apply(constant(0.0), params)[0]
    assert out[10, 6] == 1.0 and out[12, 4] == 1.0  # on the tooth from (4, 12) to (8, 8)
    drawn = get("zigzag").sample_params(2000, 1.0, np.random.default_rng(0))
    assert set(drawn["r1"] - drawn["r0"]) == set(range(-5, 5))


# --------------------------------------------------------------------------------- canny


def test_canny_edges_equal_skimage_canny_digit_by_digit(digits):
    uint8, images = digits
    out = run("canny_edges", images, 1.0)
    assert set(np.unique(out)) <= {0.0, 1.0}
    expected = np.array([feature.canny(image / 255.0) for image in uint8], np.float32)
    np.testing.assert_array_equal(out, expected)


def test_a_filled_square_gives_its_outline():
    images = constant(0.0)
    images[0, 8:20, 8:20] = 1.0
    edges = run("canny_edges", images, 1.0)[0].astype(bool)
    ring = np.zeros((28, 28), bool)
    ring[6:22, 6:22] = True
    ring[10:18, 10:18] = False  # within 2 px of the square's sides
    assert edges[ring].sum() >= 40 and not edges[~ring].any()
