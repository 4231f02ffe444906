"""The one shared check of an image batch at the public boundary."""

from __future__ import annotations

import numpy as np

from .errors import InvalidArgumentError


def check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Validate a batch of MNIST-style images and return it as a float32 array.

    Parameters
    ----------
    images : (N, 28, 28) array_like of float in [0, 1]
        A single (28, 28) image is not accepted: add the batch axis explicitly.
    name : str
        What to call the argument in the error message.

    Returns
    -------
    (N, 28, 28) ndarray of float32 in [0, 1]
        The input itself when it already is float32, otherwise a converted copy; callers
        must not write into it.

    Raises
    ------
    InvalidArgumentError
        A ValueError, on a wrong shape, a non-finite value or a value outside [0, 1].
    """
    array = np.asarray(images)
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise InvalidArgumentError(f"{name} must have shape (N, 28, 28); got {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InvalidArgumentError(f"{name} must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if array.size and not np.isfinite(array).all():
        raise InvalidArgumentError(f"{name} contains NaN or infinite values")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise InvalidArgumentError(
            f"{name} must lie in [0, 1]; got values in [{array.min():.3g}, {array.max():.3g}]"
            " (divide uint8 images by 255)"
        )
    return array
