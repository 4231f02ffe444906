"""Refining critical magnitudes by bisection with the model, between the grid points of a sweep.

The only part of the tool that calls a model besides the cells: for the sweeps a study marks
``refine = k``, each digit's flip point is bisected ``k`` times between the last grid point
where its prediction held and the first where it changed. The runner refines each sweep as soon
as its cells are on disk (:func:`refine_from_cells`), while the others are computed. The result
goes to refined.parquet, which :func:`robust_mnist.digit_metrics.critical_magnitudes` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import rundir
from ..digit_metrics import critical_magnitudes
from ..classifier import Classifier
from ..data import to_float
from ..rundir import CLEAN, Digits
from ..study import PerturbationSpec
from .cells import predict


def refine_from_cells(
    run_dir: Path, run_info: dict[str, Any], sweep: PerturbationSpec, digits: Digits,
    classifiers: dict[str, Classifier],
) -> list[pd.DataFrame]:
    """:func:`refine_sweep` on the sweep's cells as they are on disk (with the clean cell),
    so that a sweep is refined as soon as its cells are computed, while others still run."""
    results = rundir.read_cells(run_dir, run_info, [CLEAN, sweep.label])
    return refine_sweep(sweep, results, digits, classifiers)


def write_refined(run_dir: Path, parts: list[list[pd.DataFrame]]) -> None:
    """refined.parquet: the tables of :func:`refine_sweep`, sweep after sweep in study order."""
    rundir.write_frame_atomically(_refined_frame(parts), Path(run_dir) / rundir.REFINED_FILE)


def refine_sweep(
    sweep: PerturbationSpec, results: pd.DataFrame, digits: Digits, classifiers: dict[str, Classifier]
) -> list[pd.DataFrame]:
    """A sweep's critical magnitudes refined by bisection (its ``refine`` steps).

    For each model and each digit that flips on the grid of a sweep with ``refine = k``, the
    change happens between ``low``, the grid point next to the critical one towards 0 (the
    prediction there is still the clean one; 0 for the first grid point), and ``high``, the
    critical grid point. ``k`` times, the digit is perturbed at the middle and the model asked
    again: the middle becomes ``high`` if the prediction differs from the clean one, ``low``
    otherwise. The critical magnitude is then known to ``|high - low| / 2**k``. All the
    digits of the sweep are bisected together, one batch per step. Only deterministic families
    can be refined (the study file checks it): a random family draws new parameters at every
    magnitude, so its flip point is not a property of the digit.

    Parameters
    ----------
    sweep : PerturbationSpec
    results : DataFrame
        The run's results (:func:`robust_mnist.rundir.load_results`) with at least the
        sweep's rows and the clean ones.
    digits : Digits
        The run's digits (:func:`robust_mnist.rundir.load_digits`).
    classifiers : dict of str to Classifier
        The run's models by name.

    Returns
    -------
    list of DataFrame
        One per model, a row per digit that flips: ``model, family, image, low, high``
        (signed magnitudes; ``high`` is the refined critical magnitude), for the ``refined``
        argument of :func:`robust_mnist.digit_metrics.critical_magnitudes`.
    """
    perturbation = sweep.make()
    rows = results.loc[results["family"].isin([sweep.label, CLEAN])]
    grid = critical_magnitudes(rows)
    grid = grid.loc[grid["family"] == sweep.label].dropna(subset=["signed_magnitude"])
    parts = []
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
    return parts


def _refined_frame(parts: list[list[pd.DataFrame]]) -> pd.DataFrame:
    tables = [table for sweep_parts in parts for table in sweep_parts]
    columns = {"model": "object", "family": "object", "image": "int64", "low": "float64", "high": "float64"}
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(columns)).astype(columns)


def _bisect(perturbation, clean, labels, clean_pred, low, high, classifier, steps):
    """Batched bisection of :func:`refine_sweep`: ``(low, high)`` after ``steps`` halvings."""
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
        flipped = predict(classifier, perturbed, "refinement").argmax(axis=1) != clean_pred
        high = np.where(flipped, middle, high)
        low = np.where(flipped, low, middle)
    return low, high
