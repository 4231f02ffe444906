"""Calibration of predictions: the expected calibration error, with bootstrap intervals.

:func:`expected_calibration_error` of a set of predictions (Guo et al. 2017) and
:func:`grouped_calibration_error` of each group of them (a run's cells: model, family and
magnitude), whose interval resamples images with all their draws (:mod:`robust_mnist.stats`).
:func:`robust_mnist.metrics.per_magnitude` reports it beside the other per-magnitude curves.
Pure functions of arrays and tables: no file, no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .stats import bootstrap_sums, percentile_interval

#: Equal-width confidence bins of the expected calibration error (Guo et al. 2017).
ECE_BINS = 15


def _confidence_bin(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin ``m`` (0-based) holds confidences in ``(m / bins, (m + 1) / bins]``; 0 goes to bin 0."""
    return np.clip(np.ceil(np.asarray(confidence, dtype=np.float64) * bins).astype(np.int64) - 1, 0, bins - 1)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)| = sum_m |sum_{i in B_m} (correct_i -
    confidence_i)| / N``, where bin ``B_m`` holds the predictions with confidence in
    ``((m - 1) / bins, m / bins]``, ``acc`` is the fraction correct and ``conf`` the mean
    confidence in the bin. 0 for a perfectly calibrated model, at most 1.

    Parameters
    ----------
    confidence : (N,) array_like of float in [0, 1]
        The predicted class's probability (``p_pred``).
    correct : (N,) array_like of bool
    bins : int

    Returns
    -------
    float
        NaN for no predictions.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(
            f"confidence and correct must be aligned 1-D arrays; got {confidence.shape}, {correct.shape}"
        )
    if len(confidence) == 0:
        return float("nan")
    gap = np.bincount(_confidence_bin(confidence, bins), weights=correct - confidence, minlength=bins)
    return float(np.abs(gap).sum() / len(confidence))


def grouped_calibration_error(
    rows: pd.DataFrame,
    by: Sequence[str],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    bins: int = ECE_BINS,
    grouped: pd.api.typing.DataFrameGroupBy | None = None,
) -> pd.DataFrame:
    """:func:`expected_calibration_error` per group of predictions, with a bootstrap over images.

    Each image contributes, per bin, its count of predictions ``C``, of correct ones ``A`` and
    its summed confidence ``S``; a resample with counts ``W`` (see
    :func:`robust_mnist.stats.bootstrap_sums`) has ``ECE = sum_m |(W A)_m - (W S)_m| /
    sum_m (W C)_m``, so all draws of a resampled image come along.

    Parameters
    ----------
    rows : DataFrame
        One row per prediction: the ``by`` columns, ``image``, ``accuracy`` (1 if correct,
        else 0) and ``confidence`` (the predicted class's probability).
    by : sequence of str
        The grouping columns (model, family, magnitude: one cell of a run).
    n_boot, level, seed
        Bootstrap over images (:mod:`robust_mnist.stats`).
    bins : int
    grouped : DataFrameGroupBy, optional
        ``rows.groupby([*by, "image"], sort=True)`` if the caller has it (its group codes
        take most of a second on a million rows).

    Returns
    -------
    DataFrame
        One row per group, sorted: the ``by`` columns, ``ece``, ``ece_low``, ``ece_high``.
    """
    by = list(by)
    if grouped is None:
        grouped = rows.groupby(by + ["image"], sort=True)
    digit = grouped.ngroup().to_numpy()
    digits = grouped.size().reset_index()[by + ["image"]]
    # Per (image, bin) pair that occurs: its predictions, and its summed correct minus summed
    # confidence. (A full images x bins table of a whole run is over 100 MB.)
    pairs, pair = np.unique(digit * bins + _confidence_bin(rows["confidence"].to_numpy(), bins), return_inverse=True)
    count = np.bincount(pair)
    gap = np.bincount(pair, weights=rows["accuracy"].to_numpy())
    gap -= np.bincount(pair, weights=rows["confidence"].to_numpy())
    pair_digit, pair_bin = np.divmod(pairs, bins)
    cells = list(digits.groupby(by, sort=True).indices.items())
    # Cells with the same number of images share their resamples: one bootstrap_sums call
    # per size, with every such cell's bins side by side.
    by_size: dict[int, list[int]] = {}
    for position, (_, members) in enumerate(cells):
        by_size.setdefault(len(members), []).append(position)
    bounds = np.full((len(cells), 3), np.nan)
    for n, positions in by_size.items():
        # Per cell, the gaps of only the bins it uses (a handful near 1 at small magnitudes),
        # then its images' prediction counts in one column rather than one per bin: counts are
        # whole numbers, so their resampled sums are exact either way, and the matrix product
        # that dominates the cost has half the columns.
        blocks = []
        for c in positions:
            # digits is sorted by cell: a cell's images are consecutive, and so are their pairs.
            first = cells[c][1][0]
            start, stop = np.searchsorted(pair_digit, [first, first + n])
            image = pair_digit[start:stop] - first
            used, column = np.unique(pair_bin[start:stop], return_inverse=True)
            block = np.zeros((n, len(used) + 1))
            block[image, column] = gap[start:stop]
            block[:, -1] = np.bincount(image, weights=count[start:stop], minlength=n)
            blocks.append(block)
        sums = bootstrap_sums(np.hstack(blocks), n_boot, seed)
        start = 0
        for c, block in zip(positions, blocks):
            k = block.shape[1] - 1
            estimate = np.abs(block[:, :k].sum(axis=0)).sum() / block[:, k].sum()
            replicates = np.abs(sums[:, start:start + k]).sum(axis=1) / sums[:, start + k]
            bounds[c] = (estimate, *percentile_interval(replicates, level))
            start += k + 1
    records = [(*key, *bounds[c]) for c, (key, _) in enumerate(cells)]
    return pd.DataFrame(records, columns=by + ["ece", "ece_low", "ece_high"])
