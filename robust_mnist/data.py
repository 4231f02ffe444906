"""The bundled MNIST data set, loaded offline and checked against a known checksum.

MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges) ships inside the package in the
layout of Keras's ``mnist.npz``; it is distributed under CC BY-SA 3.0.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import DataError

#: Keys, shapes and dtype of Keras's mnist.npz layout (shapes use None for "any length").
LAYOUT = {
    "x_train": (None, 28, 28),
    "y_train": (None,),
    "x_test": (None, 28, 28),
    "y_test": (None,),
}

#: SHA-256 of the bundled arrays as computed by :func:`arrays_checksum`.
BUNDLED_CHECKSUM = "ba5fa40a5c4923a77c1fdf273629b0411ef50000699cf8498e719877a24b187f"



@dataclass(frozen=True)
class Mnist:
    """MNIST arrays as stored: images uint8 (N, 28, 28), labels uint8 (N,).

    Attributes
    ----------
    x_train, x_test : (N, 28, 28) ndarray of uint8
    y_train, y_test : (N,) ndarray of uint8
    checksum : str
        SHA-256 over the four arrays (see :func:`arrays_checksum`).
    path : str
        Where the arrays were read from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    checksum: str
    path: str


def bundled_path() -> Path:
    """Path of the MNIST file shipped inside the package."""
    return Path(str(resources.files("robust_mnist") / "data" / "mnist.npz"))


def portable_path(path: str | os.PathLike) -> str:
    """``path`` as a record should keep it: the bundled file by its place in the package
    (``robust_mnist/data/mnist.npz``), not by where this machine installed it."""
    path = Path(path)
    if path.resolve() == bundled_path().resolve():
        return "robust_mnist/data/mnist.npz"
    return str(path)


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over each array's key, shape, dtype and bytes, in ``LAYOUT`` order.

    Hashing the arrays rather than the file makes the check independent of how the npz
    was compressed or zipped.
    """
    digest = hashlib.sha256()
    for key in LAYOUT:
        array = np.ascontiguousarray(arrays[key])
        digest.update(key.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.dtype.str.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_mnist(path: str | os.PathLike | None = None, expected_checksum: str | None = None) -> Mnist:
    """Load MNIST from the bundled file, or from another npz of the same layout.

    Parameters
    ----------
    path : path-like, optional
        An npz with keys x_train, y_train, x_test, y_test (Keras's layout). Defaults to the
        copy shipped with the package, whose checksum is always verified.
    expected_checksum : str, optional
        Verify a user-supplied file against this SHA-256 (see :func:`arrays_checksum`).

    Returns
    -------
    Mnist

    Raises
    ------
    DataError
        If the file is missing, unreadable, in another layout, or fails its checksum.
    """
    if path is None:
        path, expected_checksum = bundled_path(), BUNDLED_CHECKSUM
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(LAYOUT) - set(npz.files))
            if missing:
                raise DataError(
                    f"{path}: not an MNIST npz: missing keys {missing} (expected {list(LAYOUT)})"
                )
            arrays = {key: npz[key] for key in LAYOUT}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{path}: cannot read data file ({error})") from None
    for key, shape in LAYOUT.items():
        array = arrays[key]
        if array.dtype != np.uint8 or array.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(array.shape, shape)
        ):
            raise DataError(
                f"{path}: {key} has shape {array.shape} and dtype {array.dtype}; "
                f"expected ({', '.join('N' if s is None else str(s) for s in shape)}) uint8"
            )
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{path}: x_{split} and y_{split} differ in length")
        if arrays[f"y_{split}"].size and arrays[f"y_{split}"].max() > 9:
            raise DataError(f"{path}: y_{split} has labels outside 0-9")
    checksum = arrays_checksum(arrays)
    if expected_checksum is not None and checksum != expected_checksum:
        raise DataError(
            f"{path}: checksum mismatch: got {checksum[:16]}..., expected {expected_checksum[:16]}... "
            "(the file is corrupt or not the MNIST it claims to be)"
        )
    return Mnist(**arrays, checksum=checksum, path=str(path))


def to_float(images: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [0, 1], as the article's model expects."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)
