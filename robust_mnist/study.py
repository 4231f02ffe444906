"""Study files: a TOML description of a perturbation study, validated once into a StudySpec.

A study file names the models, the digits, the perturbation families with their magnitude
grids, and a seed::

    name = "article"                 # required; any text (the default run directory is a slug of it)
    seed = 0                         # optional, default 0: every random choice derives from it
    description = "..."              # optional free text

    [[models]]                       # one or more
    arch = "article"                 # a registered architecture: bundled, or trained and cached
    seed = 0                         # or seeds = [0, 1, 2] (one model per seed); default 0
    retrain = true                   # optional: train it again first (robust_mnist.study_models)
    name = "article"                 # optional; default "<arch>-seed<S>"
    # or: path = "my_model.keras"    # relative to the study file; default name: the file stem
    # or: path = "my_model.onnx"     # run by ONNX Runtime; how it wants its digits, declared
    #     input_layout = "nchw"      # where the graph does not say it (robust_mnist.onnx_model):
    #     input_scale = "mnist"      # "nhwc" "nchw" "nhw" "flat"; "unit" (default) "255" "mnist"
    #     output = "logits"          # or {mean = M, std = S}; "probabilities" or "logits"

    [data]                           # optional; default: all 10,000 MNIST test digits
    source = "mnist-test"            # with optional n = 500: a class-stratified subset
    # or: source = "folder", path = "own_digits", labels = "labels.csv" (optional: file,label;
    #     otherwise the label is the leading digit of each file name, as in "7_a.png")

    [[perturbations]]                # one or more
    family = "rotate"                # a registered family (robust-mnist perturbations)
    magnitudes = [5, 10, 20]         # optional, default the family's grid; 0 is dropped (below)
    # or: severities = [1, 2, 3, 4, 5]  # for a family with MNIST-C's 5-level severity table:
    #                                # each level is the family's magnitude at that level
    draws = 3                        # optional: repeated random draws per magnitude; default
                                     # 3 for random families, 1 otherwise (which must stay 1)
    label = "rotate"                 # optional, default the family name; unique; [A-Za-z0-9_.-]
    n = 300                          # optional: run on a class-stratified subset of the digits
    # any other key is a family option, e.g. method = "flow", target = "nearest"

    [mnist_c]                        # optional: the model that MNIST-C's corruption errors are
    reference = "article-seed0"      # normalised by (CE, mCE); default the article CNN of seed
                                     # 0, else the first model (analysis only: not hashed)

    # Optional, top level: where cells are computed (the command line's --executor, --workers
    # and --scheduler override them; they do not change the results, nor the spec hash).
    executor = "dask"                # "serial" (default), "process" or "dask"
    workers = 2                      # for process, or a local Dask cluster
    scheduler = "tcp://host:8786"    # for dask: a running scheduler (default: a local cluster)

Magnitude 0 is the identity for every family, so it is not computed per family: the runner
predicts every clean digit once per model (rows of family ``"clean"``, magnitude 0), which
stands for magnitude 0 of every sweep. A 0 in a grid is accepted and dropped (except for a
composition with a ``fixed`` step, whose magnitude 0 is not the identity: there it is kept).

Every mistake is found by :func:`load_study` before any work starts and reported as a
one-line :class:`StudyError` (a ValueError) naming the file, the key and the allowed values.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from . import perturbations, severities
from .errors import StudyError
from .rundir import CLEAN
from .study_models import ModelSpec, parse_models

#: Data sources a study can draw its digits from.
DATA_SOURCES = ("mnist-test", "folder")
#: Number of digits in the MNIST test set.
MNIST_TEST_SIZE = 10_000
#: Labels become file names in the run directory, so they are kept to safe characters.
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Default draws for random families (deterministic families always have 1).
DEFAULT_RANDOM_DRAWS = 3

_TOP_KEYS = (
    "name", "seed", "description", "models", "data", "perturbations", "executor", "workers", "scheduler", "mnist_c",
)
_EXECUTORS = ("serial", "process", "dask")  # robust_mnist.runner.executors.EXECUTORS (a test checks)
_DATA_KEYS = {"mnist-test": ("source", "n"), "folder": ("source", "path", "labels")}
_SPEC_KEYS = ("family", "magnitudes", "severities", "draws", "label", "n", "refine")
#: The keys of the [mnist_c] table.
_MNIST_C_KEYS = ("reference",)
#: Keys of a perturbation's to_dict that label its grid for the reports, outside the hash.
_ANALYSIS_KEYS = ("severities", "mnist_c")
#: Most bisection steps a sweep may ask for (2**-20 of a grid interval is far below any use).
MAX_REFINE = 20



@dataclass(frozen=True)
class DataSpec:
    """Where the study's digits come from.

    Attributes
    ----------
    source : {"mnist-test", "folder"}
    n : int or None
        For "mnist-test": a class-stratified subset of ``n`` test digits (None: all).
    path : pathlib.Path or None
        For "folder": the folder of images, resolved against the study file's folder.
    labels : pathlib.Path or None
        For "folder": an optional CSV with columns ``file,label``.
    as_written : mapping
        The table as the study file spells it (what the spec hash sees).
    """

    source: str = "mnist-test"
    n: int | None = None
    path: Path | None = None
    labels: Path | None = None
    as_written: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"source": "mnist-test"}))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.as_written)


@dataclass(frozen=True)
class PerturbationSpec:
    """One perturbation sweep: a family with its options over a grid of magnitudes.

    Attributes
    ----------
    label : str
        Unique within the study; the ``family`` column of the results.
    family : str
        The registered family name.
    magnitudes : tuple of float
        Ascending, distinct, non-zero (the clean rows stand for 0), inside the family's range.
    draws : int
        Independent random draws per magnitude (1 for deterministic families).
    options : mapping
        Family options passed to ``perturbations.get(family, **options)``.
    n : int or None
        Run on a class-stratified subset of this many of the study's digits (None: all).
    refine : int
        Bisection steps that refine each digit's critical magnitude between the grid points
        around it, with the model, once the grid is done (0: the grid value; deterministic
        families only; see :func:`robust_mnist.runner.refine.refine_sweep`).
    severities : tuple of int
        The MNIST-C severity level of each magnitude when the study gave ``severities``.
    mnist_c : str or None
        MNIST-C's name of a family of its published set (:mod:`robust_mnist.severities`): the
        spec counts in the benchmark's scores (:mod:`robust_mnist.benchmark_metrics`).
    """

    label: str
    family: str
    magnitudes: tuple[float, ...]
    draws: int = 1
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    n: int | None = None
    refine: int = 0
    severities: tuple[int, ...] = ()
    mnist_c: str | None = None

    def make(self) -> perturbations.Perturbation:
        """A fresh instance of the family configured with this spec's options."""
        return perturbations.get(self.family, **_plain(self.options))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "family": self.family,
            "magnitudes": list(self.magnitudes),
            "draws": self.draws,
            "n": self.n,
            "options": _plain(self.options),
            # Only when asked for, so that the studies of earlier versions keep their hash.
            **({"refine": self.refine} if self.refine else {}),
            # How the grid reads, for the reports (not hashed: see StudySpec.spec_hash).
            **({"severities": list(self.severities)} if self.severities else {}),
            **({"mnist_c": self.mnist_c} if self.mnist_c else {}),
        }


@dataclass(frozen=True)
class StudySpec:
    """A validated study. Build it with :func:`load_study` (or :func:`parse_study`).

    Attributes
    ----------
    name : str
    seed : int
    models : tuple of ModelSpec
    data : DataSpec
    perturbations : tuple of PerturbationSpec
    description : str
    file : pathlib.Path or None
        The study file it was read from.
    """

    name: str
    seed: int
    models: tuple[ModelSpec, ...]
    data: DataSpec
    perturbations: tuple[PerturbationSpec, ...]
    description: str = ""
    file: Path | None = None
    #: executor, workers, scheduler as the file gives them: how to run, not what (not hashed).
    execution: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The model MNIST-C's errors are normalised by (``[mnist_c] reference``); not hashed.
    mnist_c_reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The study as loaded (defaults filled in, grids normalised), JSON-serialisable."""
        return {
            "name": self.name,
            "seed": self.seed,
            "description": self.description,
            "models": [model.to_dict() for model in self.models],
            "data": self.data.to_dict(),
            "perturbations": [spec.to_dict() for spec in self.perturbations],
            **({"mnist_c": {"reference": self.mnist_c_reference}} if self.mnist_c_reference else {}),
        }

    def spec_hash(self) -> str:
        """SHA-256 of :meth:`to_dict` as canonical JSON, without what only the analysis reads.

        It identifies what a run computes: two files that differ only in comments, key order
        or spelled-out defaults hash alike, so a run can be resumed with either. The MNIST-C
        reference and the severity labels of a grid change no number of the run: left out.
        """
        content = {key: value for key, value in self.to_dict().items() if key != "mnist_c"}
        content["perturbations"] = [{k: v for k, v in p.items() if k not in _ANALYSIS_KEYS} for p in content["perturbations"]]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def perturbation(self, label: str) -> PerturbationSpec:
        for spec in self.perturbations:
            if spec.label == label:
                return spec
        raise KeyError(label)


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file.

    Parameters
    ----------
    path : path-like
        A TOML study file (schema in this module's docstring).

    Returns
    -------
    StudySpec

    Raises
    ------
    StudyError
        A one-line message naming the file, the key and the allowed values, for a syntax
        error, an unknown key or family, a wrong type, a magnitude out of range, a missing
        file or a duplicate label.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudyError(f"{path}: cannot read study file ({error})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{path}: TOML syntax error: {error}") from None
    return parse_study(document, path)


def parse_study(document: Mapping[str, Any], file: str | Path | None = None) -> StudySpec:
    """Validate a study given as a dict (the parsed TOML).

    Parameters
    ----------
    document : mapping
        The study's tables and keys, as :func:`tomllib.loads` returns them.
    file : path-like, optional
        The study file: relative paths are resolved against its folder, and errors name it.
    """
    file = None if file is None else Path(file)
    where = str(file) if file is not None else "<study>"
    base = file.parent if file is not None else Path.cwd()
    check = _Checker(where)

    check.keys(document, _TOP_KEYS, "")
    name = check.typed(document, "name", str, "", required=True)
    if not name.strip():
        check.fail("name", "must not be empty")
    seed = check.typed(document, "seed", int, "", default=0)
    if seed < 0:
        check.fail("seed", f"must be a non-negative integer; got {seed}")
    description = check.typed(document, "description", str, "", default="")

    models = parse_models(check, document.get("models"), base)
    data = _parse_data(check, document.get("data", {"source": "mnist-test"}), base)
    specs = _parse_perturbations(check, document.get("perturbations"), data)
    reference = _parse_mnist_c(check, document.get("mnist_c"), models, specs)
    execution = {}
    executor = check.typed(document, "executor", str, "")
    if executor is not None and executor not in _EXECUTORS:
        check.fail("executor", f"unknown executor {executor!r}; allowed: {', '.join(_EXECUTORS)}")
    workers = check.typed(document, "workers", int, "")
    if workers is not None and workers < 1:
        check.fail("workers", f"must be a positive integer; got {workers}")
    scheduler = check.typed(document, "scheduler", str, "")
    for key, value in (("executor", executor), ("workers", workers), ("scheduler", scheduler)):
        if value is not None:
            execution[key] = value
    return StudySpec(
        name=name,
        seed=seed,
        models=models,
        data=data,
        perturbations=specs,
        description=description,
        file=file,
        execution=MappingProxyType(execution),
        mnist_c_reference=reference,
    )


# --------------------------------------------------------------------------- sections


def _parse_data(check: "_Checker", table: Any, base: Path) -> DataSpec:
    if not isinstance(table, dict):
        check.fail("data", f"must be a table; got {type(table).__name__}")
    source = check.typed(table, "source", str, "data", default="mnist-test")
    if source not in DATA_SOURCES:
        check.fail("data.source", f"unknown source {source!r}; allowed: {', '.join(DATA_SOURCES)}")
    check.keys(table, _DATA_KEYS[source], "data", context=f"(source {source!r})")
    as_written = MappingProxyType({"source": source, **{k: v for k, v in table.items() if k != "source"}})
    if source == "mnist-test":
        n = check.typed(table, "n", int, "data", default=None)
        if n is not None and not 1 <= n <= MNIST_TEST_SIZE:
            check.fail("data.n", f"must be between 1 and {MNIST_TEST_SIZE}; got {n}")
        return DataSpec(source=source, n=n, as_written=as_written)
    written = check.typed(table, "path", str, "data", required=True)
    folder = (base / written).resolve()
    if not folder.is_dir():
        check.fail("data.path", f"folder not found: {folder}")
    labels_written = check.typed(table, "labels", str, "data", default=None)
    labels = None
    if labels_written is not None:
        labels = (base / labels_written).resolve()
        if not labels.is_file():
            check.fail("data.labels", f"labels file not found: {labels}")
    return DataSpec(source=source, path=folder, labels=labels, as_written=as_written)


def _parse_perturbations(
    check: "_Checker", entries: Any, data: DataSpec
) -> tuple[PerturbationSpec, ...]:
    entries = check.table_list(entries, "perturbations")
    known = perturbations.available()
    data_size = MNIST_TEST_SIZE if data.source == "mnist-test" else None
    if data.n is not None:
        data_size = data.n
    result: list[PerturbationSpec] = []
    for index, entry in enumerate(entries):
        where = f"perturbations[{index}]"
        family_name = check.typed(entry, "family", str, where, required=True)
        if family_name not in known:
            check.fail(f"{where}.family", f"unknown family {family_name!r}; known: {', '.join(known)}")
        cls = perturbations.family(family_name)
        option_names = _option_names(cls)
        if option_names is not None:
            check.keys(entry, _SPEC_KEYS + option_names, where, context=f"(family {family_name!r})")
        options = {k: v for k, v in entry.items() if k not in _SPEC_KEYS}
        try:
            instance = cls(**options)
        except (TypeError, ValueError) as error:
            check.fail(where, f"bad options for family {family_name!r}: {_one_line(error)}")

        label = check.typed(entry, "label", str, where, default=family_name)
        if not LABEL_PATTERN.fullmatch(label) or label == CLEAN:
            check.fail(
                f"{where}.label",
                f"{label!r} is not allowed: use letters, digits, '_', '.', '-' (not starting "
                f"with a symbol), and not {CLEAN!r}",
            )

        level_of: dict[float, int] = {}
        if "severities" in entry:
            if "magnitudes" in entry:
                check.fail(where, "give magnitudes or severities, not both")
            try:
                level_of = severities.severity_grid(family_name, entry["severities"])
            except ValueError as error:
                check.fail(f"{where}.severities", str(error))
            raw = list(level_of)
        elif "magnitudes" in entry:
            raw = entry["magnitudes"]
            if not isinstance(raw, list) or not raw or not all(_is_number(m) for m in raw):
                check.fail(f"{where}.magnitudes", f"must be a non-empty list of numbers; got {raw!r}")
        else:
            raw = list(instance.default_magnitudes)
        grid = [float(m) for m in raw]
        if len(set(grid)) != len(grid):
            check.fail(f"{where}.magnitudes", f"has duplicates: {raw}")
        # Instances, not classes: a composition narrows its range and randomness to its steps.
        low, high = instance.magnitude_range
        for magnitude in grid:
            try:
                instance.check_magnitude(magnitude)
            except ValueError:
                check.fail(
                    f"{where}.magnitudes",
                    f"{magnitude:g} is outside {family_name}'s range [{low:g}, {high:g}] {instance.unit}",
                )
        if zero_is_identity(instance):
            grid = [m for m in grid if m != 0.0]
        magnitudes = tuple(sorted(grid))
        if not magnitudes:
            check.fail(
                f"{where}.magnitudes",
                "has only 0, which the clean rows already cover; give non-zero magnitudes",
            )

        default_draws = DEFAULT_RANDOM_DRAWS if instance.random else 1
        draws = check.typed(entry, "draws", int, where, default=default_draws)
        if draws < 1:
            check.fail(f"{where}.draws", f"must be a positive integer; got {draws}")
        if draws > 1 and not instance.random:
            check.fail(f"{where}.draws", f"must be 1: family {family_name!r} is deterministic; got {draws}")

        n = check.typed(entry, "n", int, where, default=None)
        if n is not None and n < 1:
            check.fail(f"{where}.n", f"must be a positive integer; got {n}")
        if n is not None and data_size is not None and n > data_size:
            check.fail(f"{where}.n", f"{n} exceeds the study's {data_size} digits")

        refine = check.typed(entry, "refine", int, where, default=0)
        if not 0 <= refine <= MAX_REFINE:
            check.fail(f"{where}.refine", f"must be a number of bisection steps from 0 to {MAX_REFINE}; got {refine}")
        if refine and instance.random:
            check.fail(
                f"{where}.refine",
                f"family {family_name!r} is random: its flip point changes with every draw, so only "
                "deterministic families can be refined",
            )

        result.append(
            PerturbationSpec(
                label=label,
                family=family_name,
                magnitudes=magnitudes,
                draws=draws,
                options=MappingProxyType(_freeze(options)),
                n=n,
                refine=refine,
                severities=tuple(level_of[m] for m in magnitudes) if level_of else (),
                mnist_c=severities.mnist_c_name(family_name),
            )
        )
    labels = [spec.label for spec in result]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        check.fail(
            "perturbations",
            f"duplicate labels {duplicates}: give each entry of the same family a distinct label",
        )
    return tuple(result)


def _parse_mnist_c(
    check: "_Checker", table: Any, models: tuple[ModelSpec, ...], specs: tuple[PerturbationSpec, ...]
) -> str | None:
    """The ``[mnist_c]`` table: the reference model of the corruption errors, or None."""
    if table is None:
        return None
    if not isinstance(table, dict):
        check.fail("mnist_c", f"must be a table ([mnist_c]); got {type(table).__name__}")
    check.keys(table, _MNIST_C_KEYS, "mnist_c")
    reference = check.typed(table, "reference", str, "mnist_c", default=None)
    if reference is not None:
        try:
            severities.check_reference(reference, [m.name for m in models], [s.family for s in specs])
        except ValueError as error:
            check.fail("mnist_c.reference", str(error))
    return reference


# --------------------------------------------------------------------------- helpers


class _Checker:
    """Raises one-line StudyErrors that name the file and the key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, problem: str):
        prefix = f"{self.where}: {key}: " if key else f"{self.where}: "
        raise StudyError(prefix + problem)

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str, context: str = "") -> None:
        for key in table:
            if key not in allowed:
                guess = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {guess[0]!r}? " if guess else ""
                label = f"{where}.{key}" if where else key
                self.fail(
                    label,
                    f"unknown key{' ' + context if context else ''}; {hint}allowed: {', '.join(allowed)}",
                )

    def typed(self, table: Mapping[str, Any], key: str, kind: type, where: str, *, default: Any = None, required: bool = False) -> Any:
        label = f"{where}.{key}" if where else key
        if key not in table:
            if required:
                self.fail(label, "is required")
            return default
        value = table[key]
        ok = _is_int(value) if kind is int else isinstance(value, kind)
        if not ok:
            self.fail(label, f"must be {_KIND_NAMES[kind]}; got {value!r} ({type(value).__name__})")
        return value

    def table_list(self, entries: Any, key: str) -> list[dict]:
        if entries is None:
            self.fail(key, f"is required: add at least one [[{key}]] table")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.fail(key, f"must be a list of tables ([[{key}]]); got {type(entries).__name__}")
        if not entries:
            self.fail(key, f"must have at least one [[{key}]] table")
        return entries


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _option_names(cls: type) -> tuple[str, ...] | None:
    """Keyword options a family's constructor accepts; None if it takes ``**options``."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters) and cls.__init__ is not perturbations.Perturbation.__init__:
        return None
    return tuple(
        p.name
        for p in parameters
        if p.name != "self" and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _freeze(value: Any) -> Any:
    """Deep copy of TOML values with lists as tuples, so a spec cannot be mutated later."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """The JSON form of frozen values."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def zero_is_identity(perturbation: perturbations.Perturbation) -> bool:
    """Whether magnitude 0 leaves digits unchanged, so the clean rows can stand for it.

    The contract makes 0 the identity of every family; the one exception is a composition
    with a ``fixed`` step (that step runs whatever the magnitude), whose 0 is computed.
    """
    return not any(step[2] for step in getattr(perturbation, "steps", ()) if len(step) == 3)
