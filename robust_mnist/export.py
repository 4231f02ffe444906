"""ONNX exports of this tool's Keras models, and the check that an export predicts what its model does.

:func:`export_onnx` turns a ``.keras`` model into an ``.onnx`` file (Keras 3's
``model.export(..., format="onnx")``, through tf2onnx) and accepts it only if ONNX Runtime,
run on the export, gives the Keras adapter's probabilities on the MNIST test digits: max
|Δp| within a tolerance and the same argmax on every digit (:func:`check_equivalence`,
reported as an :class:`ExportCheck`). Nothing is written unless the check passes.

:func:`cached_onnx_export` is the export a study engine uses: kept beside the model
(``article-seed0.onnx`` beside ``article-seed0.keras``) with a JSON sidecar
(``article-seed0.onnx.json``) recording the sha256 of the ``.keras`` file it came from, the
export's own sha256 and its check; it is made, and checked, again only when either changes.
The models bundled with the package (:mod:`robust_mnist.bundled`) live in the installed
package, possibly read-only: their exports go to the user's cache instead
(``$ROBUST_MNIST_HOME/bundled-exports/article-seed0.onnx``, :func:`export_cache_path`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import models
from .bundled import is_bundled
from .backend import tensorflow_and_keras
from .data import load_mnist, to_float
from .errors import InvalidArgumentError, ModelError
from .onnx_model import load_onnx_classifier
from .rundir import write_bytes_atomically

logger = logging.getLogger(__name__)

#: Digits (the first of the MNIST test set) and tolerance of ``robust-mnist export``'s check.
EXPORT_CHECK_DIGITS = 10_000
#: Largest accepted |Δp| between the Keras model and its export, on any digit and class.
TOLERANCE = 1e-5
#: Digits the cached export (the study engine's) is checked on when it is made.
CACHE_CHECK_DIGITS = 1_000
#: Version of the sidecar's layout; another version means "export again".
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class ExportCheck:
    """How closely an ONNX export reproduces its Keras model on MNIST test digits.

    Attributes
    ----------
    keras_path, onnx_path : Path
    n_digits : int
        The first ``n_digits`` MNIST test digits were predicted by both.
    max_abs_diff : float
        ``max over digits i and classes k of |p_keras[i, k] - p_onnx[i, k]|``.
    argmax_agreements : int
        Digits on which both predict the same class.
    tolerance : float
        Largest accepted ``max_abs_diff``.
    """

    keras_path: Path
    onnx_path: Path
    n_digits: int
    max_abs_diff: float
    argmax_agreements: int
    tolerance: float

    @property
    def argmax_share(self) -> float:
        """Share of the digits with the same argmax, in [0, 1]."""
        return self.argmax_agreements / self.n_digits if self.n_digits else 1.0

    @property
    def passed(self) -> bool:
        """``max_abs_diff <= tolerance`` and the same argmax on every digit."""
        return bool(self.max_abs_diff <= self.tolerance) and self.argmax_agreements == self.n_digits

    def describe(self) -> str:
        """``"max |Δp| 6.0e-07 (tolerance 1e-05), same argmax on 10,000 of 10,000 test digits (100.00%)"``."""
        return (
            f"max |Δp| {self.max_abs_diff:.1e} (tolerance {self.tolerance:.0e}), same argmax "
            f"on {self.argmax_agreements:,} of {self.n_digits:,} test digits "
            f"({100 * self.argmax_share:.2f}%)"
        )


# --------------------------------------------------------------------------- export


def export_onnx(
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    trust_model: bool = False,
    n_digits: int = EXPORT_CHECK_DIGITS,
    tolerance: float = TOLERANCE,
) -> ExportCheck:
    """Export a ``.keras`` model to ONNX, and keep the export only if it predicts the same.

    The export is written under a temporary name beside ``out_path``, checked against the
    Keras adapter on the first ``n_digits`` MNIST test digits (:func:`check_equivalence`),
    then renamed to ``out_path``: a failed export or check leaves nothing behind, and an
    existing ``out_path`` is replaced only by an export that passed.

    Parameters
    ----------
    model_path : path-like
        A ``.keras`` model mapping ``(N, 28, 28, 1)`` (or ``(N, 28, 28)``) images in [0, 1]
        to ``(N, 10)`` probabilities. Loaded with Keras's safe mode.
    out_path : path-like
        Where the export goes; must end in ``.onnx``. Its folder is created if needed.
    trust_model : bool
        Load a model file this tool did not train (see :func:`models.check_trusted`).
    n_digits : int
        MNIST test digits of the check, 1 to 10,000.
    tolerance : float
        Largest accepted max |Δp|.

    Returns
    -------
    ExportCheck
        The check of the export now at ``out_path`` (it passed).

    Raises
    ------
    InvalidArgumentError
        ``model_path`` not ``.keras``, ``out_path`` not ``.onnx``, or a bad ``n_digits``.
    ModelError
        One line naming the file: missing, foreign without ``trust_model``, unloadable, not
        exportable, or an export that failed the check.
    """
    model_path, out_path = Path(model_path), Path(out_path)
    _check_paths(model_path, out_path)
    _check_digits(n_digits)
    models.check_trusted(model_path, trust_model)
    classifier = models.load_classifier(model_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp.onnx")
    try:
        _write_export(classifier, model_path, temporary)
        try:
            check = _compare(classifier, model_path, temporary, n_digits, tolerance)
        except ModelError as error:  # refused by the ONNX classifier's checks: name the real files
            detail = str(error).replace(str(temporary), out_path.name)
            raise ModelError(f"{model_path}: its ONNX export cannot be used ({detail})") from None
        check = _with_onnx_path(check, out_path)
        if not check.passed:
            raise ModelError(f"{model_path}: the ONNX export does not predict the same: "
                             f"{check.describe()}; {out_path} not written")
        os.replace(temporary, out_path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.debug("exported %s to %s: %s", model_path, out_path, check.describe())
    return check


def check_equivalence(
    keras_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    n: int = CACHE_CHECK_DIGITS,
    tolerance: float = TOLERANCE,
) -> ExportCheck:
    """Check that an ONNX file predicts what a ``.keras`` model does on the first ``n`` test digits.

    The Keras model runs through :func:`models.load_classifier` (safe mode; the caller has
    decided to trust the file), the ONNX file through the package's ONNX classifier
    (:func:`robust_mnist.onnx_model.load_onnx_classifier`: its checks, then ONNX Runtime on
    the CPU with fixed threads), exactly as a study would run each.

    Returns
    -------
    ExportCheck
        A passing check.

    Raises
    ------
    ModelError
        One line naming both files and the figures, if max |Δp| exceeds ``tolerance`` or an
        argmax differs; or if either file cannot be loaded.
    """
    keras_path, onnx_path = Path(keras_path), Path(onnx_path)
    _check_digits(n)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX file not found")
    check = _compare(models.load_classifier(keras_path), keras_path, onnx_path, n, tolerance)
    if not check.passed:
        raise ModelError(
            f"{onnx_path}: does not predict what {keras_path} does: {check.describe()}"
        )
    return check


def cached_onnx_export(
    model_path: str | os.PathLike,
    trust_model: bool = False,
    n_digits: int = CACHE_CHECK_DIGITS,
    tolerance: float = TOLERANCE,
) -> Path:
    """The ONNX export of a ``.keras`` model, cached (:func:`export_cache_path`: beside it, or
    in the user's cache for a bundled model) and checked when made.

    The cached ``<stem>.onnx`` is reused when its sidecar ``<stem>.onnx.json``
    records the current sha256 of both files (and this sidecar format); otherwise the model is
    exported again with :func:`export_onnx`, checked on ``n_digits`` test digits, and the
    sidecar rewritten (both atomically). The check is not repeated on reuse.

    Returns
    -------
    Path
        The export, :func:`export_cache_path` of ``model_path``.

    Raises
    ------
    InvalidArgumentError, ModelError
        As :func:`export_onnx`.
    """
    model_path = Path(model_path)
    onnx_path = export_cache_path(model_path)
    _check_paths(model_path, onnx_path)
    models.check_trusted(model_path, trust_model)
    if _cache_is_current(onnx_path, models.file_checksum(model_path)):
        logger.debug("reusing the ONNX export %s of %s", onnx_path, model_path)
        return onnx_path
    logger.info("exporting %s to ONNX (once; cached as %s)", model_path, onnx_path)
    # Checked above already: export_onnx need not warn about a foreign file a second time.
    export_with_record(model_path, onnx_path, trust_model=True, n_digits=n_digits, tolerance=tolerance)
    return onnx_path


def export_with_record(
    model_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    trust_model: bool = False,
    n_digits: int = EXPORT_CHECK_DIGITS,
    tolerance: float = TOLERANCE,
) -> ExportCheck:
    """:func:`export_onnx`, then the record of the export beside it (:func:`sidecar_path`): the
    sha256 of both files, the check's figures and the library versions.

    With the record, :func:`cached_onnx_export` reuses the export for as long as neither file
    changes (how the bundled models' exports ship).
    """
    model_path, onnx_path = Path(model_path), Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    check = export_onnx(model_path, onnx_path, trust_model=trust_model, n_digits=n_digits, tolerance=tolerance)
    record = {
        "format": SIDECAR_FORMAT,
        "keras_file": model_path.name,
        "keras_sha256": models.file_checksum(model_path),
        "onnx_file": onnx_path.name,
        "onnx_sha256": models.file_checksum(onnx_path),
        "check": {
            "n_digits": check.n_digits,
            "max_abs_diff": check.max_abs_diff,
            "argmax_agreements": check.argmax_agreements,
            "tolerance": check.tolerance,
        },
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json_atomically(sidecar_path(onnx_path), record)
    return check


def export_cache_path(model_path: str | os.PathLike) -> Path:
    """Where :func:`cached_onnx_export` keeps a model's export: ``<stem>.onnx`` beside the
    ``.keras`` file. A model bundled with the package ships its export beside it (made by
    :func:`cached_onnx_export` when the zoo was built, so no study needs TensorFlow to run it
    on ONNX Runtime); should that export not match the ``.keras`` file, the export goes to
    ``$ROBUST_MNIST_HOME/bundled-exports/<stem>.onnx`` (the package folder may be read-only
    and is not the user's)."""
    model_path = Path(model_path)
    shipped = model_path.with_suffix(".onnx")
    if is_bundled(model_path) and not _cache_is_current(shipped, models.file_checksum(model_path)):
        return models.home() / "bundled-exports" / shipped.name
    return shipped


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """The JSON record beside a cached export: ``<stem>.onnx.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".json")


# --------------------------------------------------------------------------- helpers


def _check_paths(model_path: Path, out_path: Path) -> None:
    if model_path.suffix != ".keras":
        raise InvalidArgumentError(f"{model_path}: only .keras models can be exported to ONNX")
    if out_path.suffix != ".onnx":
        raise InvalidArgumentError(f"{out_path}: the export's file name must end in .onnx")


def _check_digits(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= EXPORT_CHECK_DIGITS:
        raise InvalidArgumentError(
            f"the check's number of digits must be an integer from 1 to {EXPORT_CHECK_DIGITS:,}; got {n!r}"
        )


def _write_export(classifier: models.KerasClassifier, model_path: Path, out: Path) -> None:
    """The model's inference function (``training=False``), exported with Keras 3's ONNX export.

    Keras exports ``model.__call__`` with each layer's default ``training``, which for the
    random augmentation layers (``article-aug``) is True: their random ops would end up in the
    graph (and tf2onnx cannot convert them). A functional wrapper that calls the model with
    ``training=False`` exports what the Keras adapter runs.
    """
    _, keras = tensorflow_and_keras()
    model = classifier.model
    digit_shape = tuple(model.input_shape)[1:]
    inputs = keras.Input(shape=digit_shape, name="input")
    inference = keras.Model(inputs, model(inputs, training=False), name=f"{model.name}_inference")
    # Keras 3 exports only a model that has been called (its input signature comes from it).
    inference(np.zeros((1, *digit_shape), np.float32))
    try:
        with _export_output_hidden():
            inference.export(str(out), format="onnx", verbose=logger.isEnabledFor(logging.DEBUG))
    except ImportError as error:  # tf2onnx (or onnx) missing
        raise ModelError(f"{model_path}: ONNX export needs tf2onnx ({error})") from None
    except Exception as error:  # tf2onnx raises many types for graphs it cannot convert
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{model_path}: cannot export to ONNX ({detail})") from None
    if not out.is_file() or out.stat().st_size == 0:
        raise ModelError(f"{model_path}: the ONNX export wrote no file")


@contextlib.contextmanager
def _export_output_hidden() -> Iterator[None]:
    """Keep tf2onnx's log lines, and Keras's notices, off the terminal unless debugging (-v).

    tf2onnx logs its progress at INFO through :mod:`logging` (the command line shows INFO),
    and the ops it cannot convert at ERROR, line by line, before the check reports the
    failure in one line; Keras's patch for NumPy 2 raises a FutureWarning; anything printed
    goes to stdout, which is for results. With ``-v`` all of it goes to stderr instead.
    """
    if logger.isEnabledFor(logging.DEBUG):
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    tf2onnx_logger = logging.getLogger("tf2onnx")
    saved_level = tf2onnx_logger.level
    tf2onnx_logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        tf2onnx_logger.setLevel(saved_level)


def _compare(
    classifier: models.KerasClassifier, keras_path: Path, onnx_path: Path, n: int, tolerance: float
) -> ExportCheck:
    """Both models' probabilities on the first ``n`` MNIST test digits, compared."""
    images = to_float(load_mnist().x_test[:n])
    expected = classifier.predict_proba(images)
    actual = load_onnx_classifier(onnx_path).predict_proba(images)
    difference = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
    max_abs_diff = float(difference.max()) if difference.size else 0.0
    if not np.isfinite(max_abs_diff):
        max_abs_diff = float("inf")
    agreements = int((expected.argmax(axis=1) == actual.argmax(axis=1)).sum())
    return ExportCheck(
        keras_path=keras_path, onnx_path=onnx_path, n_digits=n,
        max_abs_diff=max_abs_diff, argmax_agreements=agreements, tolerance=float(tolerance),
    )


def _with_onnx_path(check: ExportCheck, onnx_path: Path) -> ExportCheck:
    return ExportCheck(**{**asdict(check), "onnx_path": onnx_path})


def _cache_is_current(onnx_path: Path, keras_sha256: str) -> bool:
    try:
        record = json.loads(sidecar_path(onnx_path).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("format") == SIDECAR_FORMAT
        and record.get("keras_sha256") == keras_sha256
        and onnx_path.is_file()
        and record.get("onnx_sha256") == models.file_checksum(onnx_path)
    )


def _versions() -> dict[str, str]:
    versions = models.library_versions()
    for package in ("onnx", "onnxruntime", "tf2onnx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=2) + "\n"
    write_bytes_atomically(path, lambda handle: handle.write(text.encode()))
