"""Predictions on the user's own digit pictures, as the article made them: load, preprocess, classify.

:func:`predict_files` reads PNG/JPEG files and folders of them, turns each picture into an
MNIST-style input (:mod:`robust_mnist.preprocess`), optionally writes what the model will see,
and returns the model's ten probabilities per picture, with a one-line message for each
file that could not be read. ``robust-mnist predict`` prints the result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import models
from .errors import InvalidArgumentError
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
    contract: Mapping[str, Any] | None = None,
    save_preprocessed: str | os.PathLike | None = None,
    on_unreadable: Callable[[str], None] | None = None,
) -> FilePredictions:
    """Classify pictures of handwritten digits.

    Parameters
    ----------
    paths : iterable of path-like
        Files (tried whatever their suffix) and folders (their PNG/JPEG files).
    model : path-like, optional
        A ``.keras`` or ``.onnx`` model; default the cached article model (trained once if
        missing). An ONNX file is loaded (and checked) before any picture is read, so that a
        bad one fails before anything is written; a Keras file, whose loading imports
        TensorFlow, once the pictures are read.
    trust_model : bool
        Load a Keras ``model`` file this tool did not train (see :func:`models.check_trusted`).
    contract : mapping, optional
        An ONNX ``model``'s ``input_layout``, ``input_scale`` and ``output``, where the
        graph does not tell them (see :mod:`robust_mnist.onnx_model`).
    save_preprocessed : path-like, optional
        A folder to write the 28x28 image the model sees for each picture
        (:func:`save_digits`).
    on_unreadable : callable, optional
        Called with each failure's one-line message once every input has been read, before
        the model is loaded (which may mean training it for minutes).

    Returns
    -------
    FilePredictions
        No model is loaded when no picture could be read (but an ONNX ``model``).
    """
    classifier = None
    if model:
        # Before any work: a foreign Keras file is refused unless explicitly trusted, and an
        # ONNX file that cannot be used fails before pictures are read or written.
        models.check_trusted(model, trust_model)
        if models.is_onnx(model):
            classifier = models.load_classifier(model, contract)
        else:
            models.check_model_file(model, contract)
    elif contract and any(value is not None for value in contract.values()):
        raise InvalidArgumentError(
            "--input-layout, --input-scale and --output describe an ONNX model: give it with --model MODEL.onnx"
        )
    images, names, errors = load_digits(paths)
    if on_unreadable is not None:
        for _, message in errors:
            on_unreadable(message)
    if not names:
        return FilePredictions(names, np.zeros((0, 10), np.float32), errors)
    if save_preprocessed:
        save_digits(images, names, Path(save_preprocessed))
    if classifier is None:
        classifier = models.load_classifier(Path(model) if model else models.ensure_model("article", 0))
    return FilePredictions(names, classifier.predict_proba(images), errors)


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
