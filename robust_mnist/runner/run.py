"""Running a study: plan its cells, compute the missing ones, consolidate the run directory.

:func:`run_study` reads from top to bottom: take the run directory's lock, check what is
already there, load the digits and models, write run.json and digits.npz, compute the clean
cell and then every missing perturbed cell on an executor (each written atomically as it
arrives, so an interrupted run keeps them), then consolidate results.parquet, pick the
exemplars and refine critical magnitudes. The run-directory format belongs to
:mod:`robust_mnist.rundir`; this module only decides what to write when.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__, models, rundir
from ..classifier import Classifier
from ..data import to_float
from ..errors import InvalidArgumentError, RunDirError
from ..perturbations import morph
from ..rundir import CLEAN, Digits
from ..study import StudySpec, load_study
from . import DEFAULT_CHUNK_SIZE
from .cells import MODEL_BATCH, Cell, Progress, compute_clean, plan_cells
from .exemplars import write_exemplars
from .executors import Executor, SerialExecutor, compute_cells, make_executor
from .inputs import (
    DEFAULT_ENGINE,
    ENGINES,
    LoadedModel,
    ModelLoader,
    digit_morphometrics,
    load_model,
    load_study_digits,
    spec_subsets,
)
from .refine import refine_from_cells, write_refined

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`run_study` did.

    Attributes
    ----------
    run_dir : pathlib.Path
    study : str
        The study's name.
    status : {"complete", "already-complete"}
    cells_total, cells_computed, cells_reused : int
    evaluations : int
        Digit evaluations computed in this call (images x models).
    seconds : float
        Wall time of this call.
    """

    run_dir: Path
    study: str
    status: str
    cells_total: int
    cells_computed: int
    cells_reused: int
    evaluations: int
    seconds: float


class StudyInterrupted(KeyboardInterrupt):
    """A study stopped by Ctrl-C; its completed cells are on disk.

    Attributes
    ----------
    run_dir : pathlib.Path
    cells_saved : int
        Completed cells in the run directory: ``--resume`` computes only the others.
    """

    def __init__(self, run_dir: Path, cells_saved: int) -> None:
        super().__init__(f"interrupted; {cells_saved} completed cells are saved in {run_dir}")
        self.run_dir, self.cells_saved = run_dir, cells_saved


def run_study_file(
    study_file: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    *,
    trust_model: bool = False,
    executor: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    **options: Any,
) -> RunOutcome:
    """Run the study of a TOML file: :func:`robust_mnist.study.load_study`, then :func:`run_study`.

    Model files the study names must have been trained by this tool unless ``trust_model``.
    The executor is the one asked for here, else the study file's (``executor``, ``workers``,
    ``scheduler``), else serial; ``scheduler`` alone implies Dask. ``options`` go to
    :func:`run_study` (``resume``, ``force``, ``chunk_size``, ``progress``, ``command``,
    ``engine``, ``retrain``).

    Raises
    ------
    StudyInterrupted
        On Ctrl-C, with the run directory and the number of cells it keeps.
    """
    spec = load_study(study_file)
    for model in spec.models:
        if model.path is not None:  # before any work: foreign model files need --trust-model
            models.check_trusted(model.path, trust_model)
    execution = dict(spec.execution)
    name = executor or ("dask" if scheduler else execution.get("executor", "serial"))
    scheduler = scheduler or (execution.get("scheduler") if name == "dask" else None)
    chosen = make_executor(name, workers=workers or execution.get("workers"), scheduler=scheduler)
    run_dir = Path(run_dir) if run_dir is not None else rundir.default_run_dir(spec.name)
    try:
        return run_study(spec, run_dir, executor=chosen, **options)
    except StudyInterrupted:
        raise
    except KeyboardInterrupt:
        raise StudyInterrupted(run_dir, rundir.count_cells(run_dir)) from None


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
    executor: Executor | None = None,
    engine: str = DEFAULT_ENGINE,
    retrain: bool = False,
) -> RunOutcome:
    """Run a study into a run directory (layout in the module docstring).

    Parameters
    ----------
    spec : StudySpec
    run_dir : path-like, optional
        Default ``runs/<slug of the study name>`` in the current directory.
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
    executor : robust_mnist.runner.executors.Executor, optional
        Where the perturbed cells are computed (default: this process, in turn); the table
        does not depend on it.
    engine : {"keras", "onnx"}
        What runs the Keras models (see :func:`robust_mnist.runner.inputs.load_model`):
        probabilities differ by about 1e-6 between engines, so a run is resumed only with the
        engine it started with.
    retrain : bool
        Train all the study's architectures again (into the user's model cache, which is then
        preferred to the bundled models) before running, as ``retrain = true`` on a
        ``[[models]]`` entry does for one; model files are not affected. Neither applies
        when a run resumes (its models must stay the same), nor to a ``model_loader``.

    Returns
    -------
    RunOutcome

    Raises
    ------
    ModelError
        An ONNX model file that cannot be used: checked before anything is written.
    RunDirError
        If another process is writing into ``run_dir``, if it holds an unfinished run and
        neither ``resume`` nor ``force`` is given, or if it holds a run of another study
        (or of other digits or model files) and ``force`` is not given.
    KeyboardInterrupt
        Propagated after marking the run "interrupted"; completed cells stay on disk.
    """
    started_clock = time.perf_counter()
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise InvalidArgumentError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    progress = progress or Progress()
    if engine not in ENGINES:
        raise InvalidArgumentError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    default_loader = model_loader is None
    executor = executor or SerialExecutor()
    run_dir = Path(run_dir) if run_dir is not None else rundir.default_run_dir(spec.name)
    for model in spec.models:  # a bad ONNX file is one line, with nothing written yet
        if model.path is not None:
            models.check_model_file(model.path, model.contract)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_hash = spec.spec_hash()
    cells = plan_cells(spec)

    with rundir.locked(run_dir):
        existing = None if force else rundir.try_read_run_info(run_dir)
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
            if rundir.is_complete(run_dir, existing):
                return RunOutcome(run_dir, spec.name, "already-complete", len(cells), 0, len(cells), 0,
                                  time.perf_counter() - started_clock)
            if not resume:
                raise RunDirError(
                    f"{run_dir} holds an unfinished run of this study: add --resume to finish it "
                    "or --force to start over"
                )
        if force:
            rundir.clear(run_dir)
        rundir.remove_temporaries(run_dir)

        progress.stage("loading digits")
        digits = load_study_digits(spec)
        subsets = spec_subsets(spec, digits)
        progress.stage("loading models")
        if default_loader:  # retrain (the flag, or the spec's) only when a run starts
            model_loader = functools.partial(
                load_model, engine=engine, retrain=False if existing is not None else (retrain or None)
            )
        loaded = {model.name: model_loader(model) for model in spec.models}
        model_info = {name: model.info for name, model in loaded.items()}
        if existing is not None:
            _check_same_inputs(run_dir, existing, digits, model_info)

        run_info = _new_run_json(spec, spec_hash, digits, model_info, cells, subsets, chunk_size, command)
        run_info["executor"] = executor.describe()
        if existing is not None:
            run_info["started"] = existing.get("started", run_info["started"])
            run_info["resumed"] = [*existing.get("resumed", []), rundir.now()]
            run_info["compute_seconds"] = existing.get("compute_seconds", 0.0)
        previous_seconds = run_info["compute_seconds"]
        rundir.write_run_info(run_dir, run_info)

        # compute_seconds adds up the sessions' computing time (not loading or training models).
        computing_since = time.perf_counter()
        # Side work runs on a thread of its own, where the cells leave a core idle: the digits'
        # morphometrics (digits.npz), then each refined sweep as soon as its cells are on disk,
        # while the other cells are computed; the exemplars while results.parquet is written.
        side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robust-mnist-side")
        classifiers = {name: model.classifier for name, model in loaded.items()}
        refining: dict[str, Future] = {}

        def family_done(label: str) -> None:
            sweep = next(sweep for sweep in spec.perturbations if sweep.label == label)
            if sweep.refine:
                refining[label] = side.submit(refine_from_cells, run_dir, run_info, sweep, digits, classifiers)

        try:
            digits_written = None
            if existing is None or not (run_dir / rundir.DIGITS_FILE).is_file():
                digits_written = side.submit(_write_digits, run_dir, digits)
            computed, evaluations = _compute_cells(
                spec, spec_hash, run_dir, cells, digits, subsets, loaded, chunk_size, progress, executor,
                family_done,
            )
            if digits_written is not None:
                digits_written.result()
            exemplars_written = side.submit(write_exemplars, run_dir, spec, run_info)
            progress.stage("writing results.parquet")
            rundir.write_results(run_dir, run_info)
            if refining:
                progress.stage("refining critical magnitudes")
                write_refined(run_dir, [refining[sweep.label].result() for sweep in spec.perturbations if sweep.refine])
            progress.stage("writing exemplars.npz")
            exemplars_written.result()
        except BaseException as error:
            # Whatever side work has started ends before the run's status is written.
            side.shutdown(wait=True, cancel_futures=True)
            run_info["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            if not isinstance(error, KeyboardInterrupt):
                run_info["error"] = f"{type(error).__name__}: {error}"
            run_info["compute_seconds"] = round(previous_seconds + time.perf_counter() - computing_since, 3)
            with contextlib.suppress(Exception):
                rundir.write_run_info(run_dir, run_info)
            raise
        finally:
            side.shutdown(wait=True, cancel_futures=True)
        run_info.pop("error", None)
        run_info["status"] = "complete"
        run_info["finished"] = rundir.now()
        run_info["compute_seconds"] = round(previous_seconds + time.perf_counter() - computing_since, 3)
        rundir.write_run_info(run_dir, run_info)
    _release_memory()
    return RunOutcome(
        run_dir, spec.name, "complete", len(cells), computed, len(cells) - computed, evaluations,
        time.perf_counter() - started_clock,
    )


def _release_memory() -> None:
    """Hand back what the run no longer needs, so that the summary and report that follow start
    low: morph's caches (the training digits as a target pool, flow fields), then the heap's
    free pages (the threads' malloc arenas keep several hundred MB otherwise; glibc only)."""
    morph.clear_caches()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _write_digits(run_dir: Path, digits: Digits) -> None:
    """digits.npz: the study's digits with their stroke thickness and slant."""
    rundir.save_npz_atomically(
        run_dir / rundir.DIGITS_FILE,
        {"images": digits.images, "labels": digits.labels, "ids": digits.ids,
         **digit_morphometrics(digits.images)},
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
    executor: Executor,
    family_done: Callable[[str], None],
) -> tuple[int, int]:
    """Compute and write every cell not validly on disk; return (cells, evaluations) computed.

    ``family_done(label)`` is called once per perturbation spec, as soon as all its cells
    (and the clean one) are on disk.
    """
    n_models = len(loaded)
    rows = {cell: n_models * _cell_images(cell, digits, subsets) for cell in cells}
    pending = []
    for cell in cells:
        path = rundir.cell_path(run_dir, cell.key)
        if path.exists() and rundir.read_cell(run_dir, cell.key, spec_hash, rows[cell]) is None:
            logger.warning("%s is incomplete or from another run: computing it again", path)
            path.unlink()
        if not path.exists():
            pending.append(cell)
    progress.start(sum(rows[cell] for cell in pending), len(pending))

    classifiers: dict[str, Classifier] = {name: model.classifier for name, model in loaded.items()}
    clean_cell = Cell(CLEAN)
    if clean_cell in pending:
        clean_table = compute_clean(to_float(digits.images), digits.labels, classifiers, progress)
        _finish_cell(run_dir, clean_table, clean_cell, spec_hash, progress)
    else:
        clean_table = rundir.read_cell(run_dir, CLEAN, spec_hash, rows[clean_cell])
    clean_pred = {
        name: clean_table.filter(pc.equal(clean_table.column("model"), name)).column("pred").to_numpy()
        for name in classifiers
    }
    # Cells come back in completion order; each is written as it arrives.
    jobs = [cell for cell in pending if cell.label != CLEAN]
    missing = Counter(cell.label for cell in jobs)
    for sweep in spec.perturbations:
        if not missing[sweep.label]:
            family_done(sweep.label)
    for cell, table in compute_cells(executor, spec, digits, subsets, loaded, clean_pred, jobs, chunk_size):
        progress.cell_started(cell, rows[cell])
        progress.advance(rows[cell])
        _finish_cell(run_dir, table, cell, spec_hash, progress)
        missing[cell.label] -= 1
        if not missing[cell.label]:
            family_done(cell.label)
    return len(pending), sum(rows[cell] for cell in pending)


def _finish_cell(run_dir: Path, table: pa.Table, cell: Cell, spec_hash: str, progress: Progress) -> None:
    table = rundir.stamp_cell(table, key=cell.key, spec_hash=spec_hash, rows=table.num_rows)
    rundir.write_cell(run_dir, table, cell.key)
    progress.cell_finished(cell)


def _cell_images(cell: Cell, digits: Digits, subsets: dict[str, np.ndarray]) -> int:
    return len(digits.images) if cell.label == CLEAN else len(subsets[cell.label])


def _check_same_inputs(run_dir: Path, existing: dict[str, Any], digits: Digits, models: dict[str, Any]) -> None:
    """Refuse to resume a run whose digits or model files have changed since it started."""
    old = existing.get("data", {}).get("checksum")
    if old != digits.info["checksum"]:
        raise RunDirError(
            f"{run_dir} was run on other digits (checksum {str(old)[:12]}... now "
            f"{digits.info['checksum'][:12]}...); use --force to start over"
        )
    for name, info in models.items():
        before = existing.get("models", {}).get(name, {})
        if before.get("engine", "keras") != info.get("engine", "keras"):
            raise RunDirError(
                f"{run_dir}: model {name!r} ran on the {before.get('engine', 'keras')} engine when the "
                f"run started, not {info.get('engine', 'keras')}; resume with --engine "
                f"{before.get('engine', 'keras')}, or use --force to start over"
            )
        old = before.get("checksum")
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
        "format": rundir.FORMAT,
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
                      "draws": p.draws, "n_digits": len(subsets[p.label]),
                      # MNIST-C's severity levels of the grid and its name of the corruption.
                      **({"severities": list(p.severities)} if p.severities else {}),
                      **({"mnist_c": p.mnist_c} if p.mnist_c else {})}
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
        "started": rundir.now(),
        "finished": None,
        "compute_seconds": 0.0,
        "command": list(command) if command is not None else None,
        "status": "running",
    }


def versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that determine the numbers (no TensorFlow import)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("numpy", "onnxruntime", "tensorflow", "keras", "scipy", "scikit-image", "pandas", "pyarrow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["robust_mnist"] = __version__
    return found
