"""MNIST-C's catalogue and severity tables, and a tight property of each noise, blur and weather.

Expected values come from MNIST-C's ``corruptions.py`` written out by hand (its tables and
random ranges), from hand calculation, or from an independent route (scikit-image and SciPy
called the way MNIST-C calls them, one image at a time). The digital, geometric, line and
edge corruptions are in ``test_mnistc_digital_geometry.py``; the contract itself (shape,
dtype, range, identity at 0, seeds, batches) is checked for every family by
``test_perturbations_contract.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import filters

from robust_mnist.data import to_float
from robust_mnist.errors import InvalidArgumentError
from robust_mnist.perturbations import family, get, perturb, published_magnitude, severity_magnitude
from robust_mnist.perturbations.mnistc import CORRUPTIONS, LEFT_OUT, PUBLISHED, MnistcFamily
from robust_mnist.perturbations.mnistc_blur import glass_permutation, zoom_factors
from robust_mnist.perturbations.mnistc_ops import image_bits
from robust_mnist.perturbations.mnistc_weather import plasma_fractal

#: MNIST-C's corruptions.py: CORRUPTIONS (the published set, after 'identity') and ALL_CORRUPTIONS.
MNISTC_PUBLISHED = [
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
]
MNISTC_ALL = [
    "identity",
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "pessimal_noise",
    "gaussian_blur",
    "glass_blur",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "fog",
    "frost",
    "snow",
    "spatter",
    "contrast",
    "brightness",
    "saturate",
    "jpeg_compression",
    "pixelate",
    "elastic_transform",
    "quantize",
    "shear",
    "rotate",
    "scale",
    "translate",
    "line",
    "dotted_line",
    "zigzag",
    "inverse",
    "stripe",
    "canny_edges",
]


@pytest.fixture(scope="module")
def digits(mnist):
    """200 test digits as MNIST-C sees them (uint8) and as we do (float32)."""
    return mnist.x_test[:200], to_float(mnist.x_test[:200])


def run(name, images, magnitude, seed=0):
    return perturb(name, images, magnitude, seed=seed)[0]


def constant(value, n=1):
    return np.full((n, 28, 28), value, np.float32)


# ----------------------------------------------------------------------------- catalogue


def test_the_catalogue_names_every_corruption_of_mnistc():
    assert [name for name, _ in PUBLISHED] == MNISTC_PUBLISHED
    assert sorted([*CORRUPTIONS, *LEFT_OUT]) == sorted(MNISTC_ALL)
    for mnistc_name, name in CORRUPTIONS.items():
        cls = family(name)
        assert issubclass(cls, MnistcFamily)
        assert cls.mnistc_name == mnistc_name
        # MNIST-C's name, with the prefix only where one of ours has it.
        assert name in (mnistc_name, f"mnistc_{mnistc_name}")


#: Each table as MNIST-C writes it, and how its values read in the family's unit.
TABLES = {
    "shot_noise": ([60, 25, 12, 5, 3], lambda c: 1 / c),
    "impulse_noise": ([0.03, 0.06, 0.09, 0.17, 0.27], lambda c: c),
    "mnistc_gaussian_noise": ([0.08, 0.12, 0.18, 0.26, 0.38], lambda c: c),
    "speckle_noise": ([0.15, 0.2, 0.35, 0.45, 0.6], lambda c: c),
    "gaussian_blur": ([1, 2, 3, 4, 6], lambda c: c),
    "glass_blur": ([0.7, 0.9, 1, 1.1, 1.5], lambda c: c),
    "defocus_blur": ([3, 4, 6, 8, 10], lambda c: c),
    "motion_blur": ([3, 5, 8, 12, 15], lambda c: c),
    # the largest zoom of np.arange(1, 1.11, .01) is 1.11, its floating-point end
    "zoom_blur": ([1.11, 1.15, 1.20, 1.24, 1.30], lambda c: round((c - 1) * 100, 9)),
    "brightness": ([0.1, 0.2, 0.3, 0.4, 0.5], lambda c: c),
    "contrast": ([0.4, 0.3, 0.2, 0.1, 0.05], lambda c: round(1 - c, 12)),
    "jpeg_compression": ([25, 18, 15, 10, 7], lambda c: 100 - c),
    "pixelate": ([0.6, 0.5, 0.4, 0.3, 0.25], lambda c: round(1 - c, 12)),
    "quantize": ([5, 4, 3, 2, 1], lambda bits: 8 - bits),
    "mnistc_shear": ([0.2, 0.4, 0.6, 0.8, 1.0], math.degrees),
    "mnistc_rotate": ([0.2, 0.4, 0.6, 0.8, 1.0], math.degrees),
    "mnistc_scale": ([0.9, 0.8, 0.7, 0.6, 0.5], lambda c: round((1 - c) * 100, 9)),
    "mnistc_translate": ([1, 2, 3, 4, 5], lambda c: c),
}
#: The default severity of each MNIST-C function (its signature), which the published set uses.
DEFAULTS = {
    "shot_noise": 5,
    "impulse_noise": 4,
    "glass_blur": 1,
    "motion_blur": 1,
    "mnistc_shear": 2,
    "mnistc_scale": 3,
    "mnistc_rotate": 2,
    "brightness": 5,
    "mnistc_translate": 3,
    "fog": 5,
    "spatter": 4,
    "mnistc_gaussian_noise": 5,
    "speckle_noise": 5,
    "gaussian_blur": 2,
    "defocus_blur": 1,
    "zoom_blur": 5,
    "snow": 5,
    "contrast": 4,
    "saturate": 5,
    "jpeg_compression": 5,
    "pixelate": 3,
    "elastic_transform": 1,
    "quantize": 5,
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_severity_tables_are_mnistc_tables_in_the_family_unit(name):
    table, to_unit = TABLES[name]
    for level, value in enumerate(table, start=1):
        assert severity_magnitude(name, level) == pytest.approx(to_unit(value), abs=1e-12)


def test_default_severities_are_mnistc_defaults():
    for name, level in DEFAULTS.items():
        assert family(name).default_severity == level, name
        assert published_magnitude(name) == severity_magnitude(name, level)
    # Severity-unit families: the magnitude is the level itself.
    for name in ("fog", "spatter", "snow", "saturate", "elastic_transform"):
        assert [severity_magnitude(name, k) for k in range(1, 6)] == [1, 2, 3, 4, 5]
    # No levels in MNIST-C: its own corruption is one magnitude.
    assert {
        name: published_magnitude(name)
        for name in ("stripe", "dotted_line", "zigzag", "canny_edges", "line", "inverse")
    } == {"stripe": 7, "dotted_line": 1, "zigzag": 1, "canny_edges": 1, "line": 1, "inverse": 1}


def test_severity_errors_say_what_to_use():
    with pytest.raises(InvalidArgumentError, match="mnistc_rotate"):
        severity_magnitude("rotate", 2)
    with pytest.raises(InvalidArgumentError, match="no severity levels"):
        severity_magnitude("stripe", 1)
    for level in (0, 6, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="severity"):
            severity_magnitude("fog", level)


def level_params(name, level, n=3):
    return get(name).sample_params(n, severity_magnitude(name, level), np.random.default_rng(0))


#: Multi-parameter tables: each level's realised parameters are MNIST-C's row.
PARAMETER_TABLES = {
    "glass_blur": (
        ("sigma", "max_delta", "iterations"),
        [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    ),
    "motion_blur": (("radius", "sigma"), [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]),
    "defocus_blur": (("radius", "alias_blur"), [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]),
    "fog": (("amplitude", "decay"), [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)]),
    "spatter": (
        ("loc", "scale", "sigma", "threshold", "mask_sigma"),
        [
            (0.65, 0.3, 4, 0.69, 0.6),
            (0.65, 0.3, 3, 0.68, 0.6),
            (0.65, 0.3, 2, 0.68, 0.5),
            (0.65, 0.3, 1, 0.65, 1.5),
            (0.67, 0.4, 1, 0.65, 1.5),
        ],
    ),
    "snow": (
        ("loc", "scale", "zoom", "threshold", "blur_radius", "blur_sigma", "blend"),
        [
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ],
    ),
    "elastic_transform": (
        ("alpha", "sigma", "affine"),
        [
            (28 * 2, 28 * 0.7, 28 * 0.1),
            (28 * 2, 28 * 0.08, 28 * 0.2),
            (28 * 0.05, 28 * 0.01, 28 * 0.02),
            (28 * 0.07, 28 * 0.01, 28 * 0.02),
            (28 * 0.12, 28 * 0.01, 28 * 0.02),
        ],
    ),
    "saturate": (("gain", "offset"), [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)]),
    "pixelate": (("size",), [(16,), (14,), (11,), (8,), (7,)]),
    "quantize": (("bits",), [(5,), (4,), (3,), (2,), (1,)]),
    "jpeg_compression": (("compression",), [(75,), (82,), (85,), (90,), (93,)]),
    "contrast": (("factor",), [(0.4,), (0.3,), (0.2,), (0.1,), (0.05,)]),
}


@pytest.mark.parametrize("name", sorted(PARAMETER_TABLES))
def test_each_level_realises_mnistc_parameters_exactly(name):
    keys, rows = PARAMETER_TABLES[name]
    for level, row in enumerate(rows, start=1):
        params = level_params(name, level)
        for key, value in zip(keys, row):
            np.testing.assert_array_equal(params[key], value, err_msg=f"{name} level {level} {key}")


def test_zoom_blur_levels_are_mnistc_arange_lists_bit_for_bit():
    lists = [
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.02),
        np.arange(1, 1.26, 0.02),
        np.arange(1, 1.31, 0.03),
    ]
    for level, expected in enumerate(lists, start=1):
        params = level_params("zoom_blur", level, n=1)
        np.testing.assert_array_equal(
            zoom_factors(params["max_zoom"][0], params["zoom_step"][0]), expected
        )


@pytest.mark.parametrize("name", sorted(CORRUPTIONS.values()))
def test_magnitude_zero_is_the_identity_off_the_8_bit_grid(name):
    # The contract test uses 8-bit digits; values between the levels must pass through too.
    images = np.random.default_rng(1).random((4, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(run(name, images, 0.0), images)


# --------------------------------------------------------------------------------- noise


def test_shot_noise_is_poisson_counts_over_photons():
    # Intensity 0.2 (51/255) with c = 25 photons: k / 25 with k ~ Poisson(5).
    images = constant(51 / 255, n=200)
    out = run("shot_noise", images, severity_magnitude("shot_noise", 2)).astype(np.float64)
    counts = out * 25
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
    n = out.size
    assert abs(out.mean() - 0.2) < 3 * math.sqrt(0.008 / n)
    assert out.var() == pytest.approx(0.2 / 25, rel=0.02)  # x / c; sd of the estimate ~0.4 %
    p_zero = math.exp(-5)
    assert abs((counts < 0.5).mean() - p_zero) < 4 * math.sqrt(p_zero / n)
    np.testing.assert_array_equal(run("shot_noise", constant(0.0, 3), 1 / 3), 0.0)


def test_impulse_noise_replaces_the_fraction_by_black_and_white():
    images = constant(0.5, n=100)
    out = run("impulse_noise", images, 0.17)
    assert set(np.unique(out)) == {0.0, 0.5, 1.0}
    replaced = out != 0.5
    assert abs(replaced.mean() - 0.17) < 4 * math.sqrt(0.17 * 0.83 / out.size)
    assert abs((out[replaced] == 1).mean() - 0.5) < 4 * math.sqrt(0.25 / replaced.sum())


def test_gaussian_noise_has_mnistc_sd():
    out = run("mnistc_gaussian_noise", constant(0.5, n=100), 0.08).astype(np.float64)
    assert out.std() == pytest.approx(0.08, rel=0.01)  # clipping at 6 sd is negligible


def test_speckle_noise_is_proportional_to_the_intensity():
    images = constant(0.0, n=50)
    images[:, :, 14:] = 102 / 255  # 0.4
    out = run("speckle_noise", images, 0.15).astype(np.float64)
    np.testing.assert_array_equal(out[:, :, :14], 0.0)
    assert out[:, :, 14:].std() == pytest.approx(0.4 * 0.15, rel=0.02)


# --------------------------------------------------------------------------------- blurs


def gaussian_weights(sigma, truncate=4.0):
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    return taps / taps.sum()


def test_gaussian_blur_blurs_columns_only():
    images = constant(0.0)
    images[0, 14, 10] = 1.0
    out = run("gaussian_blur", images, 2.0)[0]
    np.testing.assert_array_equal(np.delete(out, 10, axis=1), 0.0)
    expected = np.zeros(28)
    expected[14 - 8 : 14 + 9] = gaussian_weights(2.0)
    np.testing.assert_allclose(out[:, 10], expected, atol=1e-7)


def test_glass_blur_matches_mnistc_loop_and_blurs_vertically(digits):
    uint8, images = digits
    seeds = np.arange(5)
    # MNIST-C's sequential loop, swapping values in place, with the documented draws.
    for max_delta, iterations in ((1, 2), (2, 3), (4, 2)):
        order = glass_permutation(seeds, max_delta, iterations)
        positions = [
            (h, w)
            for h in range(28 - max_delta, max_delta, -1)
            for w in range(28 - max_delta, max_delta, -1)
        ]
        words = image_bits(seeds, iterations * len(positions))
        for i in range(len(seeds)):
            image = np.arange(784).reshape(28, 28)
            step = 0
            for _ in range(iterations):
                for h, w in positions:
                    word = int(words[i, step])
                    dx = (((word >> 32) & 0x7FFFFFFF) * 2 * max_delta >> 31) - max_delta
                    dy = (((word & 0xFFFFFFFF) * 2 * max_delta) >> 32) - max_delta
                    if word >> 63:
                        image[h, w], image[h + dy, w + dx] = image[h + dy, w + dx], image[h, w]
                    step += 1
            np.testing.assert_array_equal(order[i], image.reshape(-1))
            assert -max_delta <= dx < max_delta and -max_delta <= dy < max_delta
    # Level 1 never moves column 0 (dx >= -1 from w >= 2), and the blurs are vertical:
    # that column is MNIST-C's blur, uint8 truncation, blur, of column 0 alone.
    out = run("glass_blur", images[:20], 0.7)
    for image, result in zip(uint8[:20], out):
        first = np.uint8(filters.gaussian(image / 255.0, sigma=0.7, channel_axis=-1) * 255)
        second = np.clip(filters.gaussian(first / 255.0, sigma=0.7, channel_axis=-1), 0, 1)
        np.testing.assert_allclose(result[:, 0], second[:, 0], atol=1e-6)


def test_defocus_blur_spreads_a_point_over_the_disk():
    images = constant(0.0)
    images[0, 14, 14] = 1.0
    out = run("defocus_blur", images, 3.0)[0]
    rows, columns = np.mgrid[:28, :28]
    inside = (rows - 14) ** 2 + (columns - 14) ** 2 <= 9
    assert inside.sum() == 29  # lattice points of a radius-3 disk
    np.testing.assert_allclose(out[inside], 1 / 29, atol=1e-6)
    np.testing.assert_allclose(out[~inside], 0, atol=1e-6)
    # Up to radius 6 the blurred disk stays inside its 17x17 grid and sums to 1 (from radius
    # 8 on it touches the grid, and OpenCV's mirrored anti-aliasing adds about 1 % of mass).
    np.testing.assert_allclose(run("defocus_blur", constant(0.6), 6.0), 0.6, atol=1e-6)


def test_motion_blur_is_imagemagick_one_sided_trail():
    images = constant(0.0, n=2)
    images[:, 14, 20] = 1.0
    params = {"sigma": np.full(2, 3.0), "radius": np.full(2, 10.0), "angle": np.array([0.0, 90.0])}
    out = get("motion_blur").apply(images, params)
    weights = np.exp(-(np.arange(21) ** 2) / 18.0)
    weights /= weights.sum()
    trail = np.floor(255 * weights + 1e-9) / 255  # 8-bit PNG, truncated as ImageMagick 6.9 does
    expected = np.zeros((2, 28, 28))
    expected[0, 14, 20 - np.arange(21)] = trail  # angle 0: taps read to the right, ink goes left
    expected[1, 14 - np.arange(15), 20] = trail[:15]  # 90 degrees: upwards, up to the border
    np.testing.assert_allclose(out, expected, atol=1e-7)
    angles = get("motion_blur").sample_params(1000, 3.0, np.random.default_rng(0))["angle"]
    assert -45 <= angles.min() < -44 and 44 < angles.max() <= 45


def test_zoom_blur_of_a_ramp_is_the_mean_of_linear_zooms():
    rows = np.arange(28) / 27.0
    images = np.repeat(rows[None, :, None], 28, axis=2).astype(np.float32)
    out = run("zoom_blur", images, 30.0)[0]
    expected = rows.copy()  # the image itself
    factors = np.arange(1, 1.31, 0.03)
    for factor in factors:
        crop = math.ceil(28 / factor)
        top = (28 - crop) // 2
        size = round(crop * factor)
        trim = (size - 28) // 2
        # scipy's zoom maps output o to input o (crop - 1) / (size - 1): exact on a ramp.
        expected = expected + (top + (np.arange(28) + trim) * (crop - 1) / (size - 1)) / 27.0
    expected /= len(factors) + 1
    np.testing.assert_allclose(out, np.repeat(expected[:, None], 28, axis=1), atol=2e-6)


# ------------------------------------------------------------------------------- weather


def test_plasma_maps_span_exactly_zero_to_one():
    maps = plasma_fractal(np.arange(4), np.array([2.0, 1.7, 1.5, 1.4]))
    np.testing.assert_array_equal(maps.min(axis=(1, 2)), 0.0)
    np.testing.assert_array_equal(maps.max(axis=(1, 2)), 1.0)


def test_fog_adds_haze_then_dims_by_the_image_maximum():
    # Same seed, digit maxima 1 and 0.6: off the digit, out = a h M / (M + a), so the
    # ratio of the two outputs is 0.6 (1 + a) / (0.6 + a) whatever the haze h.
    images = constant(0.0, n=2)
    images[0, 0, 0], images[1, 0, 0] = 1.0, 153 / 255
    params = {"amplitude": np.full(2, 3.0), "decay": np.full(2, 1.4), "seed": np.full(2, 7)}
    out = get("fog").apply(images, params).astype(np.float64).reshape(2, -1)[:, 1:]
    hazy = out[0] > 1e-3
    np.testing.assert_allclose(out[1, hazy] / out[0, hazy], 0.6 * 4 / 3.6, rtol=1e-5)
    assert hazy.mean() > 0.9 and out[0].max() <= 3 / 4 + 1e-6  # a h / (1 + a) <= 3/4
    np.testing.assert_array_equal(run("fog", constant(0.0, 2), 5.0), 0.0)  # max 0: blank stays blank


def test_spatter_paints_grey_mud_where_its_mask_is_at_least_0_8():
    blank = run("spatter", constant(0.0, n=100), 5.0)
    mud = blank[blank > 0]
    assert mud.size > 0
    assert mud.min() >= 0.8 * 63 / 255 - 1e-6 and mud.max() <= 63 / 255 + 1e-6
    white = run("spatter", constant(1.0, n=100), 4.0)
    changed = white[white < 1]
    assert changed.size > 0 and changed.max() <= 1 - 0.8 * (1 - 63 / 255) + 1e-6


def test_snow_brightens_and_adds_a_layer_symmetric_under_half_turn():
    images = constant(0.0, n=3)
    images[:, 5, 7] = 0.4
    params = get("snow").sample_params(3, 5.0, np.random.default_rng(3))
    no_flakes = get("snow").apply(images, params | {"opacity": np.zeros(3)})
    np.testing.assert_allclose(
        no_flakes, np.clip(1.225 * images + 0.225, 0, 1), atol=1e-6
    )  # .55 x + .45 (1.5 x + .5)
    blank = get("snow").apply(constant(0.0, n=3), params)
    np.testing.assert_allclose(blank, np.rot90(blank, 2, axes=(1, 2)), atol=1e-6)
    assert (blank > 0.225 + 1e-3).any()
    angles = get("snow").sample_params(1000, 5.0, np.random.default_rng(0))["angle"]
    assert -135 <= angles.min() < -134 and -46 < angles.max() <= -45


def test_severities_sweep_a_family_through_mnistc_levels(digits):
    # What a study's "severities = [1, ..., 5]" does: one magnitude per level.
    _, images = digits
    changes = [
        np.abs(run("glass_blur", images[:50], severity_magnitude("glass_blur", k)) - images[:50]).mean()
        for k in range(1, 6)
    ]
    assert changes[0] > 0 and changes[-1] > changes[0]
