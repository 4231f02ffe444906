"""A contact sheet: one digit under one perturbation family at several magnitudes, with predictions.

:func:`write_contact_sheet` takes an MNIST test digit (by index) or the user's own picture,
perturbs it at each magnitude with the same random draw (same seed, so the sheet shows one
change growing), runs the model on every perturbed digit and writes a PNG grid of them, each
titled with the model's prediction. It returns a :class:`ContactSheet` holding the numbers,
which ``robust-mnist perturb`` prints as a table.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from . import models
from .classifier import Classifier
from .data import load_mnist, to_float
from .errors import InvalidArgumentError
from .perturbations import get
from .preprocess import load_digit


@dataclass(frozen=True)
class ContactSheet:
    """What :func:`write_contact_sheet` drew and wrote.

    Attributes
    ----------
    path : Path
        The PNG written.
    family : str
    unit : str
        The family's magnitude unit (as configured: relative thinning has its own).
    source_name : str
        ``mnist-test-<index>`` or the picture's file stem.
    label : int or None
        The digit's true class, when known (MNIST test digits).
    reference : int
        The class a prediction is compared with: ``label``, else the model's prediction on
        the clean digit.
    model_name : str
    magnitudes : (M,) ndarray of float64
    images : (M, 28, 28) ndarray of float32 in [0, 1]
        The perturbed digit at each magnitude.
    probabilities : (M, 10) ndarray of float32
    """

    path: Path
    family: str
    unit: str
    source_name: str
    label: int | None
    reference: int
    model_name: str
    magnitudes: np.ndarray
    images: np.ndarray
    probabilities: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """(M,) ndarray of int: the predicted class at each magnitude."""
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """(M,) ndarray of float32: the probability of the predicted class."""
        return self.probabilities[np.arange(len(self.probabilities)), self.predictions]

    @property
    def truth(self) -> str:
        """``"label 7"``, or ``"clean prediction 7"`` for a picture of unknown class."""
        return f"label {self.label}" if self.label is not None else f"clean prediction {self.reference}"


def classifier_for(
    model: str | os.PathLike | None, contract: Mapping[str, Any] | None = None
) -> tuple[Classifier, str]:
    """``(classifier, name)`` for a model file (an ONNX one read with ``contract``); the
    cached article model when it is None.

    Tests replace this function to use a numpy classifier instead of TensorFlow.
    """
    if not model and contract and any(value is not None for value in contract.values()):
        raise InvalidArgumentError(
            "--input-layout, --input-scale and --output describe an ONNX model: give it with --model MODEL.onnx"
        )
    path = Path(model) if model else models.ensure_model("article", 0)
    return models.load_classifier(path, contract), path.name


def load_source(source: str) -> tuple[np.ndarray, int | None, str]:
    """``(image, label, name)`` of an MNIST test index ("0"-"9999") or a picture file.

    Returns
    -------
    image : (1, 28, 28) ndarray of float32 in [0, 1]
    label : int or None
        The true class of an MNIST digit; None for a picture.
    name : str
        ``mnist-test-<index>`` or the picture's file stem.

    Raises
    ------
    InvalidArgumentError
        An index past the test set, or neither an index nor an existing file.
    DataError
        A picture that cannot be read as a digit.
    """
    if re.fullmatch(r"\d+", source):
        mnist = load_mnist()
        index = int(source)
        if index >= len(mnist.x_test):
            raise InvalidArgumentError(
                f"MNIST test index {index} out of range [0, {len(mnist.x_test) - 1}]"
            )
        return to_float(mnist.x_test[index : index + 1]), int(mnist.y_test[index]), f"mnist-test-{index}"
    path = Path(source)
    if not path.exists():
        raise InvalidArgumentError(f"{source}: neither an MNIST test index nor an existing image file")
    return load_digit(path)[None].astype(np.float32), None, path.stem


def contact_sheet_figure(
    images: np.ndarray, titles: Sequence[str], flipped: Sequence[bool], heading: str
) -> Figure:
    """A grid of digits, upscaled with nearest-neighbour pixels, one title under each.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    titles : sequence of str
    flipped : sequence of bool
        Titles drawn in red (the prediction differs from the reference digit).
    heading : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    columns = min(len(images), 9)
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(1.7 * columns, 2.0 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, title, red in zip(axes, images, titles, flipped):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9, color="tab:red" if red else "black")
    figure.suptitle(heading, fontsize=10)
    return figure


def write_contact_sheet(
    source: str,
    family: str,
    magnitudes: Sequence[float] | None = None,
    *,
    options: Mapping | None = None,
    seed: int = 0,
    model: str | os.PathLike | None = None,
    trust_model: bool = False,
    contract: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
) -> ContactSheet:
    """Perturb one digit at each magnitude, predict, and write the contact sheet PNG.

    Parameters
    ----------
    source : str
        An MNIST test-set index ("0"-"9999") or a PNG/JPEG picture of one digit.
    family : str
        A registered perturbation family.
    magnitudes : sequence of float, optional
        In the family's unit; default the family's default grid.
    options : mapping, optional
        The family's options (for example ``{"shape": "patch"}`` for occlude).
    seed : int
        Seeds one draw of the family's random parameters, reused at every magnitude.
    model : path-like, optional
        A ``.keras`` or ``.onnx`` model; default the cached article model (trained once if
        missing).
    trust_model : bool
        Load a Keras ``model`` file this tool did not train (see :func:`models.check_trusted`).
    contract : mapping, optional
        An ONNX ``model``'s ``input_layout``, ``input_scale`` and ``output``, where the
        graph does not tell them (see :mod:`robust_mnist.onnx_model`).
    out : path-like, optional
        Where to write the PNG; default ``perturb-<family>-<source name>.png`` in the
        working directory. Missing parent folders are created.

    Returns
    -------
    ContactSheet

    Raises
    ------
    InvalidArgumentError, DataError, ModelError
        One-line messages naming the bad value or file; checked before any model is loaded.
    """
    perturbation = get(family, **dict(options or {}))
    grid = list(magnitudes if magnitudes else perturbation.default_magnitudes)
    grid = [perturbation.check_magnitude(m) for m in grid]
    image, label, source_name = load_source(source)
    if model:  # as in predict and study: a foreign model file needs trust_model
        models.check_trusted(model, trust_model)
    classifier, model_name = classifier_for(model, contract)

    # The morph family needs the digit's class: the true one, or else what the model sees.
    reference = label if label is not None else int(classifier.predict_proba(image)[0].argmax())
    labels = np.array([reference])
    perturbed = []
    for magnitude in grid:
        params = perturbation.sample_params(
            1, magnitude, np.random.default_rng(seed), images=image, labels=labels
        )
        perturbed.append(perturbation.apply(image, params)[0])
    images = np.stack(perturbed)
    sheet = ContactSheet(
        path=Path(out) if out else Path(f"perturb-{family}-{source_name}.png"),
        family=family,
        unit=perturbation.unit,
        source_name=source_name,
        label=label,
        reference=reference,
        model_name=model_name,
        magnitudes=np.array(grid, dtype=np.float64),
        images=images,
        probabilities=classifier.predict_proba(images),
    )

    titles = [
        f"{m:g} {sheet.unit}\npred {d}  p={p:.2f}"
        for m, d, p in zip(grid, sheet.predictions, sheet.confidence)
    ]
    heading = f"{family} on {source_name} ({sheet.truth}); model {model_name}"
    figure = contact_sheet_figure(
        sheet.images, titles, list(sheet.predictions != reference), heading
    )
    if sheet.path.parent and not sheet.path.parent.exists():
        sheet.path.parent.mkdir(parents=True)
    figure.savefig(sheet.path, dpi=100)
    return sheet
