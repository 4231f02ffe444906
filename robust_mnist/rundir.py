"""The run-directory format: its layout, column names, lock, atomic writers and readers.

This module is the one owner of what a study run leaves on disk. The runner writes through it;
the summary, report and comparison read through it (:func:`load_run`, :func:`load_results`,
:func:`read_run_info`...), so they never need the runner, the perturbations or a model. It
imports only numpy, pandas and pyarrow.

Layout::

    RUN_DIR/.lock              held with fcntl.flock while a run writes here
    RUN_DIR/run.json           study (as loaded), spec_hash, seed, versions, data {source, n,
                               checksum, ...}, models {name: {arch, seed, path, checksum,
                               training}}, families {label: {family, unit, random,
                               description, magnitudes, draws, n_digits, and for MNIST-C
                               corruptions mnist_c (its name) and severities (the level
                               of each magnitude, when the study gave severities)}}, cells (the plan:
                               key, family, magnitude, draw, rows),
                               chunk_size, model_batch, started, finished (null until
                               complete), resumed (times), compute_seconds (computing time
                               summed over sessions, model loading excluded), command, status
                               ("running" | "interrupted" | "failed" | "complete"), error
    RUN_DIR/digits.npz         images (N, 28, 28) uint8, labels (N,) int64, ids (N,) str, and
                               the clean digits' morphometrics thickness (N,) and slant (N,)
                               float64 (Morpho-MNIST's definitions; absent in older runs)
    RUN_DIR/cells/<key>.parquet  one per completed cell (tmp file + fsync + os.replace); key is
                               "clean" or "<label>__<repr(magnitude)>__d<draw>"
    RUN_DIR/results.parquet    the long table, written at the end, sorted by model (study
                               order), family (clean, then study order), magnitude, draw, image
    RUN_DIR/exemplars.npz      gallery digits, below
    RUN_DIR/refined.parquet    only for studies with ``refine`` sweeps: critical magnitudes
                               refined by bisection, written last

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
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import RunDirError

#: Version of the run directory layout.
FORMAT = 1
#: The family name of the unperturbed digits' rows.
CLEAN = "clean"
PROBABILITY_COLUMNS = tuple(f"p{k}" for k in range(10))
BASE_COLUMNS = (
    "model", "family", "magnitude", "image", "draw", "label", "clean_pred", "pred",
    "p_true", "p_pred", *PROBABILITY_COLUMNS,
)
#: Per-digit morphometrics of the clean digits stored in digits.npz.
MORPHOMETRICS = ("thickness", "slant")

RUN_JSON = "run.json"
DIGITS_FILE = "digits.npz"
RESULTS_FILE = "results.parquet"
EXEMPLARS_FILE = "exemplars.npz"
REFINED_FILE = "refined.parquet"
CELLS_DIR = "cells"
LOCK_FILE = ".lock"

_METADATA_KEY = b"robust_mnist"


def slug(name: str, default: str = "study") -> str:
    """A file-name-safe form of a study name: ``runs/<slug>`` and ``reports/<slug>.html``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or default


def default_run_dir(study_name: str) -> Path:
    """``runs/<slug of the study name>``, relative to the current directory."""
    return Path("runs") / slug(study_name)


def cell_key(label: str, magnitude: float = 0.0, draw: int = 0) -> str:
    """File stem of a cell: ``clean`` or ``<label>__<repr(magnitude)>__d<draw>``."""
    if label == CLEAN:
        return CLEAN
    return f"{label}__{float(magnitude)!r}__d{draw}"


# ------------------------------------------------------------------------------- digits


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


# ------------------------------------------------------------------------ the long table


def result_schema(param_columns: Sequence[str]) -> pa.Schema:
    """The results table's schema for the given parameter columns."""
    types = {"model": pa.string(), "family": pa.string(), "magnitude": pa.float64(),
             "image": pa.int64(), "draw": pa.int64(), "label": pa.int64(),
             "clean_pred": pa.int64(), "pred": pa.int64()}
    fields = [pa.field(name, types.get(name, pa.float32())) for name in BASE_COLUMNS]
    fields += [pa.field(name, pa.float64()) for name in param_columns]
    return pa.schema(fields)


def stamp_cell(table: pa.Table, **content: Any) -> pa.Table:
    """The table with ``content`` merged into its cell metadata (key, spec_hash, rows,
    param_dtypes): how a resumed run recognises a complete cell of its own."""
    merged = {**cell_metadata(table), **content}
    return table.replace_schema_metadata({_METADATA_KEY: json.dumps(merged).encode()})


def cell_metadata(table_or_schema: pa.Table | pa.Schema) -> dict[str, Any]:
    """A cell table's metadata (empty for a table without any)."""
    schema = getattr(table_or_schema, "schema", table_or_schema)
    raw = (schema.metadata or {}).get(_METADATA_KEY)
    return json.loads(raw) if raw else {}


def cell_path(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / CELLS_DIR / f"{key}.parquet"


def read_cell(run_dir: Path, key: str, spec_hash: str, rows: int) -> pa.Table | None:
    """The cell's table if its file is complete and belongs to this run, else None."""
    try:
        table = pq.read_table(cell_path(run_dir, key))
    except Exception:  # any unreadable file is simply not a trusted cell
        return None
    meta = cell_metadata(table)
    if meta.get("key") != key or meta.get("spec_hash") != spec_hash or table.num_rows != rows:
        return None
    return table


def count_cells(run_dir: str | os.PathLike) -> int:
    """Cell files in the run directory (completed cells, as a resumed run would find them)."""
    folder = Path(run_dir) / CELLS_DIR
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def write_cell(run_dir: Path, table: pa.Table, key: str) -> None:
    """Write one computed cell atomically into ``cells/``."""
    folder = Path(run_dir) / CELLS_DIR
    folder.mkdir(exist_ok=True)
    write_parquet_atomically(table, cell_path(run_dir, key))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    # A parameter the family does not have is missing (null; NaN in pandas), not a number.
    columns = [
        table.column(name) if name in table.column_names else pa.nulls(table.num_rows, pa.float64())
        for name in schema.names
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _result_tables(
    run_dir: Path, run_info: dict[str, Any], missing_ok: bool, families: Sequence[str] | None = None
) -> Iterator[pa.Table]:
    """The results in table order, one piece per (model, cell), with one shared schema (of
    the cells of ``families`` only, when given)."""
    spec_hash = run_info["spec_hash"]
    present: list[tuple[str, Path, int]] = []
    param_columns: list[str] = []
    for entry in run_info["cells"]:
        if families is not None and entry["family"] not in families:
            continue
        key, rows = entry["key"], int(entry["rows"])
        path = cell_path(run_dir, key)
        if not path.is_file():
            if missing_ok:
                continue
            raise RunDirError(f"{path}: cell missing; run the study again with --resume")
        try:
            schema = pq.read_schema(path)
        except Exception:
            if missing_ok:
                continue
            raise RunDirError(f"{path}: incomplete cell; run the study again with --resume") from None
        for name in schema.names:
            if name.startswith("param_") and name not in param_columns:
                param_columns.append(name)
        present.append((key, path, rows))
    schema = result_schema(param_columns)
    models = list(run_info["models"])
    for model in models:
        for key, path, rows in present:
            table = read_cell(run_dir, key, spec_hash, rows)
            if table is None:
                if missing_ok:
                    continue
                raise RunDirError(f"{path}: incomplete cell; run the study again with --resume")
            if len(models) > 1:
                table = table.filter(pc.equal(table.column("model"), model))
            yield _conform(table, schema)


def write_results(run_dir: Path, run_info: dict[str, Any]) -> None:
    """Stream the cells into results.parquet (one row group per model and cell: constant memory)."""

    def write(handle) -> None:
        writer = None
        for table in _result_tables(run_dir, run_info, missing_ok=False):
            if writer is None:
                writer = pq.ParquetWriter(handle, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()

    write_bytes_atomically(Path(run_dir) / RESULTS_FILE, write)


# ------------------------------------------------------------------------------ readers


def read_run_info(run_dir: str | os.PathLike) -> dict[str, Any]:
    """run.json of a run directory.

    Raises
    ------
    RunDirError
        Naming the directory when it has no run.json, or the file when it is not valid JSON.
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{run_dir}: not a run directory (no run.json)") from None
    except OSError as error:
        raise RunDirError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        info = json.loads(text)
    except ValueError as error:
        raise RunDirError(f"{path}: not valid JSON ({error}); run the study again with --force") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{path}: not a run description (expected a JSON object)")
    return info


def try_read_run_info(run_dir: Path) -> dict[str, Any] | None:
    """run.json, or None when the directory has none or it cannot be read (a fresh directory)."""
    try:
        return read_run_info(run_dir)
    except RunDirError:
        return None


def is_complete(run_dir: Path, run_info: Mapping[str, Any] | None = None) -> bool:
    """Whether the run finished: status complete and both final files present."""
    run_dir = Path(run_dir)
    info = try_read_run_info(run_dir) if run_info is None else run_info
    return (
        info is not None and info.get("status") == "complete"
        and (run_dir / RESULTS_FILE).is_file() and (run_dir / EXEMPLARS_FILE).is_file()
    )


def _read_parquet(path: Path, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
    try:
        if columns is not None:
            present = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in present]
        return pq.read_table(path, columns=columns, filters=filters)
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; run the study again with --resume") from None
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise RunDirError(f"{path}: not a readable table ({error}); run the study again with --force") from None


def load_results(
    run_dir: str | os.PathLike,
    columns: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The results table of a run (columns in the module docstring).

    Reads results.parquet when the run is complete; for an unfinished run, the completed
    cells, in the same order.

    Parameters
    ----------
    run_dir : path-like
    columns : sequence of str, optional
        Only these columns (those the run has); default all.
    families : sequence of str, optional
        Only the rows of these families (``"clean"`` for the clean rows); default all.
    """
    run_dir = Path(run_dir)
    run_info = read_run_info(run_dir)
    if run_info.get("status") == "complete" and (run_dir / RESULTS_FILE).is_file():
        return read_results_file(run_dir, columns, families)
    tables = list(_result_tables(run_dir, run_info, missing_ok=True))
    table = pa.concat_tables(tables) if tables else result_schema([]).empty_table()
    frame = table.to_pandas()
    if families is not None:
        frame = frame.loc[frame["family"].isin(list(families))].reset_index(drop=True)
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame


def read_cells(run_dir: str | os.PathLike, run_info: dict[str, Any], families: Sequence[str]) -> pd.DataFrame:
    """The rows of ``families`` straight from their cell files, in table order, as
    :func:`read_results_file` would read them once results.parquet is written (with only
    these families' parameter columns): how the runner refines a sweep while others run.

    Raises
    ------
    RunDirError
        Naming a missing or incomplete cell.
    """
    tables = list(_result_tables(Path(run_dir), run_info, missing_ok=False, families=families))
    return pa.concat_tables(tables).to_pandas()


def read_results_file(
    run_dir: str | os.PathLike,
    columns: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
) -> pd.DataFrame:
    """results.parquet as written, whatever the run's status (the runner reads it back to
    refine critical magnitudes before it marks the run complete); arguments as
    :func:`load_results`."""
    filters = None if families is None else [("family", "in", list(families))]
    table = _read_parquet(Path(run_dir) / RESULTS_FILE, columns, filters)
    # Column by column, each freed once converted; then Arrow's pool gives back what decoding
    # held: a million-row table otherwise keeps twice its size resident.
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    return frame


def load_digits(run_dir: str | os.PathLike) -> Digits:
    """The clean digits of a run as stored in digits.npz."""
    run_dir = Path(run_dir)
    return _digits(run_dir, _load_npz(run_dir / DIGITS_FILE), read_run_info(run_dir))


def load_morphometrics(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The clean digits' thickness and slant (one row per digit), or None for an older run."""
    return _morphometrics(_load_npz(Path(run_dir) / DIGITS_FILE))


def _digits(run_dir: Path, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> Digits:
    for key in ("images", "labels", "ids"):
        if key not in arrays:
            raise RunDirError(f"{run_dir / DIGITS_FILE}: has no {key!r} array; run the study again with --force")
    return Digits(arrays["images"], arrays["labels"], arrays["ids"], info.get("data", {}))


def _morphometrics(arrays: Mapping[str, np.ndarray]) -> pd.DataFrame | None:
    if not all(name in arrays for name in MORPHOMETRICS):
        return None
    return pd.DataFrame({name: np.asarray(arrays[name], np.float64) for name in MORPHOMETRICS})


def load_exemplars(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """exemplars.npz as a dict of arrays (empty when the run has none yet)."""
    path = Path(run_dir) / EXEMPLARS_FILE
    return _load_npz(path) if path.is_file() else {}


def load_refined(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The refined critical magnitudes of a run (``refined.parquet``), or None if it has none."""
    path = Path(run_dir) / REFINED_FILE
    if not path.is_file():
        return None
    return _read_parquet(path).to_pandas()


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; run the study again with --force") from None
    except Exception as error:  # zipfile, pickle and format errors of a damaged file
        raise RunDirError(f"{path}: not a readable array file ({error}); run the study again with --force") from None


@dataclass
class Run:
    """A run directory read into memory.

    Attributes
    ----------
    path : pathlib.Path
    info : dict
        run.json.
    results : pandas.DataFrame
        The long table (or the requested columns of it).
    digits : Digits
    exemplars : dict of str to ndarray
        exemplars.npz (empty before the run finishes).
    refined : pandas.DataFrame or None
        Refined critical magnitudes, for studies with ``refine`` sweeps.
    morphometrics : pandas.DataFrame or None
        Thickness and slant of each clean digit (None for runs made before they were stored).
    """

    path: Path
    info: dict[str, Any]
    results: pd.DataFrame
    digits: Digits
    exemplars: dict[str, np.ndarray]
    refined: pd.DataFrame | None
    morphometrics: pd.DataFrame | None

    @property
    def complete(self) -> bool:
        return self.info.get("status") == "complete"


def load_run(run_dir: str | os.PathLike, columns: Sequence[str] | None = None) -> Run:
    """Read a run directory: run.json, the results (all columns, or ``columns``), the digits,
    the exemplars, the refined critical magnitudes and the digits' morphometrics.

    Raises
    ------
    RunDirError
        One line naming the directory or file that is missing or damaged.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    digit_arrays = _load_npz(run_dir / DIGITS_FILE)  # once: the digits and their morphometrics
    return Run(
        path=run_dir,
        info=info,
        results=load_results(run_dir, columns),
        digits=_digits(run_dir, digit_arrays, info),
        exemplars=load_exemplars(run_dir),
        refined=load_refined(run_dir),
        morphometrics=_morphometrics(digit_arrays),
    )


# ------------------------------------------------------------------------ writing safely


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on RUN_DIR/.lock; the kernel drops it if the process dies."""
    fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
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


def clear(run_dir: Path) -> None:
    """Remove the files a run writes (and nothing else a user may keep there)."""
    run_dir = Path(run_dir)
    for name in (RUN_JSON, DIGITS_FILE, RESULTS_FILE, EXEMPLARS_FILE, REFINED_FILE):
        (run_dir / name).unlink(missing_ok=True)
    cell_dir = run_dir / CELLS_DIR
    if cell_dir.is_dir():
        for path in cell_dir.glob("*.parquet"):
            path.unlink()


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files of a process that died mid-write (we hold the lock: nobody else writes)."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / CELLS_DIR):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)


def now() -> str:
    """The current local time as run.json records it (ISO 8601, seconds)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(handle)`` to a temporary file, fsync it, then rename over ``path``."""
    path = Path(path)
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


def write_parquet_atomically(table: pa.Table, path: Path) -> None:
    write_bytes_atomically(path, lambda handle: pq.write_table(table, handle))


def write_frame_atomically(frame: pd.DataFrame, path: Path) -> None:
    """A pandas table as Parquet (without its index), atomically."""
    write_bytes_atomically(path, lambda handle: frame.to_parquet(handle, index=False))


def save_npz_atomically(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    write_bytes_atomically(path, lambda handle: np.savez(handle, **arrays))


def write_run_info(run_dir: Path, content: Mapping[str, Any]) -> None:
    """Write run.json atomically."""
    text = json.dumps(content, indent=2, default=_json_default) + "\n"
    write_bytes_atomically(Path(run_dir) / RUN_JSON, lambda handle: handle.write(text.encode()))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
