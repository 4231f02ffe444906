"""The ``[[models]]`` section of a study file: which models a study runs, validated into ModelSpecs.

An entry names a registered architecture with a seed (``arch``, ``seed`` or ``seeds``), found by
:func:`robust_mnist.models.ensure_model` (the user's retrained copy, else the model bundled with
the package, else trained once and cached), or a model file (``path``: ``.keras``, or ``.onnx``
with its input contract). ``retrain = true`` on an architecture trains it again, into the
user's model cache, each time the study starts (not when it resumes): it rebuilds a model, it
does not change what the study computes, so it is not part of the spec hash. The rest of the
study file is :mod:`robust_mnist.study`, whose checker (``check``) reports the errors here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import models
from .errors import InvalidArgumentError
from .onnx_model import ModelContract

MODEL_KEYS = ("arch", "seed", "seeds", "path", "name", "input_layout", "input_scale", "output", "retrain")
#: The keys of an ONNX model's input contract (robust_mnist.onnx_model.ModelContract).
CONTRACT_KEYS = ("input_layout", "input_scale", "output")
#: Model files a study can name, by suffix.
MODEL_SUFFIXES = (".keras", ".onnx")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a study: a registered architecture and seed, or a ``.keras`` or ``.onnx`` file.

    Attributes
    ----------
    name : str
        Unique within the study; the ``model`` column of the results.
    arch : str or None
    seed : int or None
        Set together, for an architecture's model (:func:`robust_mnist.models.ensure_model`).
    path : pathlib.Path or None
        A ``.keras`` or ``.onnx`` file, resolved against the study file's folder.
    path_as_written : str or None
        The path as the study file spells it (what the spec hash sees).
    contract : robust_mnist.onnx_model.ModelContract
        For an ``.onnx`` file: its input layout, input scale and output as declared (what is
        not declared is detected when the model is loaded). Part of what the model computes,
        so part of the spec hash.
    retrain : bool
        For an architecture: train it again (into the user's model cache) when the study
        starts. Not part of the spec hash: it rebuilds the model, the study stays the same.
    """

    name: str
    arch: str | None = None
    seed: int | None = None
    path: Path | None = None
    path_as_written: str | None = None
    contract: ModelContract = field(default_factory=ModelContract)
    retrain: bool = False

    def to_dict(self) -> dict[str, Any]:
        if self.path is not None:
            # Declared keys only, so that the studies of earlier versions keep their hash.
            return {"name": self.name, "path": self.path_as_written, **self.contract.to_dict()}
        return {"name": self.name, "arch": self.arch, "seed": self.seed}


def parse_models(check: Any, entries: Any, base: Path) -> tuple[ModelSpec, ...]:
    """The ``[[models]]`` tables as ModelSpecs; ``check`` (robust_mnist.study's checker) raises
    a one-line StudyError naming the file and the key for any mistake."""
    entries = check.table_list(entries, "models")
    known_archs = models.architectures()
    result: list[ModelSpec] = []
    for index, entry in enumerate(entries):
        where = f"models[{index}]"
        check.keys(entry, MODEL_KEYS, where)
        explicit_name = check.typed(entry, "name", str, where, default=None)
        if explicit_name is not None and not explicit_name.strip():
            check.fail(f"{where}.name", "must not be empty")
        if ("path" in entry) == ("arch" in entry):
            check.fail(where, "give either arch (with seed or seeds) or path to a .keras or .onnx file")
        written = check.typed(entry, "path", str, where) if "path" in entry else None
        model_file = None if written is None else (base / written).resolve()
        for key in CONTRACT_KEYS:
            if key in entry and (model_file is None or model_file.suffix != ".onnx"):
                check.fail(f"{where}.{key}", "applies to ONNX model files only (path = \"....onnx\")")
        if model_file is not None:
            for key in ("seed", "seeds", "retrain"):
                if key in entry:
                    check.fail(f"{where}.{key}", "applies to arch models only, not to a model path")
            if model_file.suffix not in MODEL_SUFFIXES:
                check.fail(f"{where}.path", f"must be a {' or '.join(MODEL_SUFFIXES)} file; got {written!r}")
            if not model_file.is_file():
                check.fail(f"{where}.path", f"model file not found: {model_file}")
            try:
                contract = ModelContract.from_dict({key: entry[key] for key in CONTRACT_KEYS if key in entry})
            except InvalidArgumentError as error:
                check.fail(where, str(error))
            name = explicit_name or model_file.stem
            result.append(ModelSpec(name=name, path=model_file, path_as_written=written, contract=contract))
            continue
        arch = check.typed(entry, "arch", str, where, required=True)
        if arch not in known_archs:
            check.fail(f"{where}.arch", f"unknown architecture {arch!r}; known: {', '.join(known_archs)}")
        retrain = check.typed(entry, "retrain", bool, where, default=False)
        if "seed" in entry and "seeds" in entry:
            check.fail(where, "give seed or seeds, not both")
        if "seeds" in entry:
            seeds = entry["seeds"]
            if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
                check.fail(f"{where}.seeds", f"must be a non-empty list of non-negative integers; got {seeds!r}")
            if len(set(seeds)) != len(seeds):
                check.fail(f"{where}.seeds", f"has duplicates: {seeds}")
        else:
            seed = check.typed(entry, "seed", int, where, default=0)
            if seed < 0:
                check.fail(f"{where}.seed", f"must be a non-negative integer; got {seed}")
            seeds = [seed]
        for seed in seeds:
            if explicit_name and len(seeds) == 1:
                name = explicit_name
            else:
                name = f"{explicit_name or arch}-seed{seed}"
            result.append(ModelSpec(name=name, arch=arch, seed=int(seed), retrain=retrain))
    names = [model.name for model in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        check.fail("models", f"duplicate model names {duplicates}; give each a distinct name")
    return tuple(result)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
