"""Executors: where a study's perturbed cells are computed (this process, a pool, a Dask cluster).

The runner computes the clean cell itself (every later cell needs the clean predictions), then
hands the perturbed cells to an executor as small picklable :class:`CellTask` descriptions.
Each task is computed with exactly the same functions (:mod:`robust_mnist.runner.cells`): the
cell's random stream derives from the study seed, the spec label, the magnitude and the draw
only (:func:`robust_mnist.runner.cells.cell_rng`),
and the models see the same fixed blocks of digits, so the results are the same whichever
executor computes them and in whatever order the cells finish. Results come back to the
client, which writes each cell as it arrives (deduplicated by cell key).

Executors:

``serial``
    This process, cell after cell, with one thread perturbing the next cells while the models
    evaluate the current one (the fastest on 2 cores: TensorFlow already uses both).
``process``
    A :class:`concurrent.futures.ProcessPoolExecutor` of *spawned* processes (``--workers``):
    forking after TensorFlow has started hangs the child.
``dask``
    A ``dask.distributed`` cluster (``--scheduler tcp://HOST:PORT``), or a ``LocalCluster`` of
    spawned worker processes when no address is given. Tasks are retried when a worker dies.
    Needs the optional extra ``robust-mnist[dask]``.

Workers load each model file once (a cache keyed by path, checksum and contract; the client's own
process starts with the models the runner has loaded) and receive the study's digits once (the
process pool's initializer, or one Dask task every cell depends on).
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import pickle
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import models
from ..classifier import Classifier
from ..data import to_float
from ..errors import InvalidArgumentError, ModelError
from .cells import Cell, PerturbedCell, evaluate_cell, perturb_cell
from ..rundir import Digits
from ..study import StudySpec
from .inputs import LoadedModel

logger = logging.getLogger(__name__)

#: Names accepted by :func:`make_executor` (and ``--executor``).
EXECUTORS = ("serial", "process", "dask")
#: How often Dask re-runs a task that raised (a killed worker's tasks are always rescheduled).
DASK_RETRIES = 2
#: Cells the serial executor perturbs ahead of the one being evaluated (each holds its digits).
PREFETCH_CELLS = 2


# --------------------------------------------------------------------------- units of work


@dataclass(frozen=True)
class ModelRef:
    """How a worker gets a model: a ``.keras`` or ``.onnx`` file (path and sha256), or an
    in-memory object.

    Attributes
    ----------
    name : str
        The model's name in the study (the ``model`` column).
    path : str or None
        The model file, loaded with :func:`robust_mnist.models.load_classifier` (Keras's
        safe mode, or ONNX Runtime). Remote workers need it at the same path.
    checksum : str or None
        sha256 of the file; a worker refuses a file whose bytes differ from the client's.
    classifier : Classifier or None
        Used when there is no file (numpy models in tests): must be picklable.
    contract : dict or None
        An ONNX file's input contract as the client resolved it (run.json's ``contract``).
    """

    name: str
    path: str | None = None
    checksum: str | None = None
    classifier: Any = None
    contract: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StudyContext:
    """What every task of a run shares, sent to each worker once.

    Attributes
    ----------
    images : (N, 28, 28) ndarray of uint8
        The study's clean digits (digits.npz).
    labels : (N,) ndarray of int64
    seed : int
        The study seed.
    chunk_size : int
        Images per ``apply`` call.
    models : tuple of ModelRef
        In study order.
    """

    images: np.ndarray
    labels: np.ndarray
    seed: int
    chunk_size: int
    models: tuple[ModelRef, ...]


@dataclass(frozen=True)
class CellTask:
    """One perturbed cell to compute.

    Attributes
    ----------
    cell : robust_mnist.runner.cells.Cell
    perturbation : Perturbation
        A fresh instance of the spec's family (pickled by class reference, so families that
        only a test registered still work in a worker).
    index : (n,) ndarray of int64
        The cell's digits (indices into the study digits).
    clean_pred : dict of str to (n,) ndarray of int64
        Each model's clean prediction for those digits.
    """

    cell: Cell
    perturbation: Any
    index: np.ndarray
    clean_pred: Mapping[str, np.ndarray] = field(default_factory=dict)


def model_refs(loaded: Mapping[str, LoadedModel]) -> tuple[ModelRef, ...]:
    """Worker-side descriptions of the runner's loaded models.

    A model with a file is reloaded from it by each worker; one without (a test's numpy
    model) travels as the object itself.
    """
    refs = []
    for name, model in loaded.items():
        path = model.info.get("path")
        if path is not None:
            refs.append(ModelRef(name, str(path), model.info.get("checksum"), contract=model.info.get("contract")))
        else:
            refs.append(ModelRef(name, None, model.info.get("checksum"), model.classifier))
    return tuple(refs)


# --------------------------------------------------------------------------- worker side

#: Worker-process state: models by (path, checksum, contract), and the process pool's context.
_MODEL_CACHE: dict[tuple[str, str | None, str], Classifier] = {}
_POOL_CONTEXT: list[StudyContext] = []


def _classifier(ref: ModelRef) -> Classifier:
    if ref.path is None:
        if ref.classifier is None:
            raise ValueError(f"model {ref.name!r}: neither a file nor a picklable classifier to send to workers")
        return ref.classifier
    # One file may be two models of a study, read with different input contracts.
    key = (ref.path, ref.checksum, json.dumps(ref.contract, sort_keys=True))
    if key not in _MODEL_CACHE:
        if ref.checksum is not None and models.file_checksum(ref.path) != ref.checksum:
            raise ModelError(
                f"{ref.path}: model file on worker {os.uname().nodename} differs from the "
                "client's (sha256 mismatch); give every worker the same file"
            )
        _MODEL_CACHE[key] = models.load_classifier(ref.path, ref.contract)
    return _MODEL_CACHE[key]


def compute_task(context: StudyContext, task: CellTask) -> tuple[Cell, pa.Table]:
    """Compute one cell (in whatever process runs it): perturb its digits, run the models.

    Returns
    -------
    cell : Cell
    table : pyarrow.Table
        The cell's rows, as :func:`robust_mnist.runner.cells.evaluate_cell` returns them.
    """
    classifiers = {ref.name: _classifier(ref) for ref in context.models}
    return task.cell, evaluate_cell(_perturb(context, task), *_task_rows(context, task), classifiers,
                                    dict(task.clean_pred))


def _perturb(context: StudyContext, task: CellTask, images: np.ndarray | None = None) -> PerturbedCell:
    """The task's perturbed digits (``images``: the context's digits already as floats)."""
    index = np.asarray(task.index, dtype=np.int64)
    clean = to_float(context.images[index]) if images is None else images[index]
    return perturb_cell(task.cell, task.perturbation, clean, context.labels[index], context.seed,
                        chunk_size=context.chunk_size)


def _task_rows(context: StudyContext, task: CellTask) -> tuple[np.ndarray, np.ndarray]:
    """The labels and digit indices of a task's rows."""
    index = np.asarray(task.index, dtype=np.int64)
    return context.labels[index], index


def _pool_init(context_file: str) -> None:
    with open(context_file, "rb") as handle:
        _POOL_CONTEXT[:] = [pickle.load(handle)]
    # A pool worker whose client was killed (SIGKILL) would wait for tasks forever (it holds
    # both ends of the task pipe, so it never sees end-of-file): leave when the parent goes.
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _pool_task(task: CellTask) -> tuple[Cell, pa.Table]:
    return compute_task(_POOL_CONTEXT[0], task)


def _identity(value: Any) -> Any:
    return value


def _compute_with_context(context: StudyContext, task: CellTask) -> tuple[Cell, pa.Table]:
    return compute_task(context, task)


# --------------------------------------------------------------------------- executors


class Executor:
    """Computes cell tasks and yields ``(cell, table)`` as each finishes (any order).

    Subclasses implement :meth:`map`. An executor is reusable across runs.
    """

    name = "serial"
    workers = 1

    def map(
        self, context: StudyContext, tasks: Sequence[CellTask], local: Mapping[str, Classifier] | None = None
    ) -> Iterator[tuple[Cell, pa.Table]]:
        """Compute ``tasks``; yield each cell's result once, as it completes.

        ``local`` holds the models already loaded in this process, for an executor that
        computes here; the others load them from ``context``.
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What run.json records about the executor."""
        return {"name": self.name, "workers": self.workers}


class SerialExecutor(Executor):
    """This process, one cell after another, in the order given.

    One worker thread perturbs the next :data:`PREFETCH_CELLS` cells while this thread runs
    the models: NumPy and TensorFlow both release the GIL, so the two overlap. Only the worker
    touches the family instances (some cache their work across a sweep), and the results are
    the same as computed in turn.
    """

    def map(
        self, context: StudyContext, tasks: Sequence[CellTask], local: Mapping[str, Classifier] | None = None
    ) -> Iterator[tuple[Cell, pa.Table]]:
        if not tasks:
            return
        classifiers = {ref.name: (local or {}).get(ref.name) or _classifier(ref) for ref in context.models}
        images = to_float(context.images)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robust-mnist-perturb")
        try:
            queued = deque(pool.submit(_perturb, context, task, images) for task in tasks[:PREFETCH_CELLS])
            for number, task in enumerate(tasks):
                perturbed = queued.popleft().result()
                if number + PREFETCH_CELLS < len(tasks):
                    queued.append(pool.submit(_perturb, context, tasks[number + PREFETCH_CELLS], images))
                table = evaluate_cell(perturbed, *_task_rows(context, task), classifiers, dict(task.clean_pred))
                del perturbed
                yield task.cell, table
        finally:
            # On an interrupt, wait only for the cell being perturbed; drop the queued ones.
            pool.shutdown(wait=True, cancel_futures=True)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine.

    Parameters
    ----------
    workers : int
        Number of processes (default: the number of CPUs).
    """

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = _check_workers(workers if workers is not None else (os.cpu_count() or 1))

    def map(
        self, context: StudyContext, tasks: Sequence[CellTask], local: Mapping[str, Classifier] | None = None
    ) -> Iterator[tuple[Cell, pa.Table]]:
        if not tasks:
            return
        with tempfile.TemporaryDirectory(prefix="robust-mnist-") as folder:
            # The context goes through a private file, not the initializer's arguments: those
            # are written into a pipe that blocks forever if the child dies while starting.
            context_file = os.path.join(folder, "context.pickle")
            with open(context_file, "wb") as handle:
                pickle.dump(context, handle, protocol=pickle.HIGHEST_PROTOCOL)
            yield from self._map(context_file, tasks)

    def _map(self, context_file: str, tasks: Sequence[CellTask]) -> Iterator[tuple[Cell, pa.Table]]:
        # spawn, never fork: a forked child of a process that has run TensorFlow hangs.
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_pool_init,
            initargs=(context_file,),
        )
        broken = False
        try:
            # A few tasks in flight per worker, not all at once: queued tasks hold memory, and
            # an interrupted run then has little to cancel.
            queue = iter(tasks)
            pending = {pool.submit(_pool_task, task) for task in itertools.islice(queue, 2 * self.workers)}
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    pending.update(pool.submit(_pool_task, task) for task in itertools.islice(queue, 1))
                    yield result
                if not done:
                    # Defensive: should a dead worker leave the pool waiting instead of raising
                    # BrokenProcessPool, fail rather than hang.
                    dead = [p.exitcode for p in list(pool._processes.values()) if p.exitcode not in (None, 0)]
                    if dead:
                        broken = True
                        raise RuntimeError(
                            f"a worker process of --executor process died (exit code {dead[0]}); "
                            "see the messages above"
                        )
        finally:
            if broken:
                for process in list(pool._processes.values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
            else:
                pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """A Dask distributed cluster: an existing scheduler, or a local cluster of processes.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:8786``). Without it, a ``LocalCluster``
        of ``workers`` spawned processes (one thread each) bound to 127.0.0.1 is started for
        the run and closed after it.
    workers : int, optional
        Local cluster size (default: the number of CPUs); ignored with ``scheduler``.
    retries : int
        Extra attempts for a task that raised; a task whose worker died is rescheduled by
        the scheduler anyway (up to ``distributed.scheduler.allowed-failures`` times).
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, retries: int = DASK_RETRIES) -> None:
        _import_distributed()
        self.scheduler = scheduler
        self.workers = _check_workers(workers if workers is not None else (os.cpu_count() or 1))
        self.retries = int(retries)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "scheduler": self.scheduler,
                "workers": None if self.scheduler else self.workers}

    def map(
        self, context: StudyContext, tasks: Sequence[CellTask], local: Mapping[str, Classifier] | None = None
    ) -> Iterator[tuple[Cell, pa.Table]]:
        distributed = _import_distributed()
        if not tasks:
            return
        cluster = None
        # The nanny writes its worker environment into this process's os.environ before
        # each spawn (PYTHONHASHSEED, MALLOC_TRIM_THRESHOLD_...): put it back afterwards.
        saved_environ = dict(os.environ)
        try:
            if self.scheduler is None:
                cluster = _local_cluster(distributed, self.workers)
                client = distributed.Client(cluster)
            else:
                try:
                    client = distributed.Client(self.scheduler, timeout="20s")
                except OSError as error:
                    raise OSError(f"cannot reach the Dask scheduler at {self.scheduler} ({error})") from None
            try:
                yield from self._run(client, distributed, context, tasks)
            finally:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()
                os.environ.clear()
                os.environ.update(saved_environ)

    def _run(self, client, distributed, context: StudyContext, tasks: Sequence[CellTask]):
        # The digits travel once per worker: one task holds them and every cell depends on it.
        # Unlike scattered data, the scheduler can recompute it if the workers holding it die.
        shared = client.submit(_identity, context, pure=False, retries=self.retries)
        futures = {
            client.submit(_compute_with_context, shared, task, pure=False, retries=self.retries): task
            for task in tasks
        }
        seen: set[str] = set()
        try:
            for future in distributed.as_completed(futures):
                cell, table = future.result()
                future.release()
                if cell.key in seen:  # never expected; a duplicate must not become duplicate rows
                    logger.warning("cell %s came back twice from Dask; kept the first", cell.key)
                    continue
                seen.add(cell.key)
                yield cell, table
        finally:
            client.cancel(list(futures) + [shared])


def _local_cluster(distributed, workers: int):
    """A LocalCluster of ``workers`` processes that compute exactly what this process would.

    processes=True: workers are separate processes started with distributed's multiprocessing
    method (spawn by default), never forked from this one. Dask's nanny caps BLAS/OpenMP
    threads at 1 in its workers by default, and another thread count changes the last bits
    of matrix products (so of the probabilities): the workers inherit this process's
    settings instead.
    """
    import dask

    environ = {
        key: value
        for key, value in (dask.config.get("distributed.nanny.pre-spawn-environ", default=None) or {}).items()
        if key not in _THREAD_VARIABLES
    }
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address=None,
        )


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def make_executor(name: str = "serial", *, workers: int | None = None, scheduler: str | None = None) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`).

    Raises
    ------
    InvalidArgumentError
        For an unknown name, a bad worker count, options the executor does not take, or
        the dask executor without Dask installed.
    """
    if name not in EXECUTORS:
        raise InvalidArgumentError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and name != "dask":
        raise InvalidArgumentError(f"--scheduler {scheduler} needs --executor dask (got {name!r})")
    if name == "serial":
        if workers not in (None, 1):
            raise InvalidArgumentError(f"the serial executor runs 1 worker; got --workers {workers} (use --executor process or dask)")
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    return DaskExecutor(scheduler, workers)


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InvalidArgumentError(f"workers must be a positive integer; got {workers!r}")
    return int(workers)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise InvalidArgumentError(
            "the dask executor needs Dask: pip install 'robust-mnist[dask]' "
            "(or pip install 'dask[distributed]')"
        ) from None
    return distributed


def run_cells(
    executor: Executor,
    context: StudyContext,
    tasks: Iterable[CellTask],
    local: Mapping[str, Classifier] | None = None,
) -> Iterator[tuple[Cell, pa.Table]]:
    """Yield each task's ``(cell, table)`` once, as the executor finishes it.

    Duplicates (a task that somehow ran twice) are dropped here too, so the client never
    writes a cell twice.
    """
    seen: set[str] = set()
    for cell, table in executor.map(context, list(tasks), local):
        if cell.key not in seen:
            seen.add(cell.key)
            yield cell, table


def compute_cells(
    executor: Executor,
    spec: StudySpec,
    digits: Digits,
    subsets: Mapping[str, np.ndarray],
    loaded: Mapping[str, LoadedModel],
    clean_pred: Mapping[str, np.ndarray],
    cells: Sequence[Cell],
    chunk_size: int,
) -> Iterator[tuple[Cell, pa.Table]]:
    """The runner's entry point: compute a study's perturbed ``cells`` on ``executor``.

    Parameters
    ----------
    executor : Executor
    spec : StudySpec
    digits : robust_mnist.rundir.Digits
    subsets : dict of str to (n,) ndarray of int64
        Each spec label's digits (indices into ``digits``).
    loaded : dict of str to LoadedModel
    clean_pred : dict of str to (N,) ndarray of int64
        Each model's clean prediction for every study digit.
    cells : sequence of Cell
        The perturbed cells still to compute.
    chunk_size : int

    Yields
    ------
    (Cell, pyarrow.Table)
        Each cell once, in completion order.
    """
    context = StudyContext(
        images=digits.images, labels=digits.labels, seed=int(spec.seed),
        chunk_size=int(chunk_size), models=model_refs(loaded),
    )
    # One family instance per spec: some cache work across the magnitudes of a sweep.
    families = {sweep.label: sweep.make() for sweep in spec.perturbations}
    tasks = [
        CellTask(
            cell, families[cell.label], subsets[cell.label],
            {name: np.asarray(pred)[subsets[cell.label]] for name, pred in clean_pred.items()},
        )
        for cell in cells
    ]
    local = {name: model.classifier for name, model in loaded.items()}
    return run_cells(executor, context, tasks, local)
