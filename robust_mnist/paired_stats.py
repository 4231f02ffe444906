"""Paired statistics of models evaluated on the same trials.

Every model of a study sees exactly the same perturbed digits, so two models' outcomes on a
digit form a *pair*: :func:`mcnemar_exact` and :func:`mcnemar_clustered` test an accuracy
difference on the pairs (with digits as units when they have several draws), :func:`holm`
corrects a family of such tests, :func:`error_consistency` and :func:`cohen_kappa` measure
whether two models err on the same digits (Geirhos et al. 2020), :func:`disagreement` how far
their probability vectors lie apart, and :func:`paired_differences` gives paired bootstrap
intervals (:mod:`robust_mnist.stats`) of the differences of per-digit metrics. Pure functions
of arrays and tables: no file, no model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from . import stats

#: Metrics of :func:`paired_differences` and :func:`robust_mnist.compare.model_summary` (per
#: digit, then aggregated). ``(name, statistic)``: means of per-digit values, except the
#: median critical magnitude.
DIFFERENCE_METRICS = (
    ("accuracy", "mean"),
    ("swing", "mean"),
    ("flip_rate", "mean"),
    ("critical_magnitude", "median"),
)


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test of two paired proportions (two-sided).

    Of the pairs on which two models disagree, ``b`` are right for the first model only and
    ``c`` for the second only. Under the null hypothesis of equal accuracy each discordant
    pair is equally likely to go either way, so ``b ~ Binomial(b + c, 1/2)`` and ::

        p = binomtest(b, b + c, 1/2).pvalue = min(1, 2 * sum_{k <= min(b, c)} C(b+c, k) / 2^(b+c))

    (the two-sided exact binomial p-value; the concordant pairs carry no information). With
    no discordant pair (``b + c = 0``) there is no evidence of a difference: ``p = 1``.

    Parameters
    ----------
    b, c : int
        Non-negative counts of discordant pairs.

    Returns
    -------
    float in (0, 1]
    """
    b, c = _count(b, "b"), _count(c, "c")
    if b + c == 0:
        return 1.0
    return float(scipy.stats.binomtest(b, b + c, 0.5).pvalue)


def mcnemar_clustered(balances: Sequence[int] | np.ndarray) -> float:
    """Exact paired test for digits seen in several draws: McNemar's test with digits as units.

    ``balances[k]`` is, for digit ``k``, the number of its draws that only the first model got
    right minus the number that only the second got right. Draws of one digit are not
    independent (a hard digit is hard in every draw), so they are not counted as separate
    trials; instead, under the null hypothesis that the two models are exchangeable on every
    digit, each balance is as likely to be ``+|d_k|`` as ``-|d_k|``, and the two-sided p-value
    is the exact probability, over the ``2^K`` sign patterns of the ``K`` non-zero balances,
    that ``|sum_k +-|d_k||`` reaches the observed ``|sum_k d_k|`` (a sign-flip randomisation
    test). With one draw per digit the balances are -1, 0 or 1 and this is exactly
    :func:`mcnemar_exact` ``(b, c)``.

    Parameters
    ----------
    balances : (n,) array_like of int

    Returns
    -------
    float in (0, 1]
    """
    balances = np.asarray(balances)
    if balances.ndim != 1 or not np.array_equal(balances, np.round(balances)):
        raise ValueError("balances must be a 1-D array of integers (draws won minus draws lost per digit)")
    balances = balances.astype(np.int64)
    sizes = np.abs(balances[balances != 0])
    if sizes.max(initial=0) <= 1:
        return mcnemar_exact(int((balances > 0).sum()), int((balances < 0).sum()))
    total = int(sizes.sum())
    # Distribution of the signed sum, shifted by `total` onto the indices 0 .. 2 * total: each
    # group of m balances of size v adds v * (2 j - m), j ~ Binomial(m, 1/2).
    pmf = np.zeros(2 * total + 1)
    pmf[total] = 1.0
    for size, m in zip(*np.unique(sizes, return_counts=True)):
        spread = np.zeros_like(pmf)
        for j, weight in enumerate(scipy.stats.binom.pmf(np.arange(m + 1), m, 0.5)):
            shift = int(size) * (2 * j - int(m))
            if shift >= 0:
                spread[shift:] += weight * pmf[: len(pmf) - shift]
            else:
                spread[:shift] += weight * pmf[-shift:]
        pmf = spread
    observed = abs(int(balances.sum()))
    extreme = np.abs(np.arange(len(pmf)) - total) >= observed
    return float(min(1.0, pmf[extreme].sum()))


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer count; got {value!r}")
    return int(value)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), controlling the family-wise error.

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, ::

        p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))

    and hypothesis ``i`` is rejected at level ``alpha`` when ``p~_(i) <= alpha``; this
    rejects exactly the hypotheses that the step-down procedure rejects (compare ``p_(1)``
    with ``alpha / m``, ``p_(2)`` with ``alpha / (m - 1)``, ... and stop at the first that is
    not below its threshold). NaN p-values are left out of the family and stay NaN.

    Parameters
    ----------
    p_values : (m,) array_like of float in [0, 1]

    Returns
    -------
    (m,) ndarray of float64
        Adjusted p-values, in the input's order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D; got shape {p.shape}")
    valid = ~np.isnan(p)
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1]; got {p[valid & ((p < 0) | (p > 1))][:3]}")
    adjusted = np.full_like(p, np.nan)
    values = p[valid]
    m = len(values)
    if m == 0:
        return adjusted
    order = np.argsort(values, kind="stable")
    scaled = (m - np.arange(m)) * values[order]
    stepped = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = stepped
    adjusted[valid] = out
    return adjusted


def error_consistency(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, float, float]:
    """Error consistency of two models (Geirhos et al. 2020): Cohen's kappa of correctness.

    With ``p_a``, ``p_b`` the two accuracies over the same trials, ::

        c_obs = mean 1[correct_a == correct_b]          (observed agreement in being right or wrong)
        c_exp = p_a p_b + (1 - p_a)(1 - p_b)           (agreement of independent models)
        kappa = (c_obs - c_exp) / (1 - c_exp)

    ``kappa = 1`` when the models err on exactly the same digits, 0 when they err
    independently (at their accuracies), negative when they err on different digits. It is
    undefined (NaN) when ``c_exp = 1`` (both models always right, or both always wrong).

    Parameters
    ----------
    correct_a, correct_b : (n,) array_like of bool
        Per-trial correctness of the two models on the same trials.

    Returns
    -------
    kappa, c_obs, c_exp : float
    """
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correct_a and correct_b must be 1-D and aligned; got {a.shape} and {b.shape}")
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    a = a.astype(bool)
    b = b.astype(bool)
    c_obs = float(np.mean(a == b))
    p_a, p_b = float(a.mean()), float(b.mean())
    return (cohen_kappa(c_obs, p_a, p_b), c_obs, p_a * p_b + (1 - p_a) * (1 - p_b))


def cohen_kappa(
    c_obs: np.ndarray | float, p_a: np.ndarray | float, p_b: np.ndarray | float
) -> np.ndarray | float:
    """Vectorised kappa from observed agreement and the two accuracies; NaN where c_exp = 1.

    ``kappa = (c_obs - c_exp) / (1 - c_exp)`` with ``c_exp = p_a p_b + (1 - p_a)(1 - p_b)``
    (see :func:`error_consistency`); a float for scalar inputs, an array otherwise.
    """
    c_exp = np.asarray(p_a) * p_b + (1 - np.asarray(p_a)) * (1 - np.asarray(p_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(c_exp < 1 - 1e-12, (np.asarray(c_obs) - c_exp) / (1 - c_exp), np.nan)
    return float(kappa) if np.ndim(kappa) == 0 else kappa


def model_pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of models, in the given order: (m0, m1), (m0, m2), ..., (m1, m2)..."""
    return list(itertools.combinations(list(models), 2))


def paired_differences(
    digits: pd.DataFrame,
    models: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired bootstrap intervals of the differences between models, per family.

    For models ``a``, ``b`` and a family, over the digits both were evaluated on (all of
    them, in a complete run), with ``x_i`` a per-digit metric of
    :func:`robust_mnist.compare.per_digit_metrics`:
    ``accuracy``, ``swing`` and ``flip_rate``: ``mean_i x_i(a) - mean_i x_i(b)``;
    ``critical_magnitude``: ``median_i x_i(a) - median_i x_i(b)`` (a difference of
    medians; NaN when both are +inf). Intervals: :func:`robust_mnist.stats.paired_bootstrap_diff`
    (the same resampled digits for both models). A difference is ``<metric>_significant``
    when its interval excludes 0.

    Returns
    -------
    DataFrame
        One row per (family, pair): ``family, model_a, model_b, n_digits`` and
        ``<metric>, <metric>_low, <metric>_high, <metric>_significant`` per metric.
    """
    models = list(dict.fromkeys(digits["model"])) if models is None else list(models)
    pairs = model_pairs(models)
    rows = {}
    for family, part in digits.groupby("family", sort=False):
        for a, b in pairs:
            rows[(family, a, b)] = {"family": family, "model_a": a, "model_b": b}
        for name, statistic in DIFFERENCE_METRICS:
            values = part.pivot(index="image", columns="model", values=name)[models].to_numpy(np.float64)
            for a, b in pairs:
                rows[(family, a, b)]["n_digits"] = int(len(values))
            replicates = None
            if not np.isnan(values).any():
                # Every model's statistic on the same resamples (same seed, same n: same resampled
                # digits, see robust_mnist.stats), so differences of columns are paired replicates:
                # what paired_bootstrap_diff computes, once per model instead of once per pair.
                if statistic == "mean":
                    replicates = stats.bootstrap_replicates(values, "mean", n_boot, seed)
                else:
                    replicates = np.column_stack([stats.bootstrap_replicates(values[:, m], statistic, n_boot, seed)
                                                  for m in range(len(models))])
                point = values.mean(axis=0) if statistic == "mean" else np.median(values, axis=0)
            for a, b in pairs:
                i, j = models.index(a), models.index(b)
                with np.errstate(invalid="ignore"):
                    if replicates is None:  # NaN digits: drop them pair by pair
                        estimate, low, high = stats.paired_bootstrap_diff(values[:, i], values[:, j], statistic, n_boot, level, seed)
                    else:
                        estimate = float(point[i] - point[j])
                        low, high = stats.percentile_interval(replicates[:, i] - replicates[:, j], level)
                row = rows[(family, a, b)]
                row[name], row[f"{name}_low"], row[f"{name}_high"] = estimate, low, high
                row[f"{name}_significant"] = bool(np.isfinite([low, high]).all() and (low > 0 or high < 0))
    columns = ["family", "model_a", "model_b", "n_digits"] + [
        f"{name}{suffix}" for name, _ in DIFFERENCE_METRICS for suffix in ("", "_low", "_high", "_significant")
    ]
    return pd.DataFrame(list(rows.values()), columns=columns)


def disagreement(probabilities: np.ndarray) -> np.ndarray:
    """How much models disagree on each input: the mean pairwise total-variation distance.

    ``D = 2 / (M (M - 1)) sum_{i < j} 0.5 * ||p_i - p_j||_1``, in [0, 1]: 0 when all models
    give the same probabilities, 1 when every pair is certain of different classes.

    Parameters
    ----------
    probabilities : (M, N, 10) array_like of float
        Model ``m``'s probability vector for input ``n``.

    Returns
    -------
    (N,) ndarray of float64
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 10:
        raise ValueError(f"probabilities must have shape (models, inputs, 10); got {p.shape}")
    m = p.shape[0]
    if m < 2:
        return np.zeros(p.shape[1])
    total = np.zeros(p.shape[1])
    for i, j in itertools.combinations(range(m), 2):
        total += 0.5 * np.abs(p[i] - p[j]).sum(axis=1)
    return total / (m * (m - 1) / 2)
