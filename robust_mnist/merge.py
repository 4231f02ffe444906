"""Merging the runs of one study for a comparison: same digits, same perturbations, unique models.

:func:`merge_runs` reads one or several complete run directories through
:mod:`robust_mnist.rundir` (never a model or the perturbation code), refuses runs that hold
other digits or other perturbations (:class:`robust_mnist.errors.ComparisonError`, one line
naming the runs), gives every model a unique name, and merges the results tables, the gallery
digits of exemplars.npz and the refined critical magnitudes. :func:`robust_mnist.compare.compare_runs`
builds its :class:`robust_mnist.compare.Comparison` from the result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ComparisonError
from .rundir import CLEAN, digits_checksum, load_digits, load_exemplars, load_refined, load_results, read_run_info

#: The columns that identify a trial (one perturbed digit) in the results table.
TRIAL_KEYS = ["family", "magnitude", "image", "draw"]


@dataclass
class MergedRuns:
    """The runs of one study, merged (see :func:`merge_runs`; the fields are described by
    :class:`robust_mnist.compare.Comparison`, which adds the statistics)."""

    run_dirs: list[Path]
    runs: list[dict[str, Any]]
    models: list[str]
    model_info: dict[str, dict[str, Any]]
    families: dict[str, dict[str, Any]]
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    results: pd.DataFrame
    exemplars: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    #: Critical magnitudes refined by bisection, of the families every run refined alike.
    refined: pd.DataFrame | None = None
    seed: int = 0


def merge_runs(run_dirs: Sequence[str | os.PathLike]) -> MergedRuns:
    """Read and merge the models of one or several complete runs of the same study.

    See :func:`robust_mnist.compare.compare_runs`, which calls it.

    Raises
    ------
    ComparisonError
        A one-line message naming the runs and what differs; also for a directory that is
        not a complete run.
    """
    if not run_dirs:
        raise ComparisonError("compare needs at least one run directory")
    paths = [Path(d) for d in run_dirs]
    duplicates = sorted({str(p) for p in paths if sum(q.resolve() == p.resolve() for q in paths) > 1})
    if duplicates:
        raise ComparisonError(f"run directory given twice: {', '.join(duplicates)}")
    runs, tables, digit_sets = [], [], []
    for path in paths:
        if not path.is_dir():
            raise ComparisonError(f"{path}: no such run directory")
        info = read_run_info(path)
        if info.get("status") != "complete":
            raise ComparisonError(
                f"{path}: the run is {info.get('status', 'unfinished')}, not complete; finish it "
                "with `robust-mnist study STUDY.toml --resume` before comparing"
            )
        runs.append(info)
        digit_sets.append(load_digits(path))
        tables.append(load_results(path))

    reference = digit_sets[0]
    reference_sum = digits_checksum(reference.images, reference.labels)
    for path, digits in zip(paths[1:], digit_sets[1:]):
        checksum = digits_checksum(digits.images, digits.labels)
        if checksum != reference_sum:
            raise ComparisonError(
                f"{paths[0]} and {path} hold different digits (digits.npz checksums "
                f"{reference_sum[:12]}... and {checksum[:12]}...): only runs of the same study "
                "on the same digits can be compared"
            )
    for path, info, table in zip(paths[1:], runs[1:], tables[1:]):
        problem = _perturbation_difference(runs[0], tables[0], info, table)
        if problem:
            raise ComparisonError(
                f"{paths[0]} and {path} used different perturbations ({problem}): only runs of the "
                "same study's perturbations can be compared"
            )

    models, model_info, notes, pieces, renames = _merge_models(paths, runs, tables)
    results = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
    if len(models) < 2:
        notes.append("Only one model: nothing to compare it with; the page shows it alone.")
    return MergedRuns(
        run_dirs=paths, runs=runs, models=models, model_info=model_info,
        families=dict(runs[0].get("families", {})),
        images=reference.images, labels=np.asarray(reference.labels, np.int64), ids=reference.ids,
        results=results, exemplars=_merge_exemplars(paths), notes=notes,
        refined=_merge_refined(paths, runs, renames, notes), seed=int(runs[0].get("seed", 0)),
    )


def _merge_refined(
    paths: list[Path], runs: list[dict[str, Any]], renames: list[dict[str, str]], notes: list[str]
) -> pd.DataFrame | None:
    """The runs' refined critical magnitudes, for the families that every run refined alike.

    A family refined in one run and not in another would set bisected values against grid
    values, which favours the refined models: those keep their grid values, with a note.
    """
    steps = [{spec["label"]: int(spec.get("refine") or 0) for spec in run.get("study", {}).get("perturbations", [])}
             for run in runs]
    alike = {label for label, k in steps[0].items() if k and all(other.get(label) == k for other in steps[1:])}
    unlike = sorted({label for run_steps in steps for label, k in run_steps.items() if k} - alike)
    if unlike:
        notes.append(f"Critical magnitudes of {', '.join(unlike)} are the grid values: the runs did "
                     "not all refine them with the same number of bisection steps.")
    if not alike:
        return None
    # Under the merged model names, without the models dropped as repeats (as the results).
    tables = []
    for path, names in zip(paths, renames):
        table = load_refined(path)
        if table is not None:
            table = table.loc[table["family"].isin(alike) & table["model"].isin(names)]
            tables.append(table.assign(model=table["model"].map(names)))
    return pd.concat(tables, ignore_index=True) if tables else None


def _perturbation_difference(
    first: dict[str, Any], first_table: pd.DataFrame, other: dict[str, Any], other_table: pd.DataFrame
) -> str | None:
    """What differs between two runs' perturbations, or None when they are identical."""
    specs = [
        {spec["label"]: spec for spec in run.get("study", {}).get("perturbations", [])}
        for run in (first, other)
    ]
    if list(specs[0]) != list(specs[1]):
        return f"perturbation labels {list(specs[0])} and {list(specs[1])}"
    for label in specs[0]:
        a, b = specs[0][label], specs[1][label]
        for key in ("family", "options", "magnitudes", "draws", "n"):
            if a.get(key) != b.get(key):
                return f"{label!r}: {key} {a.get(key)!r} and {b.get(key)!r}"
    # The realised parameters (and the digits each spec ran on) of one model per run: equal
    # parameters on equal digits mean identical perturbed images.
    keyed = []
    for table in (first_table, other_table):
        model = table["model"].iloc[0] if len(table) else None
        rows = table.loc[(table["model"] == model) & (table["family"] != CLEAN)]
        params = sorted(c for c in rows.columns if c.startswith("param_") and rows[c].notna().any())
        keyed.append((rows.sort_values(TRIAL_KEYS, kind="stable"), params))
    (rows_a, params_a), (rows_b, params_b) = keyed
    if params_a != params_b:
        return f"realised parameters {params_a} and {params_b}"
    keys_a, keys_b = rows_a[TRIAL_KEYS].to_numpy(), rows_b[TRIAL_KEYS].to_numpy()
    if keys_a.shape != keys_b.shape or not (keys_a == keys_b).all():
        return "the perturbed digits (family, magnitude, image, draw) differ"
    for column in params_a:
        x, y = rows_a[column].to_numpy(np.float64), rows_b[column].to_numpy(np.float64)
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        if not same.all():
            at = rows_a.iloc[int(np.flatnonzero(~same)[0])]
            return (
                f"{column} of {at['family']!r} at magnitude {at['magnitude']:g}, image {int(at['image'])}, "
                f"draw {int(at['draw'])}: {x[~same][0]:g} and {y[~same][0]:g}; another study seed?"
            )
    return None


def _merge_models(
    paths: list[Path], runs: list[dict[str, Any]], tables: list[pd.DataFrame]
) -> tuple[list[str], dict[str, dict[str, Any]], list[str], list[pd.DataFrame], list[dict[str, str]]]:
    """Unique model names across runs; the results of each run under those names.

    Returns the names, their run.json entries, notes, each run's results and each run's
    renaming (name in the run -> merged name; models dropped as repeats are absent).
    """
    notes: list[str] = []
    # First pass: drop repeats of a model file already seen (same checksum) in an earlier run.
    kept: list[list[str]] = []
    first_seen: dict[str, tuple[Path, str]] = {}
    for path, info in zip(paths, runs):
        names = []
        for name, model in info.get("models", {}).items():
            checksum = (model or {}).get("checksum")
            if checksum and checksum in first_seen:
                where, original = first_seen[checksum]
                notes.append(f"{path}: model {name!r} is the same file as {original!r} of {where} "
                             "(same checksum); its results are counted once.")
                continue
            if checksum:
                first_seen[checksum] = (path, name)
            names.append(name)
        kept.append(names)
    counts: dict[str, int] = {}
    for names in kept:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    models: list[str] = []
    model_info: dict[str, dict[str, Any]] = {}
    pieces: list[pd.DataFrame] = []
    all_renames: list[dict[str, str]] = []
    for path, info, table, names in zip(paths, runs, tables, kept):
        renames: dict[str, str] = {}
        for name in names:
            new = name if counts[name] == 1 else f"{path.name}/{name}"
            suffix = 2
            while new in model_info:  # two runs in folders of the same name
                new = f"{path.name}/{name}#{suffix}"
                suffix += 1
            if new != name:
                notes.append(f"{path}: model {name!r} is called {new!r} here (the name occurs in several runs).")
            renames[name] = new
            models.append(new)
            model_info[new] = {**(info["models"][name] or {}), "run": str(path), "name_in_run": name}
        part = table.loc[table["model"].isin(names)]
        if any(old != new for old, new in renames.items()):
            part = part.assign(model=part["model"].map(renames))
        pieces.append(part)
        all_renames.append(renames)
    return models, model_info, notes, pieces, all_renames


def _merge_exemplars(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Perturbed gallery digits of every run, by spec label and image (draw 0)."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        arrays = load_exemplars(path)
        for label in arrays.get("labels", []):
            label = str(label)
            if f"{label}/strips" not in arrays:
                continue
            entry = merged.setdefault(label, {"magnitudes": arrays[f"{label}/magnitudes"], "strips": {}})
            if not np.array_equal(entry["magnitudes"], arrays[f"{label}/magnitudes"]):
                continue
            strips = arrays[f"{label}/strips"]
            for k, image in enumerate(arrays[f"{label}/images"]):
                entry["strips"].setdefault(int(image), strips[k])
    return merged
