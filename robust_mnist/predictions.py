"""Predictions on the user's own digit pictures, as the article made them: load, preprocess, classify.

:func:`predict_files` reads PNG/JPEG files and folders of them, turns each picture into an
MNIST-style input (:mod:`robust_mnist.preprocess`), optionally writes what the model will see,
and returns the model's ten probabilities per picture, with a one-line message for each
file that could not be read. ``robust-mnist predict`` prints the result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import models
from .preprocess import load_digits


@dataclass(frozen=True)
class FilePredictions:
    """The model's probabilities for each picture that loaded, and what failed.

    Attributes
    ----------
    names : list of str
        The file of each picture that loaded, in input order.
    probabilities : (N, 10) ndarray of float32
    errors : list of (str, str)
        ``(path, message)`` for each file that failed and each folder without pictures.
    """

    names: list[str]
    probabilities: np.ndarray
    errors: list[tuple[str, str]] = field(default_factory=list)


def predict_files(
    paths: Iterable[str | os.PathLike],
    *,
    model: str | os.PathLike | None = None,
    trust_model: bool = False,
    save_preprocessed: str | os.PathLike | None = None,
    on_unreadable: Callable[[str], None] | None = None,
) -> FilePredictions:
    """Classify pictures of handwritten digits.

    Parameters
    ----------
    paths : iterable of path-like
        Files (tried whatever their suffix) and folders (their PNG/JPEG files).
    model : path-like, optional
        A ``.keras`` model; default the cached article model (trained once if missing).
    trust_model : bool
        Load a ``model`` file this tool did not train (see :func:`models.check_trusted`);
        checked before anything is read.
    save_preprocessed : path-like, optional
        A folder to write the 28x28 image the model sees for each picture
        (:func:`save_digits`).
    on_unreadable : callable, optional
        Called with each failure's one-line message once every input has been read, before
        the model is loaded (which may mean training it for minutes).

    Returns
    -------
    FilePredictions
        No model is loaded when no picture could be read.
    """
    if model:
        # Before any work: a foreign model file is refused unless explicitly trusted.
        models.check_trusted(model, trust_model)
    images, names, errors = load_digits(paths)
    if on_unreadable is not None:
        for _, message in errors:
            on_unreadable(message)
    if not names:
        return FilePredictions(names, np.zeros((0, 10), np.float32), errors)
    if save_preprocessed:
        save_digits(images, names, Path(save_preprocessed))
    path = Path(model) if model else models.ensure_model("article", 0)
    probabilities = models.load_classifier(path).predict_proba(images)
    return FilePredictions(names, probabilities, errors)


def save_digits(images: np.ndarray, names: list[str], folder: Path) -> list[Path]:
    """Write each (28, 28) image as an 8-bit PNG named after its input file's stem.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    names : list of str
        The input file of each image; ``photo.png`` and ``photo.jpg`` become ``photo.png``
        and ``photo-2.png``.
    folder : Path
        Created if missing.

    Returns
    -------
    list of Path
        The files written, in input order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for image, name in zip(images, names):
        stem, count = Path(name).stem, 1
        candidate = stem
        while candidate in used:  # photo.png and photo.jpg must not overwrite each other
            count += 1
            candidate = f"{stem}-{count}"
        used.add(candidate)
        target = folder / f"{candidate}.png"
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(target)
        written.append(target)
    return written
