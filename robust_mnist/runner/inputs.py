"""The inputs of a run: the study's digits (MNIST test digits or the user's folder, with their
morphometrics), each spec's subset of them, and the models, loaded once.

Everything here happens before the first cell is computed, and is deterministic: a subset
depends on the study seed and its size only, so a resumed run finds the same digits.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import models
from ..classifier import Classifier
from ..data import load_mnist, to_float
from ..errors import DataError, InvalidArgumentError, StudyError
from ..export import cached_onnx_export
from ..morphometrics import slant, thickness
from ..preprocess import load_digits
from ..rundir import Digits, digits_checksum
from ..study import ModelSpec, StudySpec
from .cells import cell_rng


def stratified_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` items drawn without replacement, keeping the class proportions.

    Each class gets ``floor(n * share)`` items, and the remaining ones go to the classes with
    the largest fractional parts (ties to the smaller class).

    Parameters
    ----------
    labels : (N,) ndarray of int
    n : int
        1 <= n <= N.
    rng : numpy.random.Generator

    Returns
    -------
    (n,) ndarray of int64
        Sorted indices into ``labels``.
    """
    labels = np.asarray(labels)
    if not 1 <= n <= len(labels):
        raise ValueError(f"subset size must be between 1 and {len(labels)}; got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n / len(labels))
    take = np.floor(quota).astype(np.int64)
    order = np.lexsort((classes, -(quota - take)))
    take[order[: n - int(take.sum())]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=int(k), replace=False)
        for cls, k in zip(classes, take)
        if k
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------- inputs
def load_study_digits(spec: StudySpec) -> Digits:
    """The study's digits: MNIST test digits (all or a stratified subset) or the user's folder.

    Raises
    ------
    DataError
        One line naming the file, for an unreadable image or a missing/bad label.
    """
    data = spec.data
    if data.source == "mnist-test":
        x_test, y_test, mnist_checksum = _mnist_test()
        indices = np.arange(len(x_test))
        if data.n is not None and data.n < len(indices):
            indices = stratified_subset(y_test, data.n, cell_rng(spec.seed, "data-subset"))
        images = x_test[indices]
        labels = y_test[indices].astype(np.int64)
        ids = np.array([f"mnist-test:{i}" for i in indices])
        extra = {"mnist_checksum": mnist_checksum}
    else:
        floats, names, errors = load_digits([data.path])
        if errors:
            more = f" (and {len(errors) - 1} more failed)" if len(errors) > 1 else ""
            raise DataError(f"{errors[0][1]}{more}")
        images = np.round(floats * 255.0).astype(np.uint8)
        names = [Path(name).name for name in names]
        labels = _folder_labels(names, data.labels, spec.file)
        ids = np.array(names)
        extra = {"path": str(data.path), "labels_file": None if data.labels is None else str(data.labels)}
    info = {
        "source": data.source,
        "n": int(len(images)),
        "checksum": digits_checksum(images, labels),
        **extra,
    }
    return Digits(images=images, labels=labels, ids=ids, info=info)


@functools.lru_cache(maxsize=1)
def _mnist_test() -> tuple[np.ndarray, np.ndarray, str]:
    """The bundled MNIST test split (checksum-verified once per process; read-only arrays)."""
    mnist = load_mnist()
    x_test, y_test = mnist.x_test, mnist.y_test
    x_test.flags.writeable = y_test.flags.writeable = False
    return x_test, y_test, mnist.checksum


def _folder_labels(names: list[str], labels_file: Path | None, study_file: Path | None) -> np.ndarray:
    if labels_file is None:
        labels = []
        for name in names:
            if not name[:1].isdigit():
                raise DataError(
                    f"{name}: cannot tell the digit's label: start the file name with it "
                    f"(as in 7_a.png) or give data.labels = a CSV of file,label in {study_file}"
                )
            labels.append(int(name[0]))
        return np.array(labels, dtype=np.int64)
    table: dict[str, int] = {}
    with open(labels_file, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                file, label = Path(row["file"].strip()).name, int(row["label"])
            except (KeyError, TypeError, AttributeError, ValueError):
                raise DataError(
                    f"{labels_file}: line {line}: expected columns file,label with a digit 0-9"
                ) from None
            if not 0 <= label <= 9:
                raise DataError(f"{labels_file}: line {line}: label {label} is not a digit 0-9")
            table[file] = label
    missing = [name for name in names if name not in table]
    if missing:
        raise DataError(f"{labels_file}: no label for {missing[0]}" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return np.array([table[name] for name in names], dtype=np.int64)


def spec_subsets(spec: StudySpec, digits: Digits) -> dict[str, np.ndarray]:
    """Indices into the study digits for each spec (a class-stratified subset if ``n`` is set).

    The subset depends on the seed and ``n`` only, so specs with the same ``n`` (e.g. two
    morph methods) use the same digits.
    """
    everything = np.arange(len(digits.images), dtype=np.int64)
    subsets = {}
    for index, perturbation in enumerate(spec.perturbations):
        n = perturbation.n
        if n is None or n == len(everything):
            subsets[perturbation.label] = everything
        elif n > len(everything):
            raise StudyError(
                f"{spec.file}: perturbations[{index}].n: {n} exceeds the study's "
                f"{len(everything)} digits"
            )
        else:
            subsets[perturbation.label] = stratified_subset(
                digits.labels, n, cell_rng(spec.seed, "subset", n)
            )
    return subsets


# --------------------------------------------------------------------------- results

def digit_morphometrics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Stroke thickness (px) and slant (degrees) of each clean digit, Morpho-MNIST's definitions.

    Stored in digits.npz, so that the report can set instability against them without
    measuring anything itself.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of uint8

    Returns
    -------
    dict
        ``thickness`` and ``slant``, each (N,) float64 (NaN for a blank image).
    """
    floats = to_float(images)
    return {"thickness": thickness(floats), "slant": slant(floats)}


@dataclass
class LoadedModel:
    """A model ready to predict, with what run.json records about it."""

    classifier: Classifier
    info: dict[str, Any] = field(default_factory=dict)


ModelLoader = Callable[[ModelSpec], LoadedModel]


#: How a Keras model (an ``arch`` or a ``.keras`` file) runs: its own TensorFlow adapter, or
#: ONNX Runtime on its export (cached beside it, checked equal to 1e-5 when made).
ENGINES = ("keras", "onnx")
DEFAULT_ENGINE = "onnx"


def load_model(model: ModelSpec, engine: str = DEFAULT_ENGINE, retrain: bool | None = None) -> LoadedModel:
    """Default model loader: an architecture's model (:func:`robust_mnist.models.ensure_model`:
    the user's retrained copy, else the bundled one, else trained once and cached; trained
    again first if ``retrain``, which defaults to the spec's ``retrain``), or a model file
    (``.keras``, or ``.onnx`` with the spec's input contract; ``retrain`` does not apply).

    The training record (the JSON beside a Keras model file, when it came from training) goes
    into run.json so that the report can show the model's validation figures. An ONNX file's
    entry records its runtime and its resolved contract instead (``contract``, with the keys
    that were ``detected``), which workers reload the file with.

    With ``engine="onnx"`` a Keras model runs on ONNX Runtime: its export
    (:func:`robust_mnist.export.cached_onnx_export`) is made once beside it, and the entry
    records the export as the model file (what workers load and check) and the Keras file it
    came from. ``.onnx`` files always run on ONNX Runtime.
    """
    if engine not in ENGINES:
        raise InvalidArgumentError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    retrain = model.retrain if retrain is None else retrain
    path = models.ensure_model(model.arch, model.seed, retrain=retrain) if model.path is None else model.path
    if models.is_onnx(path):
        classifier = models.load_classifier(path, model.contract)
        # A record beside an .onnx file would describe the Keras model it was exported from.
        return LoadedModel(classifier, {
            "arch": None, "seed": None, "path": str(path), "checksum": models.file_checksum(path),
            "training": None, "engine": "onnx", **classifier.describe(),
        })
    record_file = models.record_path(path)
    training = json.loads(record_file.read_text()) if record_file.is_file() else None
    info = {
        "arch": model.arch if model.path is None else (training or {}).get("arch"),
        "seed": model.seed if model.path is None else (training or {}).get("seed"),
        "path": str(path),
        "checksum": models.file_checksum(path),
        "training": training,
    }
    if engine == "keras":
        return LoadedModel(models.load_classifier(path), {**info, "engine": "keras"})
    # Trust in a foreign .keras file was checked where the study started (--trust-model).
    exported = cached_onnx_export(path, trust_model=True)
    classifier = models.load_classifier(exported)
    return LoadedModel(classifier, {
        **info, "path": str(exported), "checksum": models.file_checksum(exported),
        "exported_from": {"path": info["path"], "checksum": info["checksum"]},
        "engine": "onnx", **classifier.describe(),
    })


# --------------------------------------------------------------------------- progress
