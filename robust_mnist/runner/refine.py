"""Refining critical magnitudes by bisection with the model, between the grid points of a sweep.

The only part of the tool that calls a model after the cells are computed: for the sweeps a
study marks ``refine = k``, each digit's flip point is bisected ``k`` times between the last
grid point where its prediction held and the first where it changed. The result goes to
refined.parquet, which :func:`robust_mnist.digit_metrics.critical_magnitudes` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import rundir
from ..digit_metrics import critical_magnitudes
from ..classifier import Classifier
from ..data import to_float
from ..rundir import CLEAN, Digits
from ..study import StudySpec
from .cells import predict


def write_refined(run_dir: Path, spec: StudySpec, digits: Digits, classifiers: dict[str, Classifier]) -> None:
    """Refine the sweeps that ask for it from the run's results; write refined.parquet."""
    labels = [sweep.label for sweep in spec.perturbations if sweep.refine]
    # Only the refined sweeps and the clean rows: the whole table can be large.
    results = rundir.read_results_file(run_dir, families=[CLEAN, *labels])
    table = refine_critical(results, spec, digits, classifiers)
    rundir.write_frame_atomically(table, Path(run_dir) / rundir.REFINED_FILE)


def refine_critical(
    results: pd.DataFrame,
    spec: StudySpec,
    digits: Digits,
    classifiers: dict[str, Classifier],
) -> pd.DataFrame:
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
        The run's results table (:func:`robust_mnist.rundir.load_results`), clean rows included.
    spec : StudySpec
    digits : Digits
        The run's digits (:func:`robust_mnist.rundir.load_digits`).
    classifiers : dict of str to Classifier
        The run's models by name.

    Returns
    -------
    DataFrame
        One row per (model, family, image) that flips: ``model, family, image, low, high``
        (signed magnitudes; ``high`` is the refined critical magnitude), for the ``refined``
        argument of :func:`robust_mnist.digit_metrics.critical_magnitudes`.
    """
    parts = []
    for sweep in spec.perturbations:
        if not sweep.refine:
            continue
        perturbation = sweep.make()
        rows = results.loc[results["family"].isin([sweep.label, CLEAN])]
        grid = critical_magnitudes(rows)
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
        flipped = predict(classifier, perturbed, "refinement").argmax(axis=1) != clean_pred
        high = np.where(flipped, middle, high)
        low = np.where(flipped, low, middle)
    return low, high
