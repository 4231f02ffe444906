"""The bundled MNIST: layout, known facts from the data's README, and checksum failures."""

import hashlib

import numpy as np
import pytest

from robust_mnist.data import DataError, bundled_path, load_mnist, to_float


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_shapes_and_dtypes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_test.shape == (10000,)


def test_known_facts_of_mnist(mnist):
    # Figures from shared/data/README.md, independent of our loader.
    assert list(mnist.y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(mnist.y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(np.bincount(mnist.y_test)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert hashlib.md5(mnist.x_test.tobytes()).hexdigest() == "240610fa99e73bfa49df8e7fc24d3206"
    scaled = to_float(mnist.x_train)
    assert scaled.dtype == np.float32 and scaled.min() == 0.0 and scaled.max() == 1.0
    assert scaled.mean() == pytest.approx(0.1307, abs=1e-4)
    assert scaled.std() == pytest.approx(0.3081, abs=1e-4)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _small_arrays():
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_train": np.arange(20, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "y_test": np.arange(10, dtype=np.uint8),
    }


def test_other_npz_of_same_layout_loads(tmp_path):
    data = load_mnist(_write(tmp_path / "small.npz", **_small_arrays()))
    assert data.x_train.shape == (20, 28, 28) and data.y_test.tolist() == list(range(10))


def test_checksum_mismatch_raises(tmp_path):
    arrays = _small_arrays()
    good = load_mnist(_write(tmp_path / "a.npz", **arrays)).checksum
    arrays["x_test"][0, 0, 0] ^= 1  # one flipped bit
    path = _write(tmp_path / "b.npz", **arrays)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist(path, expected_checksum=good)


def test_bundled_file_is_verified(tmp_path, monkeypatch):
    # A tampered copy in place of the bundled file must be refused, not silently used.
    arrays = dict(np.load(bundled_path()))
    arrays["y_test"] = arrays["y_test"].copy()
    arrays["y_test"][0] = 3
    fake = _write(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setattr("robust_mnist.data.bundled_path", lambda: fake)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("y_test"), "missing keys"),
        (lambda a: a.update(x_train=a["x_train"][:, :27]), "x_train has shape"),
        (lambda a: a.update(x_test=a["x_test"].astype(np.float32)), "x_test has shape"),
        (lambda a: a.update(y_train=a["y_train"][:5]), "differ in length"),
        (lambda a: a.update(y_test=a["y_test"] + 10), "labels outside"),
    ],
)
def test_wrong_layout_raises(tmp_path, change, message):
    arrays = _small_arrays()
    change(arrays)
    with pytest.raises(DataError, match=message):
        load_mnist(_write(tmp_path / "bad.npz", **arrays))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_mnist(tmp_path / "absent.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(bundled_path().read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated.npz"):
        load_mnist(truncated)
