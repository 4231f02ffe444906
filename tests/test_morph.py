"""Morph: exact endpoints, ink that moves, target selection checked against naive loops.

Most tests use a small custom target pool (the first 300 MNIST training digits) so that they
run in a fraction of a second; the conformance test exercises the default, full pool.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import optical_flow_ilk

from robust_mnist.data import to_float
from robust_mnist.perturbations import get, perturb
from robust_mnist.perturbations import morph as morph_module
from robust_mnist.perturbations.morph import CENTRE, centre, lucas_kanade

POOL = 300


@pytest.fixture(scope="module")
def pool(mnist):
    return mnist.x_train[:POOL], mnist.y_train[:POOL].astype(np.int64)


@pytest.fixture(scope="module")
def sources(mnist):
    return to_float(mnist.x_test[:12]), mnist.y_test[:12].astype(np.int64)


def morph(target_pool, **options):
    return get("morph", pool_images=target_pool[0], pool_labels=target_pool[1], **options)


def centre_of_mass_x(images):
    columns = images.sum(axis=1)
    return (columns * np.arange(28)).sum(axis=1) / columns.sum(axis=1)


@pytest.mark.parametrize("method", ["flow", "crossfade"])
def test_t0_is_the_source_and_t1_the_target_exactly(pool, sources, method):
    images, labels = sources
    family = morph(pool, method=method)
    params = family.sample_params(len(images), 1.0, np.random.default_rng(0), images=images, labels=labels)
    targets = to_float(pool[0][params["target_index"]])
    np.testing.assert_array_equal(family.apply(images, params), targets)
    np.testing.assert_array_equal(family.apply(images, dict(params, t=np.zeros(len(images)))), images)


def test_crossfade_at_one_half_is_the_pixel_mean(pool, sources):
    images, labels = sources
    family = morph(pool, method="crossfade")
    params = family.sample_params(len(images), 0.5, np.random.default_rng(0), images=images, labels=labels)
    targets = to_float(pool[0][params["target_index"]])
    np.testing.assert_allclose(family.apply(images, params), (images + targets) / 2, atol=1e-6)


def test_the_flow_morph_moves_the_ink_instead_of_fading_it(mnist):
    # A "1" (a thin vertical stroke) and the same digit shifted 4 px right, as the only pool
    # digit of another class: half way, the flow morph is the digit shifted by 2 px at full
    # intensity, while a crossfade shows two half-bright strokes.
    one = to_float(mnist.x_test[2:3])
    assert mnist.y_test[2] == 1
    shifted = ndimage.shift(one, (0, 0, 4), order=1, mode="constant")
    pool = (np.concatenate([one, shifted]), np.array([1, 7]))
    halfway = {}
    for method in ("flow", "crossfade"):
        family = morph(pool, method=method, target=7)
        params = family.sample_params(1, 0.5, np.random.default_rng(0), images=one, labels=np.array([1]))
        assert params["target_index"][0] == 1
        halfway[method] = family.apply(one, params)
    flow, fade = halfway["flow"], halfway["crossfade"]
    assert centre_of_mass_x(flow)[0] - centre_of_mass_x(one)[0] == pytest.approx(2.0, abs=0.25)
    assert flow.max() >= 0.85 * one.max()
    assert fade.max() <= 0.6 * one.max()
    # And it is the half-shifted digit itself, to within interpolation error.
    expected = ndimage.shift(one, (0, 0, 2), order=1, mode="constant")
    assert np.abs(flow - expected).mean() < 0.25 * np.abs(fade - expected).mean()


def test_the_nearest_target_class_is_another_class_and_the_most_confusable(pool, sources):
    images, labels = sources
    family = morph(pool)
    params = family.sample_params(len(images), 0.5, np.random.default_rng(0), images=images, labels=labels)
    assert (params["target_class"] != labels).all()
    np.testing.assert_array_equal(params["target_class"], pool[1][params["target_index"]])
    # Naive reference: loop over every pool digit, after centring.
    pool_centred = centre(to_float(pool[0])).astype(np.float64)
    for i, source in enumerate(centre(images).astype(np.float64)):
        distances = ((pool_centred - source) ** 2).sum(axis=(1, 2))
        allowed = pool[1] != labels[i]
        nearest = np.flatnonzero(allowed)[distances[allowed].argmin()]
        assert params["target_index"][i] == nearest
        assert params["target_class"][i] == pool[1][nearest]


@pytest.mark.parametrize("target", [3, 8])
def test_a_named_class_gets_the_nearest_digit_of_that_class(pool, sources, target):
    images, labels = sources
    params = morph(pool, target=target).sample_params(
        len(images), 0.5, np.random.default_rng(0), images=images, labels=labels
    )
    assert (params["target_class"] == target).all()
    pool_centred = centre(to_float(pool[0])).astype(np.float64)
    members = np.flatnonzero(pool[1] == target)
    for i, source in enumerate(centre(images).astype(np.float64)):
        distances = ((pool_centred[members] - source) ** 2).sum(axis=(1, 2))
        assert params["target_index"][i] == members[distances.argmin()]


def test_target_all_cycles_through_every_other_class_over_nine_draws(pool, sources):
    images, labels = sources
    family = morph(pool, target="all")
    assert family.random
    rng = np.random.default_rng(0)
    classes = np.stack([
        family.sample_params(len(images), 0.5, rng, images=images, labels=labels, draw=k)["target_class"]
        for k in range(9)
    ])
    for i, label in enumerate(labels):
        assert sorted(classes[:, i]) == [c for c in range(10) if c != label]


def test_the_medoid_pool_uses_each_class_medoid(pool, sources):
    images, labels = sources
    params = morph(pool, target=4, pool="medoid").sample_params(
        len(images), 0.5, np.random.default_rng(0), images=images, labels=labels
    )
    members = np.flatnonzero(pool[1] == 4)
    flat = to_float(pool[0][members]).reshape(len(members), -1).astype(np.float64)
    summed = [np.sqrt(((flat - row) ** 2).sum(axis=1)).sum() for row in flat]
    assert (params["target_index"] == members[int(np.argmin(summed))]).all()


def test_without_labels_a_source_takes_the_class_of_its_nearest_pool_digit(pool, mnist):
    # Pool digits themselves: their nearest pool digit is their own copy, so the inferred
    # label is right, and a copy is never its own target.
    images = to_float(mnist.x_train[:10])
    params = morph(pool).sample_params(10, 0.5, np.random.default_rng(0), images=images)
    assert (params["target_class"] != mnist.y_train[:10]).all()
    assert (params["target_index"] != np.arange(10)).all()


def test_centring_puts_the_centre_of_mass_at_the_centre(sources):
    squares = np.zeros((3, 28, 28), np.float32)
    squares[0, 3:7, 18:22] = 1.0
    squares[1, 15:25, 2:5] = 0.5
    squares[2, 10:13, 10:20] = 1.0
    images = np.concatenate([squares, sources[0]])
    moved = centre(images)
    rows = moved.sum(axis=2)
    np.testing.assert_allclose(centre_of_mass_x(moved), CENTRE[0], atol=1e-3)
    np.testing.assert_allclose((rows * np.arange(28)).sum(axis=1) / rows.sum(axis=1), CENTRE[1], atol=1e-3)
    np.testing.assert_allclose(moved.sum(axis=(1, 2)), images.sum(axis=(1, 2)), rtol=1e-5)


def test_lucas_kanade_is_scikit_images_ilk_on_a_batch(mnist):
    # In float64 and without regularisation it is the same algorithm: equal wherever
    # scikit-image's local systems are well conditioned (elsewhere it returns huge values).
    reference = to_float(mnist.x_test[:4]).astype(np.float64)
    moving = to_float(mnist.x_train[:4]).astype(np.float64)
    ours = lucas_kanade(reference, moving, regularisation=0.0)
    theirs = np.stack([optical_flow_ilk(r, m, dtype=np.float64) for r, m in zip(reference, moving)])
    conditioned = np.abs(theirs).max(axis=1) < 10
    assert conditioned.mean() > 0.9
    np.testing.assert_allclose(
        ours.transpose(0, 2, 3, 1)[conditioned], theirs.transpose(0, 2, 3, 1)[conditioned], atol=1e-5
    )
    # The regularised field stays bounded where scikit-image's explodes.
    assert np.abs(lucas_kanade(reference.astype(np.float32), moving.astype(np.float32))).max() < 10


def test_fields_are_computed_once_per_pair_and_reused_for_every_t(pool, sources, monkeypatch):
    images, labels = sources
    family = morph(pool)
    params = family.sample_params(len(images), 0.5, np.random.default_rng(0), images=images, labels=labels)
    calls = []
    original = morph_module.estimate_flow
    monkeypatch.setattr(morph_module, "estimate_flow", lambda s, t: calls.append(len(s)) or original(s, t))
    morph_module._FIELDS.clear()
    first = family.apply(images, params)
    for t in (0.2, 0.7, 0.5):
        family.apply(images, dict(params, t=np.full(len(images), t)))
    assert calls == [len(images)]
    np.testing.assert_array_equal(family.apply(images, params), first)


def test_a_morph_through_perturb_uses_the_labels(pool, sources):
    images, labels = sources
    out, params = perturb("morph", images, 0.3, labels=labels, pool_images=pool[0], pool_labels=pool[1])
    assert out.shape == images.shape and (params["target_class"] != labels).all()
    np.testing.assert_array_equal(params["t"], 0.3)


def test_invalid_uses_raise_clear_errors(pool, sources):
    images, labels = sources
    with pytest.raises(ValueError, match="needs the source images"):
        morph(pool).sample_params(3, 0.5, np.random.default_rng(0))
    for options, message in [
        ({"method": "warp"}, "method"),
        ({"target": 10}, "target"),
        ({"target": True}, "target"),
        ({"pool": "mean"}, "pool"),
    ]:
        with pytest.raises(ValueError, match=message):
            morph(pool, **options)
    with pytest.raises(ValueError, match="both"):
        get("morph", pool_images=pool[0])
    rng = np.random.default_rng(0)
    params = morph(pool).sample_params(len(images), 0.5, rng, images=images, labels=labels)
    with pytest.raises(ValueError, match="target_class"):
        morph(pool).apply(images, dict(params, target_class=(params["target_class"] + 1) % 10))
    with pytest.raises(ValueError, match="target_index"):
        morph(pool).apply(images, dict(params, target_index=np.full(len(images), POOL)))
    only_ones = (pool[0][pool[1] == 1], pool[1][pool[1] == 1])
    with pytest.raises(ValueError, match="no digits of class"):
        morph(only_ones, target=3).sample_params(2, 0.5, rng, images=images[:2], labels=labels[:2])
