"""Percentile bootstrap confidence intervals over digits.

Every aggregate in robust_mnist carries a percentile bootstrap interval over digits (Efron and
Tibshirani 1993, ch. 13): resample the ``n`` digits with replacement ``n_boot`` times,
recompute the statistic on each resample, and take the ``(1 - level) / 2`` and
``(1 + level) / 2`` quantiles of the replicates. (The paired tests of two models, McNemar's
and Holm's, are in :mod:`robust_mnist.paired_stats`.)

Determinism: the resampled positions are ``np.random.default_rng(seed).integers(0, n,
size=(n_boot, n))``, drawn in blocks of rows from the same stream, so the result does not depend
on block size, and two calls with the same ``seed`` and the same ``n`` resample the same
positions. Groups of equal size in :func:`grouped_bootstrap_ci` and
:func:`grouped_correlation_ci` therefore share their resamples; when they list the same digits
in the same order (for example one model and family at several magnitudes), that is a paired
bootstrap across groups.

Missing values: ``NaN`` means "undefined for this digit" (a sequence with no step, a digit a
metric does not apply to) and is dropped before resampling. ``+inf`` is a value (the critical
magnitude of a digit that never flips) and is kept: the median stays finite while fewer than
half the digits are infinite, and the interval bounds are computed inf-aware (two equal
infinite neighbours interpolate to that infinity, not to NaN).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence, Set
from typing import Union

import numpy as np
import pandas as pd

#: Named statistics; a callable is also accepted (see :func:`bootstrap_ci`).
STATISTICS = ("mean", "median")
#: Correlation methods of :func:`correlation_ci`.
CORRELATIONS = ("spearman", "pearson")

Statistic = Union[str, Callable[[np.ndarray], np.ndarray]]

# Elements of one block of resampled values: bounds memory at ~32 MB of float64 per block
# whatever the number of digits.
_BLOCK_ELEMENTS = 1 << 22
# Blocks of 1 MB of float64 for the medians and rank correlations, whose many passes over
# (rows, n) arrays run two to three times faster when the arrays stay in the CPU cache.
_CACHED_ELEMENTS = 1 << 17


def _check_options(statistic: Statistic, n_boot: int, level: float) -> None:
    if not callable(statistic) and statistic not in STATISTICS:
        raise ValueError(
            f"statistic {statistic!r} is not supported; use one of {STATISTICS} or a callable"
        )
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1; got {level!r}")


def _index_blocks(
    n: int, n_boot: int, seed: int, width: int = 1, elements: int = _BLOCK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Blocks of rows of the ``(n_boot, n)`` resample index matrix, in order, same stream.

    The rows are the same whatever the block size (``elements / width`` values per block).
    """
    rng = np.random.default_rng(seed)
    rows = max(1, elements // max(1, n * width))
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - start), n))


def _row_counts(indices: np.ndarray, bins: int, dtype: type = np.int64, scratch: bool = False) -> np.ndarray:
    """``counts[b, k] = #{j : indices[b, j] = k}`` for each row ``b`` of ``indices``.

    ``scratch``: ``indices`` is the caller's temporary, which this may overwrite (one large
    temporary less; on these machines allocating one costs more than the counting).
    """
    rows = len(indices)
    if rows * bins <= _CACHED_ELEMENTS:
        offsets = (np.arange(rows) * bins)[:, None]
        flat = np.add(indices, offsets, out=indices if scratch else None).ravel()
        return np.bincount(flat, minlength=rows * bins).reshape(rows, bins).astype(dtype, copy=False)
    # Row by row, each row's bins stay in the CPU cache: one bincount over all rows' bins
    # scatters over the whole block and is several times slower.
    counts = np.empty((rows, bins), dtype)
    for row, positions in zip(counts, indices):
        row[:] = np.bincount(positions, minlength=bins)
    return counts


def _counts_from_indices(indices: np.ndarray, n: int) -> np.ndarray:
    return _row_counts(indices, n, np.float64)


def resample_counts(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """How often each digit appears in each bootstrap resample.

    ``counts[b, i] = #{j : idx[b, j] = i}`` for the seeded index matrix ``idx`` of the module
    docstring, so a resampled sum of a per-digit quantity ``x`` is ``counts @ x``.

    Parameters
    ----------
    n : int
        Number of digits.
    n_boot : int
    seed : int

    Returns
    -------
    (n_boot, n) ndarray of float64
        Each row sums to ``n``.
    """
    _check_options("mean", n_boot, 0.5)
    if n == 0:
        return np.zeros((n_boot, 0))
    return np.concatenate([_counts_from_indices(block, n) for block in _index_blocks(n, n_boot, seed)])


def bootstrap_sums(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Resampled column sums: ``sums[b, k] = sum_i counts[b, i] * values[i, k]``.

    The building block of means and of ratio statistics whose numerator and denominator are
    both sums over digits (such as the expected calibration error): the same resample
    ``counts`` (:func:`resample_counts`) applies to every column, computed block by block so
    memory stays bounded, in one matrix product per block however many columns there are.

    Parameters
    ----------
    values : (n, k) array_like of finite float
        One row per digit.
    n_boot : int
    seed : int

    Returns
    -------
    (n_boot, k) ndarray of float64
    """
    _check_options("mean", n_boot, 0.5)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (digits, columns); got shape {values.shape}")
    n = len(values)
    if n == 0:
        return np.zeros((n_boot, values.shape[1]))
    return np.concatenate(
        [_counts_from_indices(block, n) @ values for block in _index_blocks(n, n_boot, seed)]
    )


def percentile_interval(
    replicates: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Percentile interval of bootstrap replicates, inf-aware.

    ``low = Q((1 - level) / 2)``, ``high = Q((1 + level) / 2)`` with ``Q`` numpy's default
    (linear) sample quantile along axis 0, except that two equal neighbours give that value
    even when it is infinite. NaN replicates (statistic undefined on that resample) are
    dropped; a column with no defined replicate gives NaN bounds.

    Parameters
    ----------
    replicates : (n_boot,) or (n_boot, k) ndarray of float
    level : float in (0, 1)

    Returns
    -------
    low, high : float or (k,) ndarray of float
    """
    _check_options("mean", 1, level)
    array = np.asarray(replicates, dtype=np.float64)
    flat = array.reshape(len(array), -1)
    ordered = np.sort(flat, axis=0)  # NaN sort last
    valid = (~np.isnan(flat)).sum(axis=0)
    columns = np.arange(flat.shape[1])
    bounds = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        position = np.maximum(valid - 1, 0) * q
        below = ordered[np.floor(position).astype(np.int64), columns]
        above = ordered[np.ceil(position).astype(np.int64), columns]
        with np.errstate(invalid="ignore"):
            # Equal neighbours (including two infinities) need no interpolation; inf - inf
            # would otherwise turn the bound into NaN.
            bound = np.where(below == above, below, below + (position - np.floor(position)) * (above - below))
        bounds.append(np.where(valid > 0, bound, np.nan).reshape(array.shape[1:]))
    low, high = bounds
    if array.ndim == 1:
        return float(low), float(high)
    return low, high


def _reduce(statistic: Statistic, resamples: np.ndarray) -> np.ndarray:
    """The statistic of each resample: reduce axis 1 of ``(rows, n, ...)``."""
    if statistic == "mean":
        return resamples.mean(axis=1)
    if statistic == "median":
        return np.median(resamples, axis=1)
    return np.asarray(statistic(resamples), dtype=np.float64)


def _drop_nan_rows(values: np.ndarray) -> np.ndarray:
    if values.ndim == 1:
        return values[~np.isnan(values)]
    return values[~np.isnan(values.reshape(len(values), -1)).any(axis=1)]


def bootstrap_replicates(
    values: np.ndarray, statistic: Statistic = "mean", n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """The statistic recomputed on each bootstrap resample of the first axis.

    ``replicate[b] = statistic(values[idx[b]])`` with ``idx`` the seeded ``(n_boot, n)``
    index matrix of the module docstring. NaN rows of ``values`` are dropped first.

    Parameters
    ----------
    values : (n,) or (n, ...) array_like of float
    statistic : {"mean", "median"} or callable
        See :func:`bootstrap_ci`.
    n_boot : int
    seed : int

    Returns
    -------
    (n_boot,) + values.shape[1:] ndarray of float64
        All NaN when no value is left.
    """
    _check_options(statistic, n_boot, 0.5)
    values = _drop_nan_rows(np.asarray(values, dtype=np.float64))
    n = len(values)
    if n == 0:
        return np.full((n_boot,) + values.shape[1:], np.nan)
    width = int(np.prod(values.shape[1:], dtype=np.int64))
    if statistic == "mean" and np.isfinite(values).all():
        # Counts times values: one matrix product instead of gathering n_boot * n values;
        # not for infinities, where 0 * inf would be NaN.
        sums = bootstrap_sums(values.reshape(n, -1), n_boot, seed)
        return (sums / n).reshape((n_boot,) + values.shape[1:])
    if statistic == "median" and values.ndim == 1:
        # Order statistics from resample multiplicities: one sort instead of one per resample.
        ordered = _Sorted(values)
        parts = [ordered.medians(block) for block in _index_blocks(n, n_boot, seed, elements=_CACHED_ELEMENTS)]
    else:
        parts = [_reduce(statistic, values[block]) for block in _index_blocks(n, n_boot, seed, width)]
    return np.concatenate(parts)


def bootstrap_ci(
    values: np.ndarray,
    statistic: Statistic = "mean",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of a statistic over digits.

    ``estimate = statistic(values)``; ``low, high`` are the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of ``statistic(values[idx[b]])``, ``b = 1..n_boot``, with
    ``idx[b]`` ``n`` positions drawn uniformly with replacement (seeded, see the module
    docstring). NaN values are dropped (undefined for that digit); ``+inf`` values are kept,
    so a median stays finite while under half the digits are infinite.

    Parameters
    ----------
    values : (n,) array_like of float
        One value per digit. An ``(n, k)`` array gives ``k`` intervals at once (rows with a
        NaN are dropped), returned as ``(k,)`` arrays.
    statistic : {"mean", "median"} or callable
        A callable receives blocks of resamples, ``(rows, n)`` (or ``(rows, n, k)``), and
        must reduce axis 1, returning ``(rows,)`` (or ``(rows, k)``); the estimate is
        ``statistic(values[None])[0]``. Example: ``lambda r: np.quantile(r, 0.9, axis=1)``.
    n_boot : int
        Number of resamples.
    level : float in (0, 1)
        Coverage of the interval.
    seed : int

    Returns
    -------
    estimate, low, high : float
        All NaN when no value is left. With one value the interval is that value.

    Raises
    ------
    ValueError
        On an unknown statistic, a non-positive ``n_boot`` or a level outside (0, 1).
    """
    _check_options(statistic, n_boot, level)
    values = _drop_nan_rows(np.asarray(values, dtype=np.float64))
    if len(values) == 0:
        nan = np.full(values.shape[1:], np.nan) if values.ndim > 1 else np.nan
        return nan, nan, nan
    estimate = _reduce(statistic, values[None])[0]
    low, high = percentile_interval(bootstrap_replicates(values, statistic, n_boot, seed), level)
    if values.ndim == 1:
        return float(estimate), float(low), float(high)
    return estimate, low, high


def grouped_bootstrap_ci(
    frame: pd.DataFrame,
    by: str | Sequence[str],
    columns: str | Sequence[str],
    statistic: Statistic = "mean",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`bootstrap_ci` of several columns within each group of rows (digits).

    For each group ``g`` of ``frame.groupby(by)`` and each column ``c``:
    ``c = statistic(frame.loc[g, c])`` with its interval ``c_low, c_high`` over resamples of
    the group's rows, exactly as ``bootstrap_ci(frame.loc[g, c], statistic, n_boot, level,
    seed)`` would give (NaN dropped per column). Means of finite columns, and medians, share
    one count matrix per group size, so many groups of the same size cost one resampling.

    Parameters
    ----------
    frame : DataFrame
        One row per digit (and group).
    by : str or sequence of str
        Grouping columns; rows with a NaN key are dropped.
    columns : str or sequence of str
        Numeric columns to summarise.
    statistic, n_boot, level, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    DataFrame
        One row per group, sorted by ``by``: the ``by`` columns, ``n_digits`` (rows in the
        group), then ``c``, ``c_low``, ``c_high`` for each column ``c``.
    """
    _check_options(statistic, n_boot, level)
    by = [by] if isinstance(by, str) else list(by)
    columns = [columns] if isinstance(columns, str) else list(columns)
    missing = [name for name in by + columns if name not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the frame; it has {list(frame.columns)}")
    output_columns = by + ["n_digits"] + [f"{c}{s}" for c in columns for s in ("", "_low", "_high")]
    if frame.empty:
        return pd.DataFrame(columns=output_columns)
    data = frame[columns].to_numpy(dtype=np.float64)
    groups = _groups(frame, by)
    result = np.full((len(groups), len(columns), 3), np.nan)
    # Means of finite columns: all groups of one size share their resample counts, so their
    # columns go side by side through one bootstrap_sums call per size. Medians likewise
    # share the counts of their size (after dropping NaN). Other columns (means with NaN to
    # drop or infinities, callables) go one by one.
    by_size: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    medians: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for g, (_, positions) in enumerate(groups):
        values = data[positions]
        shared = np.isfinite(values).all(axis=0) & (statistic == "mean")
        if shared.any():
            by_size.setdefault(len(values), []).append((g, shared, values[:, shared]))
        for column in np.flatnonzero(~shared):
            if statistic == "median":
                kept = values[~np.isnan(values[:, column]), column]
                if len(kept):
                    medians.setdefault(len(kept), []).append((g, column, kept))
            else:
                result[g, column] = bootstrap_ci(values[:, column], statistic, n_boot, level, seed)
    for n, items in medians.items():
        # What bootstrap_ci does for one median, for every column of this size at once.
        ordered = [_Sorted(kept) for _, _, kept in items]
        replicates = np.empty((n_boot, len(items)))
        start = 0
        for block in _index_blocks(n, n_boot, seed, elements=_CACHED_ELEMENTS):
            for k, column_values in enumerate(ordered):
                replicates[start:start + len(block), k] = column_values.medians(block)
            start += len(block)
        low, high = percentile_interval(replicates, level)
        for k, (g, column, kept) in enumerate(items):
            result[g, column] = (_reduce("median", kept[None])[0], low[k], high[k])
    for n, items in by_size.items():
        stacked = np.hstack([block for _, _, block in items])
        low, high = percentile_interval(bootstrap_sums(stacked, n_boot, seed) / n, level)
        estimates = np.column_stack([stacked.mean(axis=0), low, high])
        offsets = np.cumsum([0] + [block.shape[1] for _, _, block in items])
        for (g, shared, _), start, stop in zip(items, offsets[:-1], offsets[1:]):
            result[g, shared] = estimates[start:stop]
    table = _group_table(groups, by, result, output_columns[len(by) + 1:])
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def _groups(frame: pd.DataFrame, by: list[str]) -> list[tuple[object, np.ndarray]]:
    """``(key, row positions)`` of each group of ``frame.groupby(by)``, sorted by key."""
    return list(frame.groupby(by, sort=True, observed=True).indices.items())


def _group_table(groups: list[tuple[object, np.ndarray]], by: list[str], values: np.ndarray,
                 columns: list[str]) -> pd.DataFrame:
    """One row per group: its key (the ``by`` columns), ``n_digits`` and ``values[g]`` as ``columns``."""
    records = [
        list(key if isinstance(key, tuple) else (key,)) + [len(positions)] + list(values[g].ravel())
        for g, (key, positions) in enumerate(groups)
    ]
    table = pd.DataFrame(records, columns=by + ["n_digits"] + columns)
    table["n_digits"] = table["n_digits"].astype(np.int64)
    return table


def paired_bootstrap_diff(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Statistic = "mean",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap interval of ``statistic(a) - statistic(b)`` over the same digits.

    ``estimate = statistic(a) - statistic(b)``; the replicates are
    ``statistic(a[idx[b]]) - statistic(b[idx[b]])`` with the same resampled positions for
    both, so the interval reflects the per-digit pairing (two models on the same perturbed
    digits). For the mean this equals the mean of the differences; for the median it is the
    difference of the medians, not the median of the differences. Pairs with a NaN on either
    side are dropped. A replicate where both statistics are the same infinity is undefined
    (``inf - inf``) and excluded from the interval; such an estimate is NaN.

    Parameters
    ----------
    a, b : (n,) array_like of float
        One value per digit, aligned.
    statistic, n_boot, level, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    estimate, low, high : float
    """
    _check_options(statistic, n_boot, level)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and aligned; got shapes {a.shape} and {b.shape}")
    pairs = _drop_nan_rows(np.column_stack([a, b]))
    if len(pairs) == 0:
        return np.nan, np.nan, np.nan
    with np.errstate(invalid="ignore"):
        estimate = np.subtract(*_reduce(statistic, pairs[None])[0])
        replicates = bootstrap_replicates(pairs, statistic, n_boot, seed)
        differences = replicates[:, 0] - replicates[:, 1]
    low, high = percentile_interval(differences, level)
    return float(estimate), low, high


class _Sorted:
    """One variable's values, sorted once, for order statistics of many resamples.

    A resample is given by its positions ``indices`` (``(rows, n)``, each row one resample
    of the values); counting them per distinct value gives each distinct value's
    multiplicity, from which ranks and medians follow by cumulative sums instead of a sort
    per resample. Every step counts whole numbers, so the results are exact.
    """

    def __init__(self, values: np.ndarray) -> None:
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.values = ordered[starts]
        #: Each value's position among the distinct values (ties share one).
        self.distinct = np.empty(len(values), dtype=np.int64)
        self.distinct[order] = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(values)]))

    def multiplicities(self, indices: np.ndarray) -> np.ndarray:
        """``(rows, k)``: how often each distinct value occurs in each resample."""
        return _row_counts(self.distinct[indices], len(self.values), scratch=True)

    def doubled_ranks(self, indices: np.ndarray) -> np.ndarray:
        """``(rows, n)``: twice the rank of each resampled value in its resample, ties averaged.

        ``rank(v) = #{resampled values < v} + (#{resampled values = v} + 1) / 2``, what
        ranking the resample itself would give: with ``up_to = #{<= v}``, the cumulative
        multiplicity in sorted order, that is ``up_to - (#{= v} - 1) / 2``. Twice it is a
        whole number (exact integer arithmetic, which also runs faster than floats).
        """
        rows, k = len(indices), len(self.values)
        cells = self.distinct[indices]
        cells += (np.arange(rows) * k)[:, None]
        multiplicity = np.bincount(cells.ravel(), minlength=rows * k).reshape(rows, k)
        doubled = np.cumsum(multiplicity, axis=1)
        doubled *= 2
        doubled -= multiplicity
        doubled += 1
        return doubled.ravel()[cells]

    def medians(self, indices: np.ndarray) -> np.ndarray:
        """``(rows,)``: median of each resample (mean of the two middle values if n is even)."""
        cumulative = np.cumsum(self.multiplicities(indices), axis=1)
        n = cumulative[0, -1]
        lower = self.values[np.argmax(cumulative >= (n + 1) // 2, axis=1)]
        upper = self.values[np.argmax(cumulative >= n // 2 + 1, axis=1)]
        return (lower + upper) / 2


def _correlation_from_sums(
    n: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray
) -> np.ndarray:
    """Pearson's r from weighted sums; NaN where a variable is constant."""
    vx = sxx - sx * sx / n
    vy = syy - sy * sy / n
    # Rounding leaves a constant resample with a tiny variance, not 0: call it constant.
    constant = (vx <= 1e-12 * sxx) | (vy <= 1e-12 * syy)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sxy - sx * sy / n) / np.sqrt(vx * vy)
    return np.where(constant, np.nan, np.clip(r, -1.0, 1.0))


def correlation_ci(
    x: np.ndarray,
    y: np.ndarray,
    method: str = "spearman",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Correlation between two per-digit quantities with a pairs-bootstrap interval.

    Pearson: ``r = sum (x - xbar)(y - ybar) / sqrt(sum (x - xbar)^2 sum (y - ybar)^2)``.
    Spearman: Pearson's ``r`` of the ranks (ties get their average rank), re-ranked within
    each resample. Pairs are resampled together (same seeded indices as
    :func:`bootstrap_ci`); pairs with a NaN are dropped first. A resample in which ``x`` or
    ``y`` is constant has no correlation and is excluded from the interval.

    Parameters
    ----------
    x, y : (n,) array_like of float
    method : {"spearman", "pearson"}
    n_boot, level, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    estimate, low, high : float
        NaN when fewer than 3 pairs are left or a variable is constant.
    """
    _check_correlation(method, n_boot, level)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and aligned; got shapes {x.shape} and {y.shape}")
    pairs = _drop_nan_rows(np.column_stack([x, y]))
    if len(pairs) < 3:
        return np.nan, np.nan, np.nan
    return _correlation_intervals([pairs], method, n_boot, level, seed)[0]


def grouped_correlation_ci(
    frame: pd.DataFrame,
    by: str | Sequence[str],
    x: str,
    y: str,
    method: str = "spearman",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`correlation_ci` of two columns within each group of rows (digits).

    For each group ``g`` of ``frame.groupby(by)``: exactly ``correlation_ci(frame.loc[g, x],
    frame.loc[g, y], method, n_boot, level, seed)``. Groups with as many pairs share their
    resamples (drawn once), and a variable with the same values in several groups (one
    covariate of the same digits) is ranked once per resample.

    Parameters
    ----------
    frame : DataFrame
        One row per digit (and group).
    by : str or sequence of str
        Grouping columns.
    x, y : str
        The two columns to correlate.
    method, n_boot, level, seed
        As in :func:`correlation_ci`.

    Returns
    -------
    DataFrame
        One row per group, sorted by ``by``: the ``by`` columns, ``n_digits`` (rows in the
        group), ``correlation``, ``correlation_low``, ``correlation_high``.
    """
    _check_correlation(method, n_boot, level)
    by = [by] if isinstance(by, str) else list(by)
    data = frame[[x, y]].to_numpy(dtype=np.float64)
    groups = _groups(frame, by)
    result = np.full((len(groups), 3), np.nan)
    by_size: dict[int, list[tuple[int, np.ndarray]]] = {}
    for g, (_, positions) in enumerate(groups):
        pairs = _drop_nan_rows(data[positions])
        if len(pairs) >= 3:
            by_size.setdefault(len(pairs), []).append((g, pairs))
    for items in by_size.values():
        intervals = _correlation_intervals([pairs for _, pairs in items], method, n_boot, level, seed)
        for (g, _), interval in zip(items, intervals):
            result[g] = interval
    return _group_table(groups, by, result, ["correlation", "correlation_low", "correlation_high"])


def _check_correlation(method: str, n_boot: int, level: float) -> None:
    if method not in CORRELATIONS:
        raise ValueError(f"method {method!r} is not supported; use one of {CORRELATIONS}")
    _check_options("mean", n_boot, level)


def _correlation_intervals(
    samples: Sequence[np.ndarray], method: str, n_boot: int, level: float, seed: int
) -> list[tuple[float, float, float]]:
    """:func:`correlation_ci` of NaN-free ``(n, 2)`` samples of one size ``n >= 3``, resampled alike."""
    n = len(samples[0])
    # Centring first keeps the sums of squares from cancelling.
    centred = [(pairs[:, 0] - pairs[:, 0].mean(), pairs[:, 1] - pairs[:, 1].mean()) for pairs in samples]
    if method == "pearson":
        stacks = [np.column_stack([x, y, x * x, y * y, x * y]) for x, y in centred]

        def correlations(indices: np.ndarray) -> list[np.ndarray]:
            counts = _counts_from_indices(indices, n)
            return [_correlation_from_sums(n, *(counts @ stack).T) for stack in stacks]

        # One matrix product per block, whose rounding may depend on the block's shape: keep it.
        blocks = _index_blocks(n, n_boot, seed, width=4)
    else:
        # Each distinct variable sorted once (samples often share one: the same covariate).
        variables: dict[bytes, _Sorted] = {}
        for values in (v for pair in centred for v in pair):
            variables.setdefault(values.tobytes(), _Sorted(values))
        keys = list(variables)
        references = [(keys.index(x.tobytes()), keys.index(y.tobytes())) for x, y in centred]

        def correlations(indices: np.ndarray) -> list[np.ndarray]:
            # Sums of squares and products of ranks, in whole numbers (twice the ranks): exact
            # for n up to 100,000 (below 2^53 once divided by 4), whatever the summation order.
            ranks = [variables[key].doubled_ranks(indices) for key in keys]
            # Ranks of a resample of n values always sum to n (n + 1) / 2.
            total = np.full(len(indices), n * (n + 1) / 2)
            return [
                _correlation_from_sums(
                    n, total, total,
                    np.einsum("ij,ij->i", ranks[i], ranks[i]) / 4,
                    np.einsum("ij,ij->i", ranks[j], ranks[j]) / 4,
                    np.einsum("ij,ij->i", ranks[i], ranks[j]) / 4,
                )
                for i, j in references
            ]

        # Ranking makes several passes over each block: cache-sized blocks.
        blocks = _index_blocks(n, n_boot, seed, elements=_CACHED_ELEMENTS // len(keys))
    estimates = [float(r[0]) for r in correlations(np.arange(n)[None])]
    replicates = np.vstack([np.column_stack(correlations(block)) for block in blocks])
    low, high = percentile_interval(replicates, level)
    return [(estimate, float(lo), float(hi)) for estimate, lo, hi in zip(estimates, low, high)]


def tie_groups(ordered: Sequence[str], separated: Set[frozenset[str]]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Shared ranks down an ordering of models, where tests cannot separate neighbours.

    Walking down ``ordered``, the first model opens a group of rank 1; each next model joins
    the current group when it is separated (a pair in ``separated``) from none of its members,
    and otherwise opens a group whose rank is its position (1, 1, 3, ...).

    Returns
    -------
    rank : dict of str to int
    group_of : dict of str to list of str
        Each model's group (itself included), in order.
    """
    groups: list[list[str]] = []
    rank: dict[str, int] = {}
    for position, model in enumerate(ordered, start=1):
        if groups and not any(frozenset((model, other)) in separated for other in groups[-1]):
            groups[-1].append(model)
            rank[model] = rank[groups[-1][0]]
        else:
            groups.append([model])
            rank[model] = position
    return rank, {m: group for group in groups for m in group}
