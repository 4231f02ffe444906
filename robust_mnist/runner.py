"""The study runner: perturb -> predict for every model, perturbation spec, magnitude and draw.

Work is split into *cells*: one per (spec label, magnitude, draw), plus the ``clean`` cell (the
unperturbed digits). A cell's perturbed digits depend only on the spec, the magnitude and the
draw, so they are computed once and fed to every model (models are the innermost loop): every
model sees exactly the same perturbed digits, which makes comparisons between models paired.

Randomness: the generator of a cell derives only from (study seed, spec label, magnitude, draw)
through :class:`numpy.random.SeedSequence` (:func:`cell_rng`), never from the model, the
execution order or the chunking. The realised parameters are sampled once over the whole cell
(``sample_params``), then ``apply`` runs in chunks of at most ``chunk_size`` images and the
models predict in fixed blocks of :data:`MODEL_BATCH` images aligned to the cell (a model's
float results can depend on its batch composition), so the table is bit for bit the same
whatever ``chunk_size`` is, and whichever executor computes the cell.

Run directory (the layout other modules read)::

    RUN_DIR/.lock              held with fcntl.flock while a run writes here
    RUN_DIR/run.json           study (as loaded), spec_hash, seed, versions, data {source, n,
                               checksum, ...}, models {name: {arch, seed, path, checksum,
                               training}}, families {label: {family, unit, random,
                               description, magnitudes, draws, n_digits}}, cells (the plan:
                               key, family, magnitude, draw, rows),
                               chunk_size, model_batch, started, finished (null until
                               complete), resumed (times), compute_seconds (computing time
                               summed over sessions, model loading excluded), command, status
                               ("running" | "interrupted" | "failed" | "complete"), error
    RUN_DIR/digits.npz         images (N, 28, 28) uint8, labels (N,) int64, ids (N,) str
    RUN_DIR/cells/<key>.parquet  one per completed cell (tmp file + fsync + os.replace); key is
                               "clean" or "<label>__<repr(magnitude)>__d<draw>"
    RUN_DIR/results.parquet    the long table, written at the end, sorted by model (study
                               order), family (clean, then study order), magnitude, draw, image
    RUN_DIR/exemplars.npz      gallery digits, below
    RUN_DIR/refined.parquet    only for studies with ``refine`` sweeps: critical magnitudes
                               refined by bisection (:func:`refine_critical`), written last

Results columns: model, family, magnitude (float64), image (int64, index into digits.npz),
draw (int64), label, clean_pred, pred (int64), p_true, p_pred, p0..p9 (float32),
param_<key> (float64; null, NaN in pandas, where a family has no such parameter). Magnitude 0
of every sweep is represented once by the ``clean`` rows (family "clean", magnitude 0, draw 0).

exemplars.npz (all arrays; ``<L>`` is a spec label, keys use "/" as separator)::

    labels             (F,) str      spec labels in study order
    models             (M,) str      model names in study order
    selections         (3,) str      "unstable", "stable", "early_flip"
    <L>/family         () str        registry name of the family ("morph", "rotate", ...)
    <L>/unit           () str        unit of the magnitudes
    <L>/images         (K,) int64    gallery digits (indices into digits.npz), ascending
    <L>/magnitudes     (S,) float64  the sweep, ascending, including 0.0 (the clean digit)
    <L>/strips         (K, S, 28, 28) uint8   digit k perturbed at magnitude s, draw 0
    <L>/probs          (M, K, S, 10) float32  model m's probabilities for those images
    <L>/swing          (M, K) float32  range of p_true over the sweep (all draws, clean included)
    <L>/critical       (M, K) float64  smallest |magnitude| whose prediction differs from the
                                       clean one (any draw); NaN if it never flips
    <L>/param/<key>    (K, S) float64  realised parameters (NaN at magnitude 0)
    <L>/unstable       (M, 6) int64    per model: largest swing first
    <L>/stable         (M, 6) int64    per model: smallest swing first, among digits the model
                                       classifies correctly when clean
    <L>/early_flip     (M, 6) int64    per model: smallest critical magnitude first (ties: larger
                                       swing first)
    <L>/disagree       (6,) int64      only with several models: the digits on which the models
                                       disagree most (largest mean pairwise total-variation
                                       distance between their probabilities at any magnitude of
                                       the draw-0 sweep, clean included), for `compare`
  Selections hold image indices (into digits.npz, found in ``<L>/images``); -1 pads a
  selection with fewer than 6 candidates. Strips are regenerated after the run from the stored
  parameters (``apply`` is deterministic). For morph families the strip runs from the source
  digit (t = 0) towards its target; the target's index/class are among the ``param/`` keys.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .classifier import Classifier, check_probabilities
from .data import load_mnist, to_float
from .study import CLEAN, ModelSpec, PerturbationSpec, StudyError, StudySpec, default_run_dir

if TYPE_CHECKING:  # pragma: no cover
    from .executors import Executor

logger = logging.getLogger(__name__)

#: Images perturbed per ``apply`` call by default: a whole MNIST-test cell at once, so that
#: families that compute their output in ``sample_params`` (thin, thicken) reuse it.
DEFAULT_CHUNK_SIZE = 10_000
#: Images per ``predict_proba`` call. Fixed (not the chunk size): a model's float results may
#: depend on its batch composition, so identical batches keep tables independent of chunking.
MODEL_BATCH = 4096
#: Cells perturbed ahead of the one being evaluated (each holds its digits in memory).
PREFETCH_CELLS = 2
#: Digits per gallery selection in exemplars.npz.
EXEMPLARS_PER_SELECTION = 6
SELECTIONS = ("unstable", "stable", "early_flip")
#: Version of the run directory layout.
FORMAT = 1

PROBABILITY_COLUMNS = tuple(f"p{k}" for k in range(10))
BASE_COLUMNS = (
    "model", "family", "magnitude", "image", "draw", "label", "clean_pred", "pred",
    "p_true", "p_pred", *PROBABILITY_COLUMNS,
)
_METADATA_KEY = b"robust_mnist"


#: Critical magnitudes refined by bisection (studies with ``refine`` sweeps only).
REFINED_FILE = "refined.parquet"


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (locked, unfinished, another study...)."""


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Cell:
    """One unit of work: a spec label at one magnitude and draw (or the clean digits)."""

    label: str
    magnitude: float = 0.0
    draw: int = 0

    @property
    def key(self) -> str:
        """File stem of the cell: ``clean`` or ``<label>__<repr(magnitude)>__d<draw>``."""
        if self.label == CLEAN:
            return CLEAN
        return f"{self.label}__{float(self.magnitude)!r}__d{self.draw}"


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


@dataclass(frozen=True)
class Digits:
    """The clean digits of a study, as stored in digits.npz.

    Attributes
    ----------
    images : (N, 28, 28) ndarray of uint8
    labels : (N,) ndarray of int64
    ids : (N,) ndarray of str
        "mnist-test:<index>" or the image's file name.
    info : dict
        For run.json: source, n, checksum and source details.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    info: dict[str, Any]


def digits_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 over the uint8 images and int64 labels."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def load_study_digits(spec: StudySpec) -> Digits:
    """The study's digits: MNIST test digits (all or a stratified subset) or the user's folder.

    Raises
    ------
    ValueError
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
        from .preprocess import load_digits

        floats, names, errors = load_digits([data.path])
        if errors:
            more = f" (and {len(errors) - 1} more failed)" if len(errors) > 1 else ""
            raise ValueError(f"{errors[0][1]}{more}")
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
                raise ValueError(
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
                raise ValueError(
                    f"{labels_file}: line {line}: expected columns file,label with a digit 0-9"
                ) from None
            if not 0 <= label <= 9:
                raise ValueError(f"{labels_file}: line {line}: label {label} is not a digit 0-9")
            table[file] = label
    missing = [name for name in names if name not in table]
    if missing:
        raise ValueError(f"{labels_file}: no label for {missing[0]}" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return np.array([table[name] for name in names], dtype=np.int64)


@dataclass
class LoadedModel:
    """A model ready to predict, with what run.json records about it."""

    classifier: Classifier
    info: dict[str, Any] = field(default_factory=dict)


ModelLoader = Callable[[ModelSpec], LoadedModel]


def load_model(model: ModelSpec) -> LoadedModel:
    """Default model loader: train-once-and-cache an architecture, or load a ``.keras`` file.

    The training record (the JSON beside the model file, when it came from training) goes into
    run.json so that the report can show the model's validation figures.
    """
    from . import models

    path = models.ensure_model(model.arch, model.seed) if model.path is None else model.path
    record_file = models.record_path(path)
    training = json.loads(record_file.read_text()) if record_file.is_file() else None
    info = {
        "arch": model.arch if model.path is None else (training or {}).get("arch"),
        "seed": model.seed if model.path is None else (training or {}).get("seed"),
        "path": str(path),
        "checksum": models.file_checksum(path),
        "training": training,
    }
    return LoadedModel(models.load_classifier(path), info)


# --------------------------------------------------------------------------- progress


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


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`run_study` did.

    Attributes
    ----------
    run_dir : pathlib.Path
    status : {"complete", "already-complete"}
    cells_total, cells_computed, cells_reused : int
    evaluations : int
        Digit evaluations computed in this call (images x models).
    seconds : float
        Wall time of this call.
    """

    run_dir: Path
    status: str
    cells_total: int
    cells_computed: int
    cells_reused: int
    evaluations: int
    seconds: float


def run_study(
    spec: StudySpec,
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    model_loader: ModelLoader | None = None,
    progress: Progress | None = None,
    command: Sequence[str] | None = None,
    executor: "Executor | None" = None,
) -> RunOutcome:
    """Run a study into a run directory (layout in the module docstring).

    Parameters
    ----------
    spec : StudySpec
    run_dir : path-like, optional
        Default ``runs/<study name>`` in the current directory.
    resume : bool
        Continue an unfinished run: compute only the cells not yet on disk.
    force : bool
        Discard whatever run is in ``run_dir`` and start over.
    chunk_size : int
        Images per ``apply`` call (memory versus call overhead); results do not depend on it.
    model_loader : callable
        ``ModelSpec -> LoadedModel`` (default :func:`load_model`); tests pass a numpy fake
        to avoid TensorFlow.
    progress : Progress, optional
    command : sequence of str, optional
        The command line, recorded in run.json.
    executor : robust_mnist.executors.Executor, optional
        Where the perturbed cells are computed (default: this process, in turn); the table
        does not depend on it.

    Returns
    -------
    RunOutcome

    Raises
    ------
    RunDirError
        If another process is writing into ``run_dir``, if it holds an unfinished run and
        neither ``resume`` nor ``force`` is given, or if it holds a run of another study
        (or of other digits or model files) and ``force`` is not given.
    KeyboardInterrupt
        Propagated after marking the run "interrupted"; completed cells stay on disk.
    """
    started_clock = time.perf_counter()
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    progress = progress or Progress()
    model_loader = model_loader or load_model
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_hash = spec.spec_hash()
    cells = plan_cells(spec)

    with _locked(run_dir):
        existing = None if force else _read_run_json(run_dir)
        if existing is not None:
            if existing.get("spec_hash") != spec_hash:
                other = existing.get("study", {}).get("name")
                what = (
                    f"a run of study {spec.name!r} whose study file has changed since (models, "
                    "data, perturbations or seed differ)" if other == spec.name
                    else f"a run of another study ({other!r})"
                )
                raise RunDirError(
                    f"{run_dir} holds {what}; use --force to discard it and start over, "
                    "or --out to choose another directory"
                )
            if existing.get("status") == "complete" and _is_finished(run_dir):
                return RunOutcome(run_dir, "already-complete", len(cells), 0, len(cells), 0,
                                  time.perf_counter() - started_clock)
            if not resume:
                raise RunDirError(
                    f"{run_dir} holds an unfinished run of this study: add --resume to finish it "
                    "or --force to start over"
                )
        if force:
            _clear_run_dir(run_dir)
        _remove_temporaries(run_dir)

        progress.stage("loading digits")
        digits = load_study_digits(spec)
        subsets = _spec_subsets(spec, digits)
        progress.stage("loading models")
        loaded = {model.name: model_loader(model) for model in spec.models}
        model_info = {name: model.info for name, model in loaded.items()}
        if existing is not None:
            _check_same_inputs(run_dir, existing, digits, model_info)

        run_info = _new_run_json(spec, spec_hash, digits, model_info, cells, subsets, chunk_size, command)
        run_info["executor"] = executor.describe() if executor is not None else {"name": "serial", "workers": 1}
        if existing is not None:
            run_info["started"] = existing.get("started", run_info["started"])
            run_info["resumed"] = [*existing.get("resumed", []), _now()]
            run_info["compute_seconds"] = existing.get("compute_seconds", 0.0)
        previous_seconds = run_info["compute_seconds"]
        if existing is None or not (run_dir / "digits.npz").is_file():
            _save_npz_atomically(
                run_dir / "digits.npz",
                {"images": digits.images, "labels": digits.labels, "ids": digits.ids},
            )
        _write_json_atomically(run_dir / "run.json", run_info)

        # compute_seconds adds up the sessions' computing time (not loading or training models).
        computing_since = time.perf_counter()
        try:
            computed, evaluations = _compute_cells(
                spec, spec_hash, run_dir, cells, digits, subsets, loaded, chunk_size, progress, executor
            )
            progress.stage("writing results.parquet")
            _write_results(run_dir, run_info)
            progress.stage("writing exemplars.npz")
            write_exemplars(run_dir, spec, run_info)
            if any(sweep.refine for sweep in spec.perturbations):
                progress.stage("refining critical magnitudes")
                _write_refined(run_dir, spec, digits, {name: model.classifier for name, model in loaded.items()})
        except BaseException as error:
            run_info["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            if not isinstance(error, KeyboardInterrupt):
                run_info["error"] = f"{type(error).__name__}: {error}"
            run_info["compute_seconds"] = round(previous_seconds + time.perf_counter() - computing_since, 3)
            with contextlib.suppress(Exception):
                _write_json_atomically(run_dir / "run.json", run_info)
            raise
        run_info.pop("error", None)
        run_info["status"] = "complete"
        run_info["finished"] = _now()
        run_info["compute_seconds"] = round(previous_seconds + time.perf_counter() - computing_since, 3)
        _write_json_atomically(run_dir / "run.json", run_info)
    return RunOutcome(
        run_dir, "complete", len(cells), computed, len(cells) - computed, evaluations,
        time.perf_counter() - started_clock,
    )


def _compute_cells(
    spec: StudySpec,
    spec_hash: str,
    run_dir: Path,
    cells: list[Cell],
    digits: Digits,
    subsets: dict[str, np.ndarray],
    loaded: dict[str, LoadedModel],
    chunk_size: int,
    progress: Progress,
    executor: "Executor | None" = None,
) -> tuple[int, int]:
    """Compute and write every cell not validly on disk; return (cells, evaluations) computed."""
    cell_dir = run_dir / "cells"
    cell_dir.mkdir(exist_ok=True)
    n_models = len(loaded)
    rows = {cell: n_models * _cell_images(cell, digits, subsets) for cell in cells}
    pending = []
    for cell in cells:
        path = cell_dir / f"{cell.key}.parquet"
        if path.exists() and _read_cell(path, cell, spec_hash, rows[cell]) is None:
            logger.warning("%s is incomplete or from another run: computing it again", path)
            path.unlink()
        if not path.exists():
            pending.append(cell)
    progress.start(sum(rows[cell] for cell in pending), len(pending))

    images = to_float(digits.images)
    classifiers = {name: model.classifier for name, model in loaded.items()}
    families = {p.label: p.make() for p in spec.perturbations}
    jobs = [cell for cell in pending if cell.label != CLEAN]
    if executor is not None and executor.name == "serial":
        executor = None  # the loop below, with its prefetching, is the serial executor
    elsewhere, jobs = (jobs, []) if executor is not None else ([], jobs)

    def perturb(cell: Cell) -> PerturbedCell:
        index = subsets[cell.label]
        return perturb_cell(
            cell, families[cell.label], images[index], digits.labels[index], spec.seed,
            chunk_size=chunk_size,
        )

    # One worker thread perturbs the next cells while this thread runs the models: NumPy and
    # TensorFlow both release the GIL, so the two overlap. Only the worker touches the family
    # instances (some cache their work), and the results are the same as computed in turn.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robust-mnist-perturb")
    try:
        queued = deque(pool.submit(perturb, cell) for cell in jobs[:PREFETCH_CELLS])
        if Cell(CLEAN) in pending:
            clean_table = _compute_clean(images, digits.labels, classifiers, progress)
            _finish_cell(clean_table, Cell(CLEAN), spec_hash, cell_dir, progress)
        else:
            clean_table = _read_cell(cell_dir / f"{CLEAN}.parquet", Cell(CLEAN), spec_hash, rows[Cell(CLEAN)])
        clean_pred = {
            name: _model_rows(clean_table, name).column("pred").to_numpy() for name in classifiers
        }
        if elsewhere:
            from .executors import compute_cells

            # Cells come back in completion order; each is written as it arrives.
            for cell, table in compute_cells(
                executor, spec, digits, subsets, loaded, clean_pred, elsewhere, chunk_size
            ):
                progress.cell_started(cell, rows[cell])
                progress.advance(rows[cell])
                _finish_cell(table, cell, spec_hash, cell_dir, progress)
        for number, cell in enumerate(jobs):
            progress.cell_started(cell, rows[cell])
            perturbed = queued.popleft().result()
            if number + PREFETCH_CELLS < len(jobs):
                queued.append(pool.submit(perturb, jobs[number + PREFETCH_CELLS]))
            index = subsets[cell.label]
            table = evaluate_cell(
                perturbed, digits.labels[index], index, classifiers,
                {name: pred[index] for name, pred in clean_pred.items()}, progress,
            )
            del perturbed
            _finish_cell(table, cell, spec_hash, cell_dir, progress)
    finally:
        # On an interrupt, wait only for the cell being perturbed; drop the queued ones.
        pool.shutdown(wait=True, cancel_futures=True)
    return len(pending), sum(rows[cell] for cell in pending)


def _finish_cell(table: pa.Table, cell: Cell, spec_hash: str, cell_dir: Path, progress: Progress) -> None:
    metadata_json = json.loads(table.schema.metadata[_METADATA_KEY])
    metadata_json.update(key=cell.key, spec_hash=spec_hash, rows=table.num_rows)
    table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(metadata_json).encode()})
    _write_parquet_atomically(table, cell_dir / f"{cell.key}.parquet")
    progress.cell_finished(cell)


def _compute_clean(
    images: np.ndarray, labels: np.ndarray, classifiers: dict[str, Classifier], progress: Progress
) -> pa.Table:
    progress.cell_started(Cell(CLEAN), len(images) * len(classifiers))
    index = np.arange(len(images), dtype=np.int64)
    tables = []
    for name, classifier in classifiers.items():
        probabilities = np.empty((len(images), 10), np.float32)
        for start in range(0, len(images), MODEL_BATCH):
            batch = images[start : start + MODEL_BATCH]
            probabilities[start : start + len(batch)] = _predict(classifier, batch, name)
            progress.advance(len(batch))
        pred = probabilities.argmax(axis=1)
        tables.append(_rows(name, CLEAN, 0.0, 0, index, labels, pred, probabilities, {}))
    return _with_metadata(pa.concat_tables(tables), {})


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
            probabilities[name][start : start + len(block)] = _predict(classifier, block, name)
            progress.advance(len(block))
    tables = [
        _rows(name, cell.label, cell.magnitude, cell.draw, image_ids, labels, clean_pred[name],
              probabilities[name], perturbed.params)
        for name in classifiers
    ]
    return _with_metadata(pa.concat_tables(tables), {"param_dtypes": perturbed.dtypes})


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


def _predict(classifier: Classifier, images: np.ndarray, name: str) -> np.ndarray:
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


def _with_metadata(table: pa.Table, content: dict[str, Any]) -> pa.Table:
    return table.replace_schema_metadata({_METADATA_KEY: json.dumps(content).encode()})


def _model_rows(table: pa.Table, model: str) -> pa.Table:
    return table.filter(pc.equal(table.column("model"), model))


# --------------------------------------------------------------------------- cells on disk


def _cell_images(cell: Cell, digits: Digits, subsets: dict[str, np.ndarray]) -> int:
    return len(digits.images) if cell.label == CLEAN else len(subsets[cell.label])


def _cell_metadata(table_or_schema) -> dict[str, Any]:
    schema = getattr(table_or_schema, "schema", table_or_schema)
    raw = (schema.metadata or {}).get(_METADATA_KEY)
    return json.loads(raw) if raw else {}


def _read_cell(path: Path, cell: Cell, spec_hash: str, rows: int) -> pa.Table | None:
    """The cell's table if the file is complete and belongs to this run, else None."""
    try:
        table = pq.read_table(path)
    except Exception:  # any unreadable file is simply not a trusted cell
        return None
    meta = _cell_metadata(table)
    if meta.get("key") != cell.key or meta.get("spec_hash") != spec_hash or table.num_rows != rows:
        return None
    return table


def _spec_subsets(spec: StudySpec, digits: Digits) -> dict[str, np.ndarray]:
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


def _plan_from_run_json(run_info: dict[str, Any]) -> list[tuple[Cell, int]]:
    return [
        (Cell(entry["family"], float(entry["magnitude"]), int(entry["draw"])), int(entry["rows"]))
        for entry in run_info["cells"]
    ]


def _result_tables(run_dir: Path, run_info: dict[str, Any], missing_ok: bool) -> Iterator[pa.Table]:
    """The results in table order, one piece per (model, cell), with one shared schema."""
    plan = _plan_from_run_json(run_info)
    spec_hash = run_info["spec_hash"]
    present: list[tuple[Cell, Path, dict[str, str]]] = []
    param_columns: list[str] = []
    for cell, rows in plan:
        path = run_dir / "cells" / f"{cell.key}.parquet"
        if not path.is_file():
            if missing_ok:
                continue
            raise RunDirError(f"{path}: cell missing; run the study again with --resume")
        schema = pq.read_schema(path)
        for name in schema.names:
            if name.startswith("param_") and name not in param_columns:
                param_columns.append(name)
        present.append((cell, path, rows))
    schema = result_schema(param_columns)
    models = list(run_info["models"])
    for model in models:
        for cell, path, rows in present:
            table = _read_cell(path, cell, spec_hash, rows)
            if table is None:
                if missing_ok:
                    continue
                raise RunDirError(f"{path}: incomplete cell; run the study again with --resume")
            table = _model_rows(table, model) if len(models) > 1 else table
            yield _conform(table, schema)


def result_schema(param_columns: Sequence[str]) -> pa.Schema:
    """The results table's schema for the given parameter columns."""
    types = {"model": pa.string(), "family": pa.string(), "magnitude": pa.float64(),
             "image": pa.int64(), "draw": pa.int64(), "label": pa.int64(),
             "clean_pred": pa.int64(), "pred": pa.int64()}
    fields = [pa.field(name, types.get(name, pa.float32())) for name in BASE_COLUMNS]
    fields += [pa.field(name, pa.float64()) for name in param_columns]
    return pa.schema(fields)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    # A parameter the family does not have is missing (null; NaN in pandas), not a number.
    columns = [
        table.column(name) if name in table.column_names else pa.nulls(table.num_rows, pa.float64())
        for name in schema.names
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _write_results(run_dir: Path, run_info: dict[str, Any]) -> None:
    """Stream the cells into results.parquet (one row group per model and cell: constant memory)."""

    def write(handle) -> None:
        writer = None
        for table in _result_tables(run_dir, run_info, missing_ok=False):
            if writer is None:
                writer = pq.ParquetWriter(handle, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()

    _write_bytes_atomically(run_dir / "results.parquet", write)


def _write_refined(run_dir: Path, spec: StudySpec, digits: Digits, classifiers: dict[str, Classifier]) -> None:
    labels = [sweep.label for sweep in spec.perturbations if sweep.refine]
    # Only the refined sweeps and the clean rows: the whole table can be large.
    results = pq.read_table(run_dir / "results.parquet", filters=[("family", "in", [CLEAN, *labels])]).to_pandas()
    table = refine_critical(results, spec, digits, classifiers)
    _write_bytes_atomically(run_dir / REFINED_FILE, lambda handle: table.to_parquet(handle, index=False))


def load_results(run_dir: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """The results table of a run (columns in the module docstring).

    Reads results.parquet when the run is complete; for an unfinished run, the completed
    cells, in the same order.
    """
    run_dir = Path(run_dir)
    run_info = read_run_info(run_dir)
    if run_info.get("status") == "complete" and (run_dir / "results.parquet").is_file():
        return pq.read_table(run_dir / "results.parquet").to_pandas()
    tables = list(_result_tables(run_dir, run_info, missing_ok=True))
    if not tables:
        return result_schema([]).empty_table().to_pandas()
    return pa.concat_tables(tables).to_pandas()


def read_run_info(run_dir: str | os.PathLike) -> dict[str, Any]:
    """run.json of a run directory, or a ValueError naming the directory."""
    run_dir = Path(run_dir)
    info = _read_run_json(run_dir)
    if info is None:
        raise RunDirError(f"{run_dir}: not a run directory (no readable run.json)")
    return info


def load_digits_npz(run_dir: str | os.PathLike) -> Digits:
    """The clean digits of a run as stored in digits.npz."""
    run_dir = Path(run_dir)
    with np.load(run_dir / "digits.npz", allow_pickle=False) as npz:
        images, labels, ids = npz["images"], npz["labels"], npz["ids"]
    return Digits(images, labels, ids, read_run_info(run_dir).get("data", {}))


# --------------------------------------------------------------------------- exemplars


def write_exemplars(run_dir: Path, spec: StudySpec, run_info: dict[str, Any]) -> None:
    """Pick each family's gallery digits and regenerate their perturbed images (layout above)."""
    run_dir = Path(run_dir)
    digits = load_digits_npz(run_dir)
    images = to_float(digits.images)
    models = list(run_info["models"])
    plan = _plan_from_run_json(run_info)
    clean = _read_cell(run_dir / "cells" / f"{CLEAN}.parquet", Cell(CLEAN), run_info["spec_hash"], plan[0][1])
    clean_df = clean.to_pandas()
    out: dict[str, np.ndarray] = {
        "labels": np.array([p.label for p in spec.perturbations]),
        "models": np.array(models),
        "selections": np.array(SELECTIONS),
    }
    for perturbation in spec.perturbations:
        tables, dtypes = [], {}
        for cell, rows in plan:
            if cell.label == perturbation.label:
                table = _read_cell(run_dir / "cells" / f"{cell.key}.parquet", cell, run_info["spec_hash"], rows)
                dtypes.update(_cell_metadata(table).get("param_dtypes", {}))
                tables.append(table.replace_schema_metadata(None))
        frame = pa.concat_tables(tables, promote_options="default").to_pandas()
        out.update(_family_exemplars(perturbation, frame, clean_df, models, digits, images, dtypes))
    _save_npz_atomically(run_dir / "exemplars.npz", out)


def _family_exemplars(
    perturbation: PerturbationSpec,
    frame: "pd.DataFrame",  # noqa: F821
    clean: "pd.DataFrame",  # noqa: F821
    models: list[str],
    digits: Digits,
    images: np.ndarray,
    dtypes: dict[str, str],
) -> dict[str, np.ndarray]:
    import pandas as pd

    k = EXEMPLARS_PER_SELECTION
    label = perturbation.label
    subset = np.sort(frame["image"].unique())
    selections = {name: np.full((len(models), k), -1, np.int64) for name in SELECTIONS}
    swing, critical = {}, {}
    for m, model in enumerate(models):
        rows = frame[frame["model"] == model]
        clean_rows = clean[clean["model"] == model].set_index("image").loc[subset]
        p_true = pd.concat([rows[["image", "p_true"]], clean_rows["p_true"].reset_index()])
        grouped = p_true.groupby("image")["p_true"]
        model_swing = (grouped.max() - grouped.min()).reindex(subset)
        flipped = rows[rows["pred"] != rows["clean_pred"]]
        model_critical = flipped["magnitude"].abs().groupby(flipped["image"]).min().reindex(subset)
        swing[model], critical[model] = model_swing, model_critical
        table = pd.DataFrame({"image": subset, "swing": model_swing.to_numpy(),
                              "critical": model_critical.to_numpy(),
                              "correct": (clean_rows["pred"] == clean_rows["label"]).to_numpy()})
        unstable = table.sort_values(["swing", "image"], ascending=[False, True], kind="stable")
        stable = table[table["correct"]].sort_values(["swing", "image"], kind="stable")
        early = table[table["critical"].notna()].sort_values(
            ["critical", "swing", "image"], ascending=[True, False, True], kind="stable")
        for name, ordered in zip(SELECTIONS, (unstable, stable, early)):
            chosen = ordered["image"].to_numpy()[:k]
            selections[name][m, : len(chosen)] = chosen
    disagree = _most_disagreed(frame, clean, models, subset, k) if len(models) > 1 else None
    chosen = [s[s >= 0] for s in selections.values()] + ([disagree] if disagree is not None else [])
    gallery = np.unique(np.concatenate(chosen).astype(np.int64))

    sweep = np.array(sorted({0.0, *perturbation.magnitudes}), dtype=np.float64)
    strips = np.zeros((len(gallery), len(sweep), 28, 28), np.uint8)
    probs = np.zeros((len(models), len(gallery), len(sweep), 10), np.float32)
    param_keys = list(dtypes)
    params = {key: np.full((len(gallery), len(sweep)), np.nan) for key in param_keys}
    family = perturbation.make()
    first_draw = frame[frame["draw"] == 0]
    for s, magnitude in enumerate(sweep):
        if magnitude == 0.0 and magnitude not in perturbation.magnitudes:
            strips[:, s] = digits.images[gallery]
            for m, model in enumerate(models):
                rows = clean[clean["model"] == model].set_index("image").loc[gallery]
                probs[m, :, s] = rows[list(PROBABILITY_COLUMNS)].to_numpy(np.float32)
            continue
        at = first_draw[first_draw["magnitude"] == magnitude]
        for m, model in enumerate(models):
            rows = at[at["model"] == model].set_index("image").loc[gallery]
            probs[m, :, s] = rows[list(PROBABILITY_COLUMNS)].to_numpy(np.float32)
            if m == 0:
                stored = {key: rows[f"param_{key}"].to_numpy() for key in param_keys}
        for key in param_keys:
            params[key][:, s] = stored[key]
        realised = {key: stored[key].astype(np.dtype(dtypes[key])) for key in param_keys}
        perturbed = family.apply(images[gallery], realised)
        strips[:, s] = np.clip(np.round(np.asarray(perturbed) * 255.0), 0, 255).astype(np.uint8)

    out = {
        f"{label}/family": np.array(perturbation.family),
        f"{label}/unit": np.array(family.unit),
        f"{label}/images": gallery,
        f"{label}/magnitudes": sweep,
        f"{label}/strips": strips,
        f"{label}/probs": probs,
        f"{label}/swing": np.stack([swing[m].loc[gallery].to_numpy(np.float32) for m in models]),
        f"{label}/critical": np.stack([critical[m].loc[gallery].to_numpy(np.float64) for m in models]),
    }
    out.update({f"{label}/param/{key}": value for key, value in params.items()})
    out.update({f"{label}/{name}": value for name, value in selections.items()})
    if disagree is not None:
        out[f"{label}/disagree"] = disagree
    return out


def _most_disagreed(
    frame: "pd.DataFrame", clean: "pd.DataFrame", models: list[str], subset: np.ndarray, k: int  # noqa: F821
) -> np.ndarray:
    """The ``k`` digits whose draw-0 sweep holds the input the models disagree on most.

    Disagreement of one input: ``mean_{i<j} 0.5 * ||p_i - p_j||_1`` over pairs of models.
    """
    import pandas as pd

    columns = ["model", "image", "magnitude", *PROBABILITY_COLUMNS]
    rows = pd.concat([
        frame.loc[frame["draw"] == 0, columns],
        clean.loc[clean["image"].isin(subset)].assign(magnitude=0.0)[columns],
    ]).sort_values(["image", "magnitude"], kind="stable")
    by_model = [rows[rows["model"] == model] for model in models]
    p = np.stack([part[list(PROBABILITY_COLUMNS)].to_numpy(np.float64) for part in by_model])
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    score = sum(0.5 * np.abs(p[i] - p[j]).sum(axis=1) for i, j in pairs) / len(pairs)
    per_image = pd.Series(score).groupby(by_model[0]["image"].to_numpy()).max()
    return per_image.sort_values(ascending=False, kind="stable").index.to_numpy(np.int64)[:k]


# --------------------------------------------------------------------------- run dir plumbing


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on RUN_DIR/.lock; the kernel drops it if the process dies."""
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RunDirError(
                f"{run_dir} is in use by another run (pid {holder}); wait for it to finish "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _read_run_json(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None


def _is_finished(run_dir: Path) -> bool:
    return (run_dir / "results.parquet").is_file() and (run_dir / "exemplars.npz").is_file()


def _clear_run_dir(run_dir: Path) -> None:
    """Remove the files a run writes (and nothing else a user may keep there)."""
    for name in ("run.json", "digits.npz", "results.parquet", "exemplars.npz", REFINED_FILE):
        (run_dir / name).unlink(missing_ok=True)
    cell_dir = run_dir / "cells"
    if cell_dir.is_dir():
        for path in cell_dir.glob("*.parquet"):
            path.unlink()


def _remove_temporaries(run_dir: Path) -> None:
    """Temporary files of a process that died mid-write (we hold the lock: nobody else writes)."""
    for folder in (run_dir, run_dir / "cells"):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)


def _check_same_inputs(run_dir: Path, existing: dict[str, Any], digits: Digits, models: dict[str, Any]) -> None:
    old = existing.get("data", {}).get("checksum")
    if old != digits.info["checksum"]:
        raise RunDirError(
            f"{run_dir} was run on other digits (checksum {str(old)[:12]}... now "
            f"{digits.info['checksum'][:12]}...); use --force to start over"
        )
    for name, info in models.items():
        old = existing.get("models", {}).get(name, {}).get("checksum")
        if old != info.get("checksum"):
            raise RunDirError(
                f"{run_dir}: model {name!r} changed since the run started (checksum "
                f"{str(old)[:12]}... now {str(info.get('checksum'))[:12]}...); use --force to start over"
            )


def _new_run_json(
    spec: StudySpec,
    spec_hash: str,
    digits: Digits,
    models: dict[str, Any],
    cells: list[Cell],
    subsets: dict[str, np.ndarray],
    chunk_size: int,
    command: Sequence[str] | None,
) -> dict[str, Any]:
    n_models = len(models)
    return {
        "format": FORMAT,
        "study": spec.to_dict(),
        "study_file": None if spec.file is None else str(spec.file),
        "spec_hash": spec_hash,
        "seed": spec.seed,
        "versions": versions(),
        "data": digits.info,
        "models": models,
        "families": {
            p.label: {"family": p.family, "unit": family.unit, "random": bool(family.random),
                      "description": family.description, "magnitudes": list(p.magnitudes),
                      "draws": p.draws, "n_digits": len(subsets[p.label])}
            for p in spec.perturbations
            for family in [p.make()]
        },
        "cells": [
            {"key": cell.key, "family": cell.label, "magnitude": cell.magnitude, "draw": cell.draw,
             "rows": n_models * _cell_images(cell, digits, subsets)}
            for cell in cells
        ],
        "chunk_size": int(chunk_size),
        "model_batch": MODEL_BATCH,
        "started": _now(),
        "finished": None,
        "compute_seconds": 0.0,
        "command": list(command) if command is not None else None,
        "status": "running",
    }


def versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that determine the numbers (no TensorFlow import)."""
    from . import __version__

    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("numpy", "tensorflow", "keras", "scipy", "scikit-image", "pandas", "pyarrow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["robust_mnist"] = __version__
    return found


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(handle)`` to a temporary file, fsync it, then rename over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _write_parquet_atomically(table: pa.Table, path: Path) -> None:
    _write_bytes_atomically(path, lambda handle: pq.write_table(table, handle))


def _save_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _write_bytes_atomically(path, lambda handle: np.savez(handle, **arrays))


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=2, default=_json_default) + "\n"
    _write_bytes_atomically(path, lambda handle: handle.write(text.encode()))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# --------------------------------------------------------------------------- refinement


def refine_critical(
    results: "pd.DataFrame",  # noqa: F821
    spec: StudySpec,
    digits: Digits,
    classifiers: dict[str, Classifier],
) -> "pd.DataFrame":  # noqa: F821
    """Critical magnitudes refined by bisection, for the sweeps that ask for it (``refine``).

    For each model and each digit that flips on the grid of a sweep with ``refine = k``, the
    change happens between ``low``, the grid point next to the critical one towards 0 (the
    prediction there is still the clean one; 0 for the first grid point), and ``high``, the
    critical grid point. ``k`` times, the digit is perturbed at the middle and the model asked
    again: the middle becomes ``high`` if the prediction differs from the clean one, ``low``
    otherwise. The critical magnitude is then known to ``|high - low| / 2**k``. All the
    digits of a sweep are bisected together, one batch per step. Only deterministic families
    can be refined (the study file checks it): a random family draws new parameters at every
    magnitude, so its flip point is not a property of the digit.

    Parameters
    ----------
    results : DataFrame
        The run's results table (:func:`load_results`), clean rows included.
    spec : StudySpec
    digits : Digits
        The run's digits (:func:`load_digits_npz`).
    classifiers : dict of str to Classifier
        The run's models by name.

    Returns
    -------
    DataFrame
        One row per (model, family, image) that flips: ``model, family, image, low, high``
        (signed magnitudes; ``high`` is the refined critical magnitude), for the ``refined``
        argument of :func:`robust_mnist.metrics.critical_magnitudes`.
    """
    import pandas as pd

    from . import metrics

    parts = []
    for sweep in spec.perturbations:
        if not sweep.refine:
            continue
        perturbation = sweep.make()
        rows = results.loc[results["family"].isin([sweep.label, CLEAN])]
        grid = metrics.critical_magnitudes(rows)
        grid = grid.loc[grid["family"] == sweep.label].dropna(subset=["signed_magnitude"])
        for model, flipping in grid.groupby("model", sort=False):
            image = flipping["image"].to_numpy(np.int64)
            clean = to_float(digits.images[image])
            low, high = _bisect(
                perturbation, clean, digits.labels[image], flipping["clean_pred"].to_numpy(),
                flipping["bracket_magnitude"].to_numpy(np.float64),
                flipping["signed_magnitude"].to_numpy(np.float64),
                classifiers[model], sweep.refine,
            )
            parts.append(pd.DataFrame({"model": model, "family": sweep.label, "image": image,
                                       "low": low, "high": high}))
    columns = {"model": "object", "family": "object", "image": "int64", "low": "float64", "high": "float64"}
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns)).astype(columns)


def _bisect(perturbation, clean, labels, clean_pred, low, high, classifier, steps):
    """Batched bisection of :func:`refine_critical`: ``(low, high)`` after ``steps`` halvings."""
    for _ in range(steps):
        middle = (low + high) / 2
        perturbed = np.empty_like(clean)
        # sample_params takes one magnitude: perturb the digits that share a middle together.
        for value in np.unique(middle):
            chosen = np.flatnonzero(middle == value)
            rng = np.random.default_rng(0)  # deterministic families ignore it
            params = perturbation.sample_params(
                len(chosen), float(value), rng, images=clean[chosen], labels=labels[chosen]
            )
            perturbed[chosen] = perturbation.apply(clean[chosen], params)
        flipped = _predict(classifier, perturbed, "refinement").argmax(axis=1) != clean_pred
        high = np.where(flipped, middle, high)
        low = np.where(flipped, low, middle)
    return low, high


def load_refined(run_dir: str | os.PathLike) -> "pd.DataFrame | None":  # noqa: F821
    """The refined critical magnitudes of a run (``refined.parquet``), or None if it has none."""
    import pandas as pd

    path = Path(run_dir) / REFINED_FILE
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise RunDirError(f"{path} is not a readable refined-magnitudes table ({error}); run the study again with --force") from error
