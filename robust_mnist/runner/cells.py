"""The unit of work of a study: a cell (one spec label at one magnitude and draw), its random
stream, and how it is computed: perturb its digits, then run every model on them.

Randomness: the generator of a cell derives only from (study seed, spec label, magnitude, draw)
through :class:`numpy.random.SeedSequence` (:func:`cell_rng`), never from the model, the
execution order or the chunking. The realised parameters are sampled once over the whole cell
(``sample_params``), then ``apply`` runs in chunks of at most ``chunk_size`` images and the
models predict in fixed blocks of :data:`MODEL_BATCH` images aligned to the cell (a model's
float results can depend on its batch composition), so the table is bit for bit the same
whatever ``chunk_size`` is, and whichever executor computes the cell.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..classifier import Classifier, check_probabilities
from ..rundir import CLEAN, cell_key, stamp_cell
from ..study import StudySpec
from . import DEFAULT_CHUNK_SIZE

#: Images per ``predict_proba`` call. Fixed (not the chunk size): a model's float results may
#: depend on its batch composition, so identical batches keep tables independent of chunking.
MODEL_BATCH = 4096


@dataclass(frozen=True)
class Cell:
    """One unit of work: a spec label at one magnitude and draw (or the clean digits)."""

    label: str
    magnitude: float = 0.0
    draw: int = 0

    @property
    def key(self) -> str:
        """File stem of the cell: ``clean`` or ``<label>__<repr(magnitude)>__d<draw>``."""
        return cell_key(self.label, self.magnitude, self.draw)


def plan_cells(spec: StudySpec) -> list[Cell]:
    """All cells of a study in table order: clean, then each spec's magnitudes and draws."""
    cells = [Cell(CLEAN)]
    for perturbation in spec.perturbations:
        for magnitude in perturbation.magnitudes:
            for draw in range(perturbation.draws):
                cells.append(Cell(perturbation.label, magnitude, draw))
    return cells


def cell_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator determined by the study seed and a few labels (e.g. label, magnitude, draw).

    The labels are hashed into the entropy, so streams for different cells are independent
    and do not depend on the order in which cells run.
    """
    text = "\x1f".join(repr(float(p)) if isinstance(p, float) else str(p) for p in parts)
    digest = hashlib.sha256(text.encode()).digest()
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), int.from_bytes(digest[:16], "little")])
    )


class Progress:
    """Callbacks the runner makes as it works; the CLI subclasses it to draw a bar.

    Library code never prints: it reports here. All methods do nothing by default.
    """

    def start(self, total: int, cells: int) -> None:
        """The run computes ``cells`` cells, ``total`` digit evaluations (images x models)."""

    def cell_started(self, cell: Cell, evaluations: int) -> None:
        """A cell of ``evaluations`` digit evaluations starts."""

    def advance(self, evaluations: int) -> None:
        """``evaluations`` more digit evaluations are done."""

    def cell_finished(self, cell: Cell) -> None:
        """The cell is written to disk."""

    def stage(self, text: str) -> None:
        """A step outside the cells (loading models, consolidating, exemplars) starts."""


def compute_clean(
    images: np.ndarray, labels: np.ndarray, classifiers: dict[str, Classifier], progress: Progress
) -> pa.Table:
    """Every model's predictions on the unperturbed digits: the ``clean`` cell's rows."""
    progress.cell_started(Cell(CLEAN), len(images) * len(classifiers))
    index = np.arange(len(images), dtype=np.int64)
    tables = []
    for name, classifier in classifiers.items():
        probabilities = np.empty((len(images), 10), np.float32)
        for start in range(0, len(images), MODEL_BATCH):
            batch = images[start : start + MODEL_BATCH]
            probabilities[start : start + len(batch)] = predict(classifier, batch, name)
            progress.advance(len(batch))
        pred = probabilities.argmax(axis=1)
        tables.append(_rows(name, CLEAN, 0.0, 0, index, labels, pred, probabilities, {}))
    return stamp_cell(pa.concat_tables(tables))


@dataclass(frozen=True)
class PerturbedCell:
    """A cell's perturbed digits and realised parameters, before any model sees them.

    Attributes
    ----------
    cell : Cell
    images : (n, 28, 28) ndarray of float32 in [0, 1]
    params : dict of str to (n,) ndarray
    dtypes : dict of str to str
        Each parameter's original dtype (they are stored as float64 columns).
    """

    cell: Cell
    images: np.ndarray
    params: dict[str, np.ndarray]
    dtypes: dict[str, str]


def perturb_cell(
    cell: Cell,
    perturbation,
    clean: np.ndarray,
    labels: np.ndarray,
    seed: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> PerturbedCell:
    """Sample a cell's parameters over all its digits, then apply them chunk by chunk.

    Parameters
    ----------
    cell : Cell
    perturbation : Perturbation
        The spec's family instance.
    clean : (n, 28, 28) ndarray of float32 in [0, 1]
        The cell's clean digits.
    labels : (n,) ndarray of int
    seed : int
        The study seed (with the cell it determines the random stream, see :func:`cell_rng`).
    chunk_size : int
        Images per ``apply`` call; the result does not depend on it.

    Returns
    -------
    PerturbedCell
    """
    n = len(clean)
    rng = cell_rng(seed, cell.label, float(cell.magnitude), cell.draw)
    params = perturbation.sample_params(n, cell.magnitude, rng, images=clean, labels=labels, draw=cell.draw)
    dtypes = _check_params(params, n, cell.label)
    images = np.empty((n, 28, 28), np.float32)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        perturbed = perturbation.apply(clean[start:stop], {k: v[start:stop] for k, v in params.items()})
        if np.shape(perturbed) != (stop - start, 28, 28):
            raise ValueError(
                f"family {cell.label!r}: apply returned shape {np.shape(perturbed)}; "
                f"expected ({stop - start}, 28, 28)"
            )
        images[start:stop] = perturbed
    return PerturbedCell(cell, images, params, dtypes)


def evaluate_cell(
    perturbed: PerturbedCell,
    labels: np.ndarray,
    image_ids: np.ndarray,
    classifiers: dict[str, Classifier],
    clean_pred: dict[str, np.ndarray],
    progress: Progress | None = None,
) -> pa.Table:
    """Every model's predictions on a perturbed cell, as result rows.

    Models see blocks of :data:`MODEL_BATCH` digits aligned to the cell, so their float
    results do not depend on how the cell was chunked.

    Parameters
    ----------
    perturbed : PerturbedCell
    labels : (n,) ndarray of int
    image_ids : (n,) ndarray of int
        The digits' indices into digits.npz.
    classifiers : dict of str to Classifier
    clean_pred : dict of str to (n,) ndarray of int
        Each model's clean prediction for these digits.
    progress : Progress, optional

    Returns
    -------
    pyarrow.Table
        Rows model by model, images in the given order; its schema metadata holds the
        parameters' dtypes (to regenerate images from the table exactly).
    """
    progress = progress or Progress()
    cell, images = perturbed.cell, perturbed.images
    probabilities = {name: np.empty((len(images), 10), np.float32) for name in classifiers}
    for start in range(0, len(images), MODEL_BATCH):
        block = images[start : start + MODEL_BATCH]
        for name, classifier in classifiers.items():
            probabilities[name][start : start + len(block)] = predict(classifier, block, name)
            progress.advance(len(block))
    tables = [
        _rows(name, cell.label, cell.magnitude, cell.draw, image_ids, labels, clean_pred[name],
              probabilities[name], perturbed.params)
        for name in classifiers
    ]
    return stamp_cell(pa.concat_tables(tables), param_dtypes=perturbed.dtypes)


def compute_cell(
    cell: Cell,
    perturbation,
    clean: np.ndarray,
    labels: np.ndarray,
    image_ids: np.ndarray,
    classifiers: dict[str, Classifier],
    clean_pred: dict[str, np.ndarray],
    seed: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> pa.Table:
    """One cell from start to end: :func:`perturb_cell`, then :func:`evaluate_cell`.

    A self-contained unit of work (what an executor runs for a cell).
    """
    progress = progress or Progress()
    progress.cell_started(cell, len(clean) * len(classifiers))
    perturbed = perturb_cell(cell, perturbation, clean, labels, seed, chunk_size=chunk_size)
    return evaluate_cell(perturbed, labels, image_ids, classifiers, clean_pred, progress)


def predict(classifier: Classifier, images: np.ndarray, name: str) -> np.ndarray:
    """``classifier.predict_proba`` with its output checked: (N, 10) probabilities."""
    return check_probabilities(classifier.predict_proba(images), len(images), source=f"model {name!r}")


def _rows(
    model: str,
    family: str,
    magnitude: float,
    draw: int,
    image_ids: np.ndarray,
    labels: np.ndarray,
    clean_pred: np.ndarray,
    probabilities: np.ndarray,
    params: dict[str, np.ndarray],
) -> pa.Table:
    n = len(image_ids)
    rows = np.arange(n)
    labels = np.asarray(labels, dtype=np.int64)
    pred = probabilities.argmax(axis=1).astype(np.int64)
    columns: dict[str, Any] = {
        "model": pa.array(np.full(n, model, dtype=object), pa.string()),
        "family": pa.array(np.full(n, family, dtype=object), pa.string()),
        "magnitude": np.full(n, magnitude, dtype=np.float64),
        "image": np.asarray(image_ids, dtype=np.int64),
        "draw": np.full(n, draw, dtype=np.int64),
        "label": labels,
        "clean_pred": np.asarray(clean_pred, dtype=np.int64),
        "pred": pred,
        "p_true": probabilities[rows, labels],
        "p_pred": probabilities[rows, pred],
    }
    for k in range(10):
        columns[f"p{k}"] = np.ascontiguousarray(probabilities[:, k])
    for key, value in params.items():
        columns[f"param_{key}"] = np.asarray(value, dtype=np.float64)
    return pa.table(columns)


def _check_params(params: Any, n: int, label: str) -> dict[str, str]:
    """Check the contract of sample_params; return each parameter's dtype string."""
    if not isinstance(params, dict):
        raise ValueError(f"family {label!r}: sample_params returned {type(params).__name__}, not a dict")
    dtypes = {}
    for key, value in params.items():
        array = np.asarray(value)
        if array.shape != (n,) or array.dtype.kind not in "biuf":
            raise ValueError(
                f"family {label!r}: parameter {key!r} has shape {array.shape} and dtype "
                f"{array.dtype}; expected ({n},) numbers"
            )
        # Parameters are stored as float64 columns; they must come back exactly, or the
        # gallery images regenerated from the table would not be the ones evaluated.
        if array.dtype.kind in "biu" and not np.array_equal(array.astype(np.float64).astype(array.dtype), array):
            raise ValueError(f"family {label!r}: parameter {key!r} does not survive float64 storage")
        dtypes[key] = array.dtype.str
    return dtypes
