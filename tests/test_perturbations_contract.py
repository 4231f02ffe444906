"""The perturbation contract, checked for every registered family (``available()``).

A family added later is covered without touching this file, unless it cannot run on its
default options (then add them to ``OPTIONS``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from robust_mnist.data import to_float
from robust_mnist.errors import InvalidArgumentError
from robust_mnist.perturbations import available, family, get, perturb

#: Options for families that have no usable defaults.
OPTIONS = {
    "compose": {
        "steps": [
            {"family": "rotate", "magnitude": 30.0},
            {"family": "gaussian_noise", "magnitude": 0.2},
        ]
    },
}

FAMILIES = available()


@pytest.fixture(scope="module")
def digits(mnist):
    """Twelve test digits, float32 in [0, 1], with their labels."""
    return to_float(mnist.x_test[:12]), mnist.y_test[:12].astype(np.int64)


def strongest(name: str) -> float:
    """The default magnitude farthest from the identity: the most visible effect."""
    return max(family(name).default_magnitudes, key=abs)


def run(name, images, labels, magnitude, seed=0):
    return perturb(name, images, magnitude, seed=seed, labels=labels, **OPTIONS.get(name, {}))


def test_the_issue_families_are_registered():
    required = {
        "translate_x", "translate_y", "translate", "rotate", "scale", "shear", "elastic",
        "gaussian_noise", "salt_pepper", "blur", "occlude", "compose",
    }
    assert required <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_metadata_is_complete_and_consistent(name):
    cls = family(name)
    assert isinstance(cls.unit, str) and cls.unit.strip()
    assert isinstance(cls.description, str) and cls.description.strip()
    assert isinstance(cls.random, bool)
    low, high = cls.magnitude_range
    assert low <= high
    assert 0.0 in cls.default_magnitudes, "the default grid must include the identity"
    assert all(low <= m <= high for m in cls.default_magnitudes)
    assert list(cls.default_magnitudes) == sorted(cls.default_magnitudes)


@pytest.mark.parametrize("name", FAMILIES)
def test_output_is_a_float32_batch_in_the_unit_interval(name, digits):
    images, labels = digits
    for magnitude in family(name).default_magnitudes:
        out, _ = run(name, images, labels, magnitude)
        assert out.shape == images.shape
        assert out.dtype == np.float32
        assert np.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", FAMILIES)
def test_magnitude_zero_is_the_identity(name, digits):
    images, labels = digits
    out, _ = run(name, images, labels, 0.0)
    np.testing.assert_allclose(out, images, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_strongest_default_magnitude_changes_the_digits(name, digits):
    images, labels = digits
    out, _ = run(name, images, labels, strongest(name))
    changed = np.abs(out - images).reshape(len(images), -1).max(axis=1) > 0.01
    assert changed.mean() > 0.5


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_gives_the_same_output(name, digits):
    images, labels = digits
    first, first_params = run(name, images, labels, strongest(name), seed=7)
    second, second_params = run(name, images, labels, strongest(name), seed=7)
    np.testing.assert_array_equal(first, second)
    assert first_params.keys() == second_params.keys()
    for key in first_params:
        np.testing.assert_array_equal(first_params[key], second_params[key])


@pytest.mark.parametrize("name", [n for n in FAMILIES if get(n, **OPTIONS.get(n, {})).random])
def test_a_different_seed_gives_a_different_output(name, digits):
    images, labels = digits
    first, _ = run(name, images, labels, strongest(name), seed=1)
    second, _ = run(name, images, labels, strongest(name), seed=2)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_input_is_never_mutated(name, digits):
    images, labels = digits
    images, labels = images.copy(), labels.copy()
    before, labels_before = images.copy(), labels.copy()
    perturbation = get(name, **OPTIONS.get(name, {}))
    params = perturbation.sample_params(
        len(images), strongest(name), np.random.default_rng(0), images=images, labels=labels
    )
    params_before = {key: np.array(value, copy=True) for key, value in params.items()}
    perturbation.apply(images, params)
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(labels, labels_before)
    for key, value in params.items():
        np.testing.assert_array_equal(value, params_before[key])


@pytest.mark.parametrize("name", FAMILIES)
def test_the_global_numpy_random_state_is_untouched(name, digits):
    images, labels = digits
    state = np.random.get_state()
    run(name, images, labels, strongest(name), seed=3)
    after = np.random.get_state()
    assert state[0] == after[0]
    np.testing.assert_array_equal(state[1], after[1])
    assert state[2:] == after[2:]


@pytest.mark.parametrize("name", FAMILIES)
def test_params_are_numeric_1d_arrays_of_length_n(name, digits):
    images, labels = digits
    _, params = run(name, images, labels, strongest(name))
    assert params, "a family must record what it did"
    for key, value in params.items():
        assert isinstance(key, str) and key
        assert isinstance(value, np.ndarray), key
        assert value.shape == (len(images),), key
        assert np.issubdtype(value.dtype, np.number) or value.dtype == bool, key


@pytest.mark.parametrize("name", FAMILIES)
def test_an_image_result_does_not_depend_on_its_batch(name, digits):
    images, labels = digits
    perturbation = get(name, **OPTIONS.get(name, {}))
    params = perturbation.sample_params(
        len(images), strongest(name), np.random.default_rng(5), images=images, labels=labels
    )
    whole = perturbation.apply(images, params)
    for start, stop in [(0, 1), (3, 7), (11, 12), (2, 12)]:
        part = perturbation.apply(
            images[start:stop], {key: value[start:stop] for key, value in params.items()}
        )
        np.testing.assert_array_equal(part, whole[start:stop])


@pytest.mark.parametrize("name", FAMILIES)
def test_params_read_back_from_a_float64_table_regenerate_the_images(name, digits):
    # Results tables store every param as a float64 column (param_<key>).
    images, labels = digits
    perturbation = get(name, **OPTIONS.get(name, {}))
    params = perturbation.sample_params(
        len(images), strongest(name), np.random.default_rng(9), images=images, labels=labels
    )
    stored = {key: np.asarray(value, dtype=np.float64) for key, value in params.items()}
    np.testing.assert_array_equal(perturbation.apply(images, stored), perturbation.apply(images, params))


@pytest.mark.parametrize("name", FAMILIES)
def test_a_magnitude_outside_the_range_raises(name, digits):
    images, labels = digits
    low, high = get(name, **OPTIONS.get(name, {})).magnitude_range
    for outside in (low - 1.0, high + 1.0):
        if math.isfinite(outside):
            with pytest.raises(InvalidArgumentError, match="outside"):
                run(name, images, labels, outside)


def test_an_unknown_family_name_lists_the_known_ones(digits):
    images, _ = digits
    with pytest.raises(InvalidArgumentError, match="unknown perturbation family 'rotat'") as error:
        perturb("rotat", images, 1.0)
    for name in FAMILIES:
        assert name in str(error.value)


@pytest.mark.parametrize("name", FAMILIES)
def test_an_unknown_option_is_an_invalid_argument(name):
    with pytest.raises(InvalidArgumentError, match=name):
        get(name, **OPTIONS.get(name, {}), no_such_option=1)


def test_images_of_the_wrong_shape_are_an_invalid_argument():
    with pytest.raises(InvalidArgumentError, match=r"shape \(N, 28, 28\)"):
        perturb("rotate", np.zeros((28, 28), np.float32), 10.0)
