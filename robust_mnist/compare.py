"""Comparing models on the same perturbed digits: paired statistics and the comparison report.

Every model of a study sees exactly the same perturbed digits (the runner derives each cell's
randomness from the study seed, the spec, the magnitude and the draw only), so two models'
outcomes on a digit form a *pair*, and differences between models are tested with paired
statistics, which are far more sensitive than comparing two independent accuracies:

- :func:`mcnemar_exact`, :func:`mcnemar_clustered` and :func:`holm`: McNemar's exact test of
  an accuracy difference at one magnitude (with digits as units when they have several
  draws), and Holm's step-down correction across a family's magnitudes;
- :func:`pairwise_accuracy`: both, for every pair of models, family and magnitude, with a
  paired bootstrap interval of the difference;
- :func:`paired_differences`: paired bootstrap intervals for the differences in mean
  accuracy, mean swing, flip rate and median critical magnitude per family;
- :func:`error_consistency` (Geirhos et al. 2020) per cell and :func:`kappa_matrix`;
- :func:`seed_spread` and :func:`architecture_differences`: how much a metric moves between
  seeds of one architecture, beside the difference between architectures;
- :func:`rank_models`: a ranking per family with ties where no difference is significant.

The statistics are pure functions of the results table (``robust_mnist.runner.load_results``).
:func:`compare_runs` reads one or several run directories of the same study (and nothing
else: no model, no perturbation code), checks that they hold the same digits and the same
perturbations, and merges their models into one :class:`Comparison`;
:func:`write_comparison_report` renders it with the study report's page machinery.

Units. A *trial* is one perturbed digit: (family, magnitude, image, draw). For deterministic
families a digit has one draw, so trials are digits. For random families each draw is a
different perturbed image seen by every model, but draws of one digit are not independent (a
hard digit is hard in every draw), so the tests and intervals treat the *digit* as the unit:
McNemar's test becomes an exact sign-flip test of each digit's balance of discordant draws
(:func:`mcnemar_clustered`), and the bootstrap intervals resample digits with all their draws
(:mod:`robust_mnist.stats`).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from . import metrics, stats
from .errors import ComparisonError

logger = logging.getLogger(__name__)

#: Significance level of the tests (after Holm's correction).
ALPHA = 0.05
#: Bootstrap resamples of every interval.
N_BOOT = 1000
#: Family label of the clean predictions (as in the results table).
CLEAN = metrics.CLEAN
#: Metrics of :func:`paired_differences` and :func:`model_summary` (per digit, then aggregated).
#: ``(name, statistic)``: means of per-digit values, except the median critical magnitude.
DIFFERENCE_METRICS = (
    ("accuracy", "mean"),
    ("swing", "mean"),
    ("flip_rate", "mean"),
    ("critical_magnitude", "median"),
)
#: Column order of :func:`rank_models`'s table (the ``compare --format csv|json`` export).
RANKING_COLUMNS = [
    "family", "rank", "tied", "model", "arch", "seed", "n_digits",
    "accuracy", "accuracy_low", "accuracy_high", "swing", "swing_low", "swing_high",
    "flip_rate", "flip_rate_low", "flip_rate_high",
    "critical_magnitude", "critical_magnitude_low", "critical_magnitude_high",
    "beats", "beaten_by", "tied_with", "crossing",
]

_KEYS = ["family", "magnitude", "image", "draw"]


# =============================================================================== statistics


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
    return (_kappa(c_obs, p_a, p_b), c_obs, p_a * p_b + (1 - p_a) * (1 - p_b))


def _kappa(c_obs: np.ndarray | float, p_a: np.ndarray | float, p_b: np.ndarray | float) -> Any:
    """Vectorised kappa from observed agreement and the two accuracies; NaN where c_exp = 1."""
    c_exp = np.asarray(p_a) * p_b + (1 - np.asarray(p_a)) * (1 - np.asarray(p_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(c_exp < 1 - 1e-12, (np.asarray(c_obs) - c_exp) / (1 - c_exp), np.nan)
    return float(kappa) if np.ndim(kappa) == 0 else kappa


# ====================================================================== results-table statistics


def model_pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of models, in the given order: (m0, m1), (m0, m2), ..., (m1, m2)..."""
    return list(itertools.combinations(list(models), 2))


def _models(results: pd.DataFrame, models: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(results["model"]))
    if models is None:
        return present
    missing = [m for m in models if m not in present]
    if missing:
        raise ValueError(f"models {missing} are not in the results table; it has {present}")
    return list(models)


def paired_outcomes(results: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Per trial, whether each model was right: the paired data of every test here.

    Parameters
    ----------
    results : DataFrame
        The results table (clean rows included, as family ``"clean"``, magnitude 0).
    models : sequence of str, optional
        Which models (default: all, in order of appearance).

    Returns
    -------
    DataFrame
        One row per trial, sorted by family (table order), magnitude, image, draw: columns
        ``family, magnitude, image, draw, label`` and one boolean column per model.

    Raises
    ------
    ValueError
        If the models were not all evaluated on the same trials (not paired).
    """
    metrics._check_results(results)
    models = _models(results, models)
    frame = results.loc[results["model"].isin(models), [*_KEYS, "model", "label", "pred"]]
    frame = frame.assign(correct=frame["pred"].to_numpy() == frame["label"].to_numpy())
    duplicated = frame.duplicated([*_KEYS, "model"])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} duplicate rows (model, family, magnitude, image, draw) in the results")
    wide = frame.pivot(index=_KEYS, columns="model", values="correct")
    if wide.isna().any().any():
        lacking = wide.columns[wide.isna().any()].tolist()
        raise ValueError(
            f"models {lacking} lack some of the perturbed digits the others were evaluated on: "
            "a comparison needs every model on the same digits (one complete study run)"
        )
    labels = frame.drop_duplicates(_KEYS).set_index(_KEYS)["label"]
    wide = wide[models].astype(bool)
    wide.insert(0, "label", labels.reindex(wide.index).to_numpy())
    wide = wide.reset_index()
    order = {name: i for i, name in enumerate(dict.fromkeys(results["family"]))}
    wide["_order"] = wide["family"].map(order)
    wide = wide.sort_values(["_order", "magnitude", "image", "draw"], kind="stable")
    wide.columns.name = None
    return wide.drop(columns="_order").reset_index(drop=True)


def pairwise_accuracy(
    results: pd.DataFrame,
    models: Sequence[str] | None = None,
    alpha: float = ALPHA,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Accuracy differences between every pair of models, per family and magnitude, tested.

    For models ``a``, ``b`` at one family and magnitude, over its ``n`` trials:
    ``accuracy_a = mean 1[a right]``, ``difference = accuracy_a - accuracy_b``;
    ``b_only``/``a_only`` count the discordant trials (``a_only``: a right, b wrong; this is
    McNemar's ``b``, and ``b_only`` its ``c``); ``p_value`` is McNemar's exact test with the
    digits as units, :func:`mcnemar_clustered` of each digit's ``a_only - b_only`` over its
    draws (``mcnemar_exact(a_only, b_only)`` when every digit has one draw);
    ``p_holm`` is Holm's adjustment of the p-values of the family's magnitudes for this pair
    (the clean row, family ``"clean"``, is a family of one); ``significant = p_holm <=
    alpha``. ``difference_low/high`` is the paired percentile bootstrap interval of the
    difference, resampling digits with all their draws (same resamples for both models).

    Returns
    -------
    DataFrame
        One row per (family, magnitude, pair): ``family, magnitude, model_a, model_b, n,
        n_digits, accuracy_a, accuracy_b, difference, difference_low, difference_high,
        a_only, b_only, p_value, p_holm, significant``. Families in table order (clean
        first), pairs in model order.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    wide = paired_outcomes(results, models)
    models = _models(results, models)
    pairs = model_pairs(models)
    columns = [
        "family", "magnitude", "model_a", "model_b", "n", "n_digits", "accuracy_a", "accuracy_b",
        "difference", "difference_low", "difference_high", "a_only", "b_only", "p_value", "p_holm",
        "significant",
    ]
    if not pairs or wide.empty:
        return pd.DataFrame(columns=columns)
    cells = ["family", "magnitude"]
    outcome = wide[models].to_numpy(bool)
    position = {m: i for i, m in enumerate(models)}
    counts = {"n": np.ones(len(wide))}
    per_image = {}
    for a, b in pairs:
        x, y = outcome[:, position[a]], outcome[:, position[b]]
        counts[f"{a}\0{b}\0a_only"] = (x & ~y).astype(np.float64)
        counts[f"{a}\0{b}\0b_only"] = (~x & y).astype(np.float64)
        per_image[(a, b)] = x.astype(np.float64) - y
    for m in models:
        counts[f"{m}\0correct"] = outcome[:, position[m]].astype(np.float64)
    # The keys of `counts` are internal column names; one groupby sums them all per cell.
    frame = pd.DataFrame(counts).assign(**{c: wide[c].to_numpy() for c in cells})
    sums = frame.groupby(cells, sort=False).sum()
    n_digits = wide.groupby(cells, sort=False)["image"].nunique()

    # Paired bootstrap of each difference over digits: average each digit's draws first.
    diffs = pd.DataFrame({f"{a}\0{b}": v for (a, b), v in per_image.items()})
    for column in cells + ["image"]:
        diffs[column] = wide[column].to_numpy()
    by_digit = diffs.groupby(cells + ["image"], sort=False)
    # Draws won minus draws lost per digit: the units of the test (see mcnemar_clustered).
    balances = dict(iter(by_digit.sum().reset_index().groupby(cells, sort=False)))
    diffs = by_digit.mean().reset_index()
    long = diffs.melt(id_vars=cells + ["image"], var_name="pair", value_name="difference")
    intervals = stats.grouped_bootstrap_ci(long, cells + ["pair"], "difference", "mean", n_boot, level, seed)
    intervals = intervals.set_index(cells + ["pair"])

    rows = []
    for (family, magnitude), total in sums.iterrows():
        n = int(total["n"])
        for a, b in pairs:
            a_only = int(total[f"{a}\0{b}\0a_only"])
            b_only = int(total[f"{a}\0{b}\0b_only"])
            accuracy_a = total[f"{a}\0correct"] / n
            accuracy_b = total[f"{b}\0correct"] / n
            ci = intervals.loc[(family, magnitude, f"{a}\0{b}")]
            rows.append([
                family, float(magnitude), a, b, n, int(n_digits.loc[(family, magnitude)]),
                accuracy_a, accuracy_b, accuracy_a - accuracy_b,
                ci["difference_low"], ci["difference_high"], a_only, b_only,
                mcnemar_clustered(np.rint(balances[(family, magnitude)][f"{a}\0{b}"].to_numpy())),
                np.nan, False,
            ])
    table = pd.DataFrame(rows, columns=columns)
    for _, index in table.groupby(["family", "model_a", "model_b"], sort=False).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"].to_numpy())
    table["significant"] = table["p_holm"] <= alpha
    return table


def per_digit_metrics(results: pd.DataFrame, refined: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model, family and digit: accuracy, swing, flip rate and critical magnitude.

    ``accuracy`` and ``flip_rate`` are the fractions of the family's non-zero magnitudes at
    which the digit is classified correctly / differently from its clean prediction (each
    magnitude's draws averaged first), ``swing`` the range of its true-class probability
    over the sweep (:func:`robust_mnist.metrics.swing`), ``critical_magnitude`` the smallest
    magnitude that flips it, ``+inf`` if none does
    (:func:`robust_mnist.metrics.critical_magnitudes`, majority rule, refined by bisection
    where ``refined`` has it). The mean of ``accuracy`` over digits is the family's accuracy
    averaged over its magnitudes.

    Returns
    -------
    DataFrame
        ``model, family, image, label, accuracy, swing, flip_rate, critical_magnitude``.
    """
    swing = metrics.swing(results)
    critical = metrics.critical_magnitudes(results, refined=refined)
    table = swing[["model", "family", "image", "label", "accuracy", "swing", "flip_rate"]].merge(
        critical[["model", "family", "image", "critical_magnitude"]], on=["model", "family", "image"], how="left"
    )
    return table


def model_summary(
    digits: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Per model and family: each metric of :data:`DIFFERENCE_METRICS` with its interval.

    Parameters
    ----------
    digits : DataFrame
        :func:`per_digit_metrics`.

    Returns
    -------
    DataFrame
        ``model, family, n_digits, accuracy(_low, _high), swing(...), flip_rate(...),
        critical_magnitude(...)``: means over digits, and the median critical magnitude.
    """
    means = [name for name, statistic in DIFFERENCE_METRICS if statistic == "mean"]
    table = stats.grouped_bootstrap_ci(digits, ["model", "family"], means, "mean", n_boot, level, seed)
    medians = stats.grouped_bootstrap_ci(digits, ["model", "family"], "critical_magnitude", "median", n_boot, level, seed)
    return table.merge(medians.drop(columns="n_digits"), on=["model", "family"])


def paired_differences(
    digits: pd.DataFrame,
    models: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired bootstrap intervals of the differences between models, per family.

    For models ``a``, ``b`` and a family, over the digits both were evaluated on (all of
    them, in a complete run), with ``x_i`` a per-digit metric of :func:`per_digit_metrics`:
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


def consistency(
    results: pd.DataFrame,
    models: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Error consistency of every pair of models, per cell and per family.

    Per (family, magnitude, pair): :func:`error_consistency` over the cell's trials. Per
    (family, pair): ``kappa`` is the mean of the cell kappas over the family's magnitudes
    (as Geirhos et al. average over conditions: pooling magnitudes would count the shared
    drop in accuracy with severity as consistency), NaN cells (``c_exp = 1``) left out; its
    interval is the percentile bootstrap over digits, with every cell's agreement and
    accuracies recomputed from the same resampled digits (draws averaged within a digit).

    Returns
    -------
    cells : DataFrame
        ``family, magnitude, model_a, model_b, n, kappa, c_obs, c_exp``.
    families : DataFrame
        ``family, model_a, model_b, n_digits, kappa, kappa_low, kappa_high``.
    """
    wide = paired_outcomes(results, models)
    models = _models(results, models)
    pairs = model_pairs(models)
    cell_rows, family_rows = [], []
    for family, part in wide.groupby("family", sort=False):
        magnitudes = list(dict.fromkeys(part["magnitude"]))
        # Per digit and magnitude: the draw-averaged correctness of each model and agreement of
        # each pair; the bootstrap sums these over resampled digits.
        columns = {}
        for m in models:
            columns[m] = part[m].to_numpy(np.float64)
        for a, b in pairs:
            columns[f"{a}\0{b}"] = (part[a].to_numpy() == part[b].to_numpy()).astype(np.float64)
        frame = pd.DataFrame(columns).assign(magnitude=part["magnitude"].to_numpy(), image=part["image"].to_numpy())
        per_digit = frame.groupby(["image", "magnitude"], sort=True).mean().unstack("magnitude")
        n_trials = part.groupby("magnitude", sort=False).size()
        values = per_digit.to_numpy(np.float64)  # (digits, (models + pairs) * magnitudes)
        keys = list(per_digit.columns)
        index = {key: i for i, key in enumerate(keys)}
        full = values.mean(axis=0)[None]
        replicates = stats.bootstrap_sums(values, n_boot, seed) / len(values)
        for a, b in pairs:
            def kappas(sums: np.ndarray) -> np.ndarray:
                return np.column_stack([
                    _kappa(sums[:, index[(f"{a}\0{b}", mag)]], sums[:, index[(a, mag)]], sums[:, index[(b, mag)]])
                    for mag in magnitudes
                ])

            point = kappas(full)[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN, as intended
                family_point = float(np.nanmean(point)) if np.isfinite(point).any() else math.nan
                resampled = np.nanmean(kappas(replicates), axis=1)
            low, high = stats.percentile_interval(resampled, level)
            family_rows.append([family, a, b, len(values), family_point, low, high])
            for mag, kappa in zip(magnitudes, point):
                c_obs = full[0, index[(f"{a}\0{b}", mag)]]
                p_a, p_b = full[0, index[(a, mag)]], full[0, index[(b, mag)]]
                cell_rows.append([family, float(mag), a, b, int(n_trials[mag]), float(kappa), float(c_obs),
                                  float(p_a * p_b + (1 - p_a) * (1 - p_b))])
    cells = pd.DataFrame(cell_rows, columns=["family", "magnitude", "model_a", "model_b", "n", "kappa", "c_obs", "c_exp"])
    families = pd.DataFrame(family_rows, columns=["family", "model_a", "model_b", "n_digits", "kappa", "kappa_low", "kappa_high"])
    return cells, families


def kappa_matrix(
    cells: pd.DataFrame, models: Sequence[str], families: Sequence[str] | None = None
) -> np.ndarray:
    """A model-by-model matrix of error consistency.

    ``K[i, j]`` is the mean of the cell kappas of pair (i, j) over the perturbed cells
    (family, magnitude) of ``families`` (default: every family except ``"clean"``), NaN
    cells left out; ``K[i, i] = 1``; symmetric.

    Parameters
    ----------
    cells : DataFrame
        The per-cell table of :func:`consistency`.
    models : sequence of str
    families : sequence of str, optional

    Returns
    -------
    (M, M) ndarray of float64
    """
    models = list(models)
    selected = cells.loc[cells["family"] != CLEAN] if families is None else cells.loc[cells["family"].isin(families)]
    means = selected.groupby(["model_a", "model_b"])["kappa"].mean()
    matrix = np.eye(len(models))
    for (a, b), value in means.items():
        if a in models and b in models:
            i, j = models.index(a), models.index(b)
            matrix[i, j] = matrix[j, i] = value
    for i, j in itertools.combinations(range(len(models)), 2):
        if (models[i], models[j]) not in means.index and (models[j], models[i]) not in means.index:
            matrix[i, j] = matrix[j, i] = np.nan
    return matrix


def seed_spread(summary: pd.DataFrame, model_info: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """How much each metric varies between seeds of one architecture.

    For an architecture trained with ``k >= 2`` seeds and a family and metric with per-seed
    values ``v_1..v_k`` (from :func:`model_summary`): ``mean``, ``min``, ``max``,
    ``range = max - min`` and ``sd`` (sample standard deviation, ``ddof = 1``). Models given
    as ``.keras`` files without an architecture and seed are left out.

    Parameters
    ----------
    summary : DataFrame
        :func:`model_summary`.
    model_info : mapping
        ``{model: {"arch": ..., "seed": ...}}`` (run.json's ``models``).

    Returns
    -------
    DataFrame
        ``family, metric, arch, n_seeds, seeds, values, mean, min, max, range, sd``
        (``seeds`` and ``values`` as lists).
    """
    groups = _arch_groups(model_info, [m for m in dict.fromkeys(summary["model"])])
    rows = []
    for arch, members in groups.items():
        if len(members) < 2:
            continue
        part = summary.loc[summary["model"].isin([m for m, _ in members])].set_index(["family", "model"])
        for family in dict.fromkeys(summary["family"]):
            for metric, _ in DIFFERENCE_METRICS:
                values = np.array([part.loc[(family, m), metric] for m, _ in members], dtype=np.float64)
                if np.isnan(values).all():
                    continue  # undefined for this family (the swing of the clean digits)
                finite = values[np.isfinite(values)]
                spread = float(finite.max() - finite.min()) if len(finite) == len(values) else math.nan
                rows.append([
                    family, metric, arch, len(members), [s for _, s in members], values.tolist(),
                    float(values.mean()) if len(finite) == len(values) else math.nan,
                    float(values.min()), float(values.max()), spread,
                    float(np.std(values, ddof=1)) if len(finite) == len(values) else math.nan,
                ])
    return pd.DataFrame(rows, columns=["family", "metric", "arch", "n_seeds", "seeds", "values",
                                       "mean", "min", "max", "range", "sd"])


def _arch_groups(model_info: Mapping[str, Mapping[str, Any]], models: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """``{arch: [(model, seed), ...]}`` for the models with an architecture and a seed."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for model in models:
        info = model_info.get(model) or {}
        if info.get("arch") is not None and info.get("seed") is not None:
            groups.setdefault(str(info["arch"]), []).append((model, int(info["seed"])))
    return groups


def architecture_differences(
    summary: pd.DataFrame, spread: pd.DataFrame, model_info: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Differences between architectures beside the spread between seeds.

    For architectures ``A`` and ``B`` (each the mean of its seeds' values), a family and a
    metric: ``difference = mean(A) - mean(B)``. ``seed_range`` is the largest range across
    seeds (:func:`seed_spread`) among ``A`` and ``B``; when neither has several seeds, the
    largest range of any architecture in the comparison that has (``seed_reference`` names
    it), assuming seed noise of similar size. ``beyond_seed_noise = |difference| >
    seed_range``: a difference smaller than what retraining the same network with another
    seed produces is not evidence that the architecture matters.

    Returns
    -------
    DataFrame
        ``family, metric, arch_a, arch_b, value_a, value_b, difference, seed_range,
        seed_reference, beyond_seed_noise``; empty when no architecture has several seeds.
    """
    columns = ["family", "metric", "arch_a", "arch_b", "value_a", "value_b", "difference",
               "seed_range", "seed_reference", "beyond_seed_noise"]
    groups = _arch_groups(model_info, list(dict.fromkeys(summary["model"])))
    if spread.empty or len(groups) < 2:
        return pd.DataFrame(columns=columns)
    ranges = spread.set_index(["family", "metric", "arch"])["range"]
    indexed = summary.set_index(["family", "model"])
    rows = []
    for family in dict.fromkeys(summary["family"]):
        for metric, _ in DIFFERENCE_METRICS:
            means = {arch: float(np.mean([indexed.loc[(family, m), metric] for m, _ in members]))
                     for arch, members in groups.items()}
            available = {arch: ranges.get((family, metric, arch), np.nan) for arch in groups}
            available = {k: v for k, v in available.items() if np.isfinite(v)}
            for a, b in itertools.combinations(groups, 2):
                own = {k: available[k] for k in (a, b) if k in available}
                source = own or available
                if source:
                    reference = max(source, key=source.get)
                    seed_range = source[reference]
                else:
                    reference, seed_range = None, math.nan
                difference = means[a] - means[b]
                if np.isnan(difference):
                    continue  # undefined for this family
                beyond = bool(np.isfinite(difference) and np.isfinite(seed_range) and abs(difference) > seed_range)
                rows.append([family, metric, a, b, means[a], means[b], difference, seed_range, reference, beyond])
    return pd.DataFrame(rows, columns=columns)


def rank_models(
    pairwise: pd.DataFrame,
    summary: pd.DataFrame,
    models: Sequence[str],
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """A ranking of the models per family, with ties where no difference is significant.

    Procedure, per family (the clean digits are a family with the single magnitude 0):

    1. Two models are *separated* when at least one of the family's magnitudes shows a
       significant accuracy difference between them: McNemar's exact test with Holm's
       correction across the family's magnitudes for this pair, adjusted p at most alpha
       (``significant`` of :func:`pairwise_accuracy`). Model ``i`` *beats* ``j`` when every
       significant difference favours ``i``; a *crossing* when some favour each.
    2. Order the models: repeatedly take, among the models not yet placed that no other
       unplaced model beats, the one with the highest ``accuracy`` (the family's accuracy
       averaged over its magnitudes, :func:`model_summary`; equal scores keep the model
       order); if every unplaced model is beaten by another (a cycle of wins), the one with
       the highest accuracy. So the order is by accuracy, except that a model is never listed
       below one it beats (a lower mean can hide a significant win at some magnitudes).
    3. Walk down the ordered list: the first model opens a group of rank 1; each next model
       joins the current group if it is separated from none of its members, and otherwise
       opens a new group whose rank is its position in the list (competition ranking:
       1, 1, 3, ...). So models sharing a rank (``tied``) are pairwise indistinguishable by
       the tests, and a rank step means a significant difference from some model above.

    Alpha controls the family-wise error over one pair's magnitudes, not over all pairs.

    Returns
    -------
    DataFrame
        Columns :data:`RANKING_COLUMNS`, one row per family and model, in rank order;
        ``beats``, ``beaten_by``, ``tied_with`` (the other members of its group) and
        ``crossing`` are lists of model names.
    """
    model_info = model_info or {}
    models = list(models)
    rows = []
    families = dict.fromkeys(pairwise["family"]) if len(pairwise) else dict.fromkeys(summary["family"])
    for family in families:
        part = pairwise.loc[pairwise["family"] == family] if len(pairwise) else pairwise
        beats: dict[str, set[str]] = {m: set() for m in models}
        crossing: dict[str, set[str]] = {m: set() for m in models}
        separated: set[frozenset[str]] = set()
        for (a, b), pair in part.groupby(["model_a", "model_b"], sort=False):
            significant = pair.loc[pair["significant"].astype(bool)]
            a_better = bool((significant["difference"] > 0).any())
            b_better = bool((significant["difference"] < 0).any())
            if a_better or b_better:
                separated.add(frozenset((a, b)))
            if a_better and b_better:
                crossing[a].add(b)
                crossing[b].add(a)
            elif a_better:
                beats[a].add(b)
            elif b_better:
                beats[b].add(a)
        scores = summary.loc[summary["family"] == family].set_index("model")
        accuracy = {m: float(scores.loc[m, "accuracy"]) if m in scores.index else -math.inf for m in models}
        ordered: list[str] = []
        remaining = sorted(models, key=lambda m: (-np.nan_to_num(accuracy[m], nan=-math.inf), models.index(m)))
        while remaining:
            unbeaten = [m for m in remaining if not any(m in beats[o] for o in remaining if o != m)]
            chosen = (unbeaten or remaining)[0]  # the best by accuracy (remaining is sorted)
            ordered.append(chosen)
            remaining.remove(chosen)
        groups: list[list[str]] = []
        rank: dict[str, int] = {}
        for position, model in enumerate(ordered, start=1):
            if groups and not any(frozenset((model, other)) in separated for other in groups[-1]):
                groups[-1].append(model)
                rank[model] = rank[groups[-1][0]]
            else:
                groups.append([model])
                rank[model] = position
        group_of = {m: group for group in groups for m in group}
        by_order = lambda names: sorted(names, key=models.index)  # noqa: E731
        for model in ordered:
            score = scores.loc[model] if model in scores.index else pd.Series(dtype=float)
            info = model_info.get(model) or {}
            rows.append({
                "family": family, "rank": rank[model], "tied": len(group_of[model]) > 1,
                "model": model, "arch": info.get("arch"), "seed": info.get("seed"),
                "n_digits": int(score["n_digits"]) if "n_digits" in score else 0,
                **{key: float(score[key]) if key in score else math.nan for key in RANKING_COLUMNS[7:19]},
                "beats": by_order(beats[model]),
                "beaten_by": by_order(m for m in models if model in beats[m]),
                "tied_with": [m for m in group_of[model] if m != model],
                "crossing": by_order(crossing[model]),
            })
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


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


# ================================================================================ the runs



@dataclass
class Comparison:
    """The models of one or several runs of the same study, merged, with their statistics.

    Built by :func:`compare_runs`. The statistics are computed on first access (and kept).

    Attributes
    ----------
    run_dirs : list of pathlib.Path
    runs : list of dict
        Each run's run.json.
    models : list of str
        Model names, unique across the runs, in run order then study order.
    model_info : dict
        ``{model: {arch, seed, path, checksum, training, run, name_in_run}}``.
    families : dict
        ``{label: {family, unit, random, description, magnitudes, draws, n_digits}}`` in
        study order (run.json's ``families``).
    images : (N, 28, 28) ndarray of uint8
        The clean study digits (digits.npz).
    labels : (N,) ndarray of int64
    ids : (N,) ndarray of str
    results : DataFrame
        The merged results table (model names as in ``models``).
    exemplars : dict
        ``{label: {"magnitudes": (S,), "strips": {image: (S, 28, 28) uint8}}}``: perturbed
        gallery digits from the runs' exemplars.npz (identical across runs, which hold the
        same perturbations).
    notes : list of str
        What the merge did (renamed or deduplicated models), for the report.
    seed : int
        The study seed; every bootstrap here is seeded with it.
    alpha, n_boot, level
        Settings of the tests and intervals.
    """

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
    alpha: float = ALPHA
    n_boot: int = N_BOOT
    level: float = 0.95

    @property
    def name(self) -> str:
        """The study's name (of the first run)."""
        return str(self.runs[0].get("study", {}).get("name") or self.run_dirs[0].name)

    @cached_property
    def curves(self) -> pd.DataFrame:
        """:func:`robust_mnist.metrics.per_magnitude` of every model (the report's curves)."""
        return metrics.per_magnitude(self.results, seed=self.seed, n_boot=self.n_boot, level=self.level)

    @cached_property
    def pairwise(self) -> pd.DataFrame:
        """:func:`pairwise_accuracy` of every pair, family and magnitude (clean included)."""
        return pairwise_accuracy(self.results, self.models, self.alpha, self.n_boot, self.seed, self.level)

    @cached_property
    def digits(self) -> pd.DataFrame:
        """:func:`per_digit_metrics`."""
        return per_digit_metrics(self.results, self.refined)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """:func:`model_summary`, plus each model's clean accuracy as family ``"clean"``."""
        table = model_summary(self.digits, self.n_boot, self.seed, self.level)
        clean = metrics.clean_predictions(self.results)
        clean = stats.grouped_bootstrap_ci(clean, "model", "correct", "mean", self.n_boot, self.level, self.seed)
        clean = clean.rename(columns=lambda c: c.replace("correct", "accuracy")).assign(family=CLEAN)
        table = pd.concat([clean, table], ignore_index=True)
        # Clean first, then the study's order of families and models (not alphabetical).
        families = {f: i for i, f in enumerate([CLEAN, *self.families])}
        models = {m: i for i, m in enumerate(self.models)}
        order = table.assign(_f=table["family"].map(families).fillna(len(families)),
                             _m=table["model"].map(models).fillna(len(models)))
        return order.sort_values(["_f", "_m"], kind="stable").drop(columns=["_f", "_m"]).reset_index(drop=True)

    @cached_property
    def differences(self) -> pd.DataFrame:
        """:func:`paired_differences` per family and pair."""
        return paired_differences(self.digits, self.models, self.n_boot, self.seed, self.level)

    @cached_property
    def _consistency(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return consistency(self.results, self.models, self.n_boot, self.seed, self.level)

    @property
    def consistency_cells(self) -> pd.DataFrame:
        """Error consistency per (family, magnitude, pair) (:func:`consistency`)."""
        return self._consistency[0]

    @property
    def consistency_families(self) -> pd.DataFrame:
        """Error consistency per (family, pair), with intervals (:func:`consistency`)."""
        return self._consistency[1]

    def kappa_matrix(self, families: Sequence[str] | None = None) -> np.ndarray:
        """:func:`kappa_matrix` over the perturbed families (or the given ones)."""
        return kappa_matrix(self.consistency_cells, self.models, families)

    @cached_property
    def seed_spread(self) -> pd.DataFrame:
        """:func:`seed_spread` (empty when no architecture has several seeds)."""
        return seed_spread(self.summary, self.model_info)

    @cached_property
    def architecture_differences(self) -> pd.DataFrame:
        """:func:`architecture_differences`."""
        return architecture_differences(self.summary, self.seed_spread, self.model_info)

    @cached_property
    def ranking(self) -> pd.DataFrame:
        """:func:`rank_models`: clean first, then the families in study order."""
        return rank_models(self.pairwise, self.summary, self.models, self.model_info)


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    alpha: float = ALPHA,
    n_boot: int = N_BOOT,
    level: float = 0.95,
) -> Comparison:
    """Merge the models of one or several complete runs of the same study.

    Reads only the run directories: run.json, digits.npz, the results table
    (:func:`robust_mnist.runner.load_results`) and exemplars.npz. The runs must hold the same
    digits (checksum of digits.npz's images and labels) and the same perturbations (spec
    labels, families, options, magnitudes, draws, digit subsets and every realised
    parameter); models then saw identical perturbed digits and are compared pairwise.

    Model names must be unique: a name that occurs in several runs is prefixed with its run
    directory's name (``"<run>/<model>"``), unless it is the same model file (same checksum),
    whose repeated results are then dropped.

    Raises
    ------
    ComparisonError
        A one-line message naming the runs and what differs; also for a directory that is
        not a complete run.
    """
    from .runner import digits_checksum, load_digits_npz, load_results, read_run_info

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
        digit_sets.append(load_digits_npz(path))
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
    return Comparison(
        run_dirs=paths, runs=runs, models=models, model_info=model_info,
        families=dict(runs[0].get("families", {})),
        images=reference.images, labels=np.asarray(reference.labels, np.int64), ids=reference.ids,
        results=results, exemplars=_merge_exemplars(paths), notes=notes,
        seed=int(runs[0].get("seed", 0)), alpha=alpha, n_boot=n_boot, level=level,
        refined=_merge_refined(paths, runs, renames, notes),
    )


def _merge_refined(
    paths: list[Path], runs: list[dict[str, Any]], renames: list[dict[str, str]], notes: list[str]
) -> pd.DataFrame | None:
    """The runs' refined critical magnitudes, for the families that every run refined alike.

    A family refined in one run and not in another would set bisected values against grid
    values, which favours the refined models: those keep their grid values, with a note.
    """
    from .runner import load_refined

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
        keyed.append((rows.sort_values(_KEYS, kind="stable"), params))
    (rows_a, params_a), (rows_b, params_b) = keyed
    if params_a != params_b:
        return f"realised parameters {params_a} and {params_b}"
    keys_a, keys_b = rows_a[_KEYS].to_numpy(), rows_b[_KEYS].to_numpy()
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
        file = path / "exemplars.npz"
        if not file.is_file():
            continue
        with np.load(file, allow_pickle=False) as npz:
            for label in npz["labels"] if "labels" in npz.files else []:
                label = str(label)
                if f"{label}/strips" not in npz.files:
                    continue
                entry = merged.setdefault(label, {"magnitudes": npz[f"{label}/magnitudes"], "strips": {}})
                if not np.array_equal(entry["magnitudes"], npz[f"{label}/magnitudes"]):
                    continue
                strips = npz[f"{label}/strips"]  # each npz[key] reads the file again: once
                for k, image in enumerate(npz[f"{label}/images"]):
                    entry["strips"].setdefault(int(image), strips[k])
    return merged


# ========================================================================== the report

#: Digits in each family's disagreement gallery.
GALLERY_SIZE = 6

#: The methods section of the comparison report.
METHODS = (
    ("Paired design", "Every model saw exactly the same perturbed digits (the runner derives each "
     "perturbation's randomness from the study seed, the family, the magnitude and the draw only), so "
     "two models' outcomes on a digit form a pair and differences are tested on the pairs."),
    ("Accuracy difference and McNemar's test", "At each family and magnitude, the difference between "
     "two models' accuracies, tested with McNemar's exact test: of the perturbed digits exactly one of "
     "the two models gets right (b for the first, c for the second), the p-value is the two-sided "
     "binomial test of b out of b + c at 1/2 (1 when b + c = 0). For random families with several "
     "draws per digit, the draws of a digit are not independent, so the digit is the unit: for each "
     "digit d = (draws only the first model got right) − (draws only the second got right), and the "
     "p-value is the exact probability, over all 2^K ways of flipping the signs of the K non-zero d, "
     "that |Σ ±|d|| reaches the observed |Σ d| (a sign-flip test; with one draw per digit it is "
     "McNemar's exact test). The bootstrap interval beside it also resamples whole digits."),
    ("Holm's correction", "For each pair of models, the p-values of a family's magnitudes are adjusted "
     "with Holm's step-down procedure: sorted ascending, p(i) is multiplied by (m − i + 1), and the "
     "adjusted values are made non-decreasing (capped at 1). A difference is significant (✱) when its "
     "adjusted p-value is at most 5%; the family-wise error rate over the magnitudes is then at most 5%."),
    ("Ranking", "Within a family, models are ordered by accuracy averaged over the family's magnitudes, "
     "except that a model is never listed below one it beats (see below). Two models are separated when "
     "their accuracies differ significantly (after Holm) at one magnitude at least. Walking down the order, a model shares the rank of the group above it (=) when it is "
     "separated from none of the group's members, and otherwise starts a new rank equal to its position "
     "(1, 1, 3, ...): models sharing a rank are pairwise indistinguishable by the tests. Model A beats "
     "model B when every significant difference between them favours A; when some favour each, the "
     "pair is a crossing (better at some magnitudes, worse at others)."),
    ("Mean accuracy over magnitudes", "A family's accuracy averaged over its non-zero magnitudes (the "
     "clean digit excluded), draws averaged within a digit."),
    ("Swing, flip rate, critical magnitude", "As in the study report: the range of a digit's "
     "true-class probability along the sweep; the share of non-zero magnitudes at which its prediction "
     "differs from the clean one; the smallest magnitude that changes it (\"never\" if none)."),
    ("Paired bootstrap differences", "Differences in mean accuracy, mean swing, mean flip rate and "
     "median critical magnitude between two models, with 95% percentile intervals from resampling the "
     f"digits ({N_BOOT} resamples, seeded with the study seed) and recomputing both models' statistic on "
     "the same resample. Significant (✱) when the interval excludes 0."),
    ("Error consistency κ", "Geirhos et al. (2020): Cohen's kappa of two models' per-digit "
     "correctness, κ = (c_obs − c_exp) / (1 − c_exp), with c_obs the share of digits on which both are "
     "right or both wrong and c_exp = p₁p₂ + (1 − p₁)(1 − p₂) what independent models with the same "
     "accuracies would reach. 1: the same errors; 0: unrelated errors; negative: different errors. "
     "Computed per family and magnitude and averaged over magnitudes (and over families in the "
     "matrix), so that the shared fall in accuracy with severity does not count as consistency."),
    ("Seed spread", "For an architecture trained with several seeds, the range (maximum − minimum) and "
     "standard deviation of each metric across its seeds: what retraining alone changes. A difference "
     "between architectures (each the mean of its seeds) within that range is not evidence that the "
     "architecture matters. With few seeds the range underestimates the spread (two seeds give a single "
     "difference), so exceeding it is necessary, not sufficient, for a real architecture effect."),
    ("Disagreement", "For one perturbed digit, the mean over pairs of models of the total-variation "
     "distance between their probability vectors, ½ Σ|p − q|: 0 when all models give the same "
     "probabilities, 1 when each pair is certain of different classes."),
)


def default_comparison_path(comparison: Comparison) -> Path:
    """``reports/<slug of the study name>-compare.html``, relative to the current directory."""
    from .report import _slug

    return Path("reports") / f"{_slug(comparison.name)}-compare.html"


def write_comparison_report(comparison: Comparison, out: str | os.PathLike | None = None) -> Path:
    """Write the comparison report: one self-contained HTML file (see :mod:`robust_mnist.report`).

    Parameters
    ----------
    comparison : Comparison
        From :func:`compare_runs`.
    out : path-like, optional
        Default :func:`default_comparison_path`.

    Returns
    -------
    pathlib.Path
    """
    from .report import render_page

    out = Path(out) if out is not None else default_comparison_path(comparison)
    return render_page("compare.html.j2", comparison_context(comparison), out)


def _pp(value: Any, digits: int = 1) -> str:
    """A difference of fractions in percentage points, signed: ``+3.2 pp``."""
    from .report import _finite

    if not _finite(value):
        return "–"
    return f"{100 * float(value):+.{digits}f} pp".replace("-", "−")


def _signed(value: Any, digits: int = 2) -> str:
    from .report import _finite

    if not _finite(value):
        return "–"
    return f"{float(value):+.{digits}f}".replace("-", "−")


def _difference_cell(row: Mapping[str, Any], metric: str, as_points: bool) -> Any:
    """A table cell with a signed difference, its interval, and ✱ when it excludes 0."""
    from .report import Cell, _finite

    value, low, high = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
    show = _pp if as_points else _signed
    star = " ✱" if row.get(f"{metric}_significant") else ""
    if not _finite(value):
        return Cell("–", None)
    note = f"[{show(low)}, {show(high)}]" if _finite(low) and _finite(high) else ""
    if as_points:
        note = note.replace(" pp", "")
    return Cell(show(value) + star, float(value), note)


def _critical_text(value: Any, unit: str) -> str:
    from .report import magnitude_text

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "never" if np.isinf(value) else magnitude_text(value, unit)


def _critical_estimate(row: Mapping[str, Any], unit: str) -> Any:
    from .report import Cell, _finite

    value = row.get("critical_magnitude", math.nan)
    low, high = row.get("critical_magnitude_low"), row.get("critical_magnitude_high")
    sort = 1e300 if value is not None and np.isinf(value) else (float(value) if _finite(value) else None)
    note = f"[{_critical_text(low, unit)}, {_critical_text(high, unit)}]" if low is not None and not pd.isna(low) else ""
    return Cell(_critical_text(value, unit), sort, note)


def _family_title(label: str) -> str:
    return "clean digits" if label == CLEAN else label


def header_section(comparison: Comparison) -> dict[str, Any]:
    """The masthead: runs, models (with their training record), data, versions."""
    from .report import Cell, Table, _data_text, _date, _duration, number, percent

    first = comparison.runs[0]
    models = Table([("Model", False), ("Architecture", False), ("Seed", True),
                    ("Test accuracy", True), ("Val. loss", True), ("Epochs", True), ("Checksum", False)],
                   caption="Test accuracy, validation loss and epochs from each model's training record "
                   "(the full MNIST test set), when it came from training.")
    for name in comparison.models:
        info = comparison.model_info[name]
        training = info.get("training") or {}
        seed = info.get("seed")
        models.rows.append([
            Cell(name, name),
            Cell(str(info.get("arch") or "file"), str(info.get("arch") or "")),
            Cell("–" if seed is None else str(seed), None if seed is None else int(seed)),
            Cell(percent(training.get("test_accuracy"), 2), training.get("test_accuracy")),
            Cell(number(training.get("val_loss"), 4), training.get("val_loss")),
            Cell(str(training.get("stopped_epoch", "–")), training.get("stopped_epoch")),
            Cell((info.get("checksum") or "–")[:12], info.get("checksum") or ""),
        ])
    runs = [{"path": str(path), "name": run.get("study", {}).get("name", ""),
             "date": _date(run), "duration": _duration(run)}
            for path, run in zip(comparison.run_dirs, comparison.runs)]
    versions = first.get("versions", {})
    return {
        "name": comparison.name,
        "description": first.get("study", {}).get("description", ""),
        "runs": runs,
        "models": models,
        "data": _data_text(first),
        "data_checksum": first.get("data", {}).get("checksum", ""),
        "families": len(comparison.families),
        "seed": comparison.seed,
        "versions": " · ".join(f"{k} {v}" for k, v in versions.items() if v),
        "notes": list(comparison.notes),
    }


def _rank_text(row: Mapping[str, Any]) -> str:
    return f"={row['rank']}" if row["tied"] else str(row["rank"])


def overview_table(comparison: Comparison) -> Any:
    """Model by family: each cell the model's rank and its mean accuracy over magnitudes."""
    from .report import Cell, Table, percent

    families = [CLEAN] + [f for f in comparison.families if f in set(comparison.ranking["family"])]
    table = Table([("Model", False)] + [(_family_title(f), True) for f in families],
                  caption="Rank within each family (= marks models the tests cannot separate) and "
                  "accuracy: on the clean digits, and averaged over each family's magnitudes. Click a "
                  "header to sort by that family.")
    ranking = comparison.ranking.set_index(["family", "model"])
    for model in comparison.models:
        cells = [Cell(model, model)]
        for family in families:
            if (family, model) not in ranking.index:
                cells.append(Cell("–"))
                continue
            row = ranking.loc[(family, model)]
            cells.append(Cell(f"{_rank_text(row)} · {percent(row['accuracy'])}", float(row["accuracy"])))
        table.rows.append(cells)
    return table


def ranking_table(comparison: Comparison, family: str) -> Any:
    """One family's ranking with intervals and what each model significantly beats."""
    from .report import Cell, Table, estimate_cell

    unit = comparison.families.get(family, {}).get("unit", "")
    clean = family == CLEAN
    columns = [("Rank", True), ("Model", False), ("Accuracy" if clean else "Mean accuracy", True)]
    if not clean:
        columns += [("Mean swing", True), ("Flip rate", True), ("Median critical", True)]
    columns += [("Beats", False), ("Crossing with", False)]
    table = Table(columns, caption=(
        "Ordered by accuracy, never below a model it beats; = marks a shared rank: models the tests cannot separate at any magnitude "
        "(McNemar's exact test, Holm's correction across the family's magnitudes; see Methods). Beats: "
        "every significant difference favours this model; crossing: better at some magnitudes, worse at "
        "others. Intervals: 95% bootstrap over digits."))
    for _, row in comparison.ranking.loc[comparison.ranking["family"] == family].iterrows():
        cells = [Cell(_rank_text(row), int(row["rank"])), Cell(row["model"], row["model"]),
                 estimate_cell(row, "accuracy", True)]
        if not clean:
            cells += [estimate_cell(row, "swing"), estimate_cell(row, "flip_rate", True),
                      _critical_estimate(row, unit)]
        cells += [Cell(", ".join(row["beats"]) or "–"), Cell(", ".join(row["crossing"]) or "–")]
        table.rows.append(cells)
    return table


def tests_table(comparison: Comparison, family: str) -> Any:
    """Every pair at every magnitude: accuracies, difference, discordant counts, p-values."""
    from .report import Cell, Table, magnitude_text, percent

    unit = comparison.families.get(family, {}).get("unit", "")
    table = Table([("Pair (A − B)", False), ("Magnitude", True), ("Acc. A", True), ("Acc. B", True),
                   ("A − B", True), ("A only", True), ("B only", True), ("p", True), ("Holm p", True)],
                  caption="A only / B only: perturbed digits that only model A / only model B gets right "
                  "(McNemar's discordant pairs). p: McNemar's exact test, with digits as units when they have "
                  "several draws (see Methods); Holm p: adjusted across the "
                  "family's magnitudes for this pair; ✱: significant at 5%.")
    part = comparison.pairwise.loc[comparison.pairwise["family"] == family]
    for _, row in part.iterrows():
        star = " ✱" if row["significant"] else ""
        table.rows.append([
            Cell(f"{row['model_a']} − {row['model_b']}", f"{row['model_a']} {row['model_b']}"),
            Cell(magnitude_text(row["magnitude"], unit) if family != CLEAN else "clean", float(row["magnitude"])),
            Cell(percent(row["accuracy_a"]), float(row["accuracy_a"])),
            Cell(percent(row["accuracy_b"]), float(row["accuracy_b"])),
            _difference_cell({**row, "difference_significant": row["significant"]}, "difference", True),
            Cell(str(int(row["a_only"])), int(row["a_only"])), Cell(str(int(row["b_only"])), int(row["b_only"])),
            Cell(_p_text(row["p_value"]), float(row["p_value"])),
            Cell(_p_text(row["p_holm"]) + star, float(row["p_holm"])),
        ])
    return table


def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def differences_table(comparison: Comparison, family: str) -> Any:
    """Per pair: paired bootstrap differences and error consistency."""
    from .report import Cell, Table, interval, number

    table = Table([("Pair (A − B)", False), ("Δ mean accuracy", True), ("Δ mean swing", True),
                   ("Δ flip rate", True), ("Δ median critical", True), ("Error consistency κ", True)],
                  caption="Differences A − B with 95% paired bootstrap intervals over digits (✱: the "
                  "interval excludes 0). κ: error consistency averaged over the family's magnitudes. "
                  "Lower swing and flip rate and a higher critical magnitude mean more stable.")
    part = comparison.differences.loc[comparison.differences["family"] == family]
    kappas = comparison.consistency_families.set_index(["family", "model_a", "model_b"])
    for _, row in part.iterrows():
        key = (family, row["model_a"], row["model_b"])
        kappa = kappas.loc[key] if key in kappas.index else None
        table.rows.append([
            Cell(f"{row['model_a']} − {row['model_b']}", f"{row['model_a']} {row['model_b']}"),
            _difference_cell(row, "accuracy", True), _difference_cell(row, "swing", False),
            _difference_cell(row, "flip_rate", True), _difference_cell(row, "critical_magnitude", False),
            Cell(number(kappa["kappa"]), float(kappa["kappa"]) if kappa is not None and np.isfinite(kappa["kappa"]) else None,
                 interval(kappa["kappa_low"], kappa["kappa_high"]) if kappa is not None else ""),
        ])
    return table


def kappa_section(comparison: Comparison) -> dict[str, Any]:
    """The model-by-model error-consistency matrices: all families, then each."""
    def grid(families: Sequence[str] | None) -> list[list[dict[str, Any]]]:
        matrix = comparison.kappa_matrix(families)
        rows = []
        for i, _ in enumerate(comparison.models):
            cells = []
            for j, _ in enumerate(comparison.models):
                value = matrix[i, j]
                cells.append({"text": "–" if not np.isfinite(value) else f"{value:.2f}".replace("-", "−"),
                              "style": "" if i == j else _kappa_colour(value), "diagonal": i == j})
            rows.append(cells)
        return rows

    perturbed = [f for f in comparison.families if f in set(comparison.consistency_cells["family"])]
    return {
        "models": comparison.models,
        "overall": grid(None),
        "families": [(label, grid([label])) for label in perturbed],
    }


def _kappa_colour(value: float) -> str:
    """Background of a κ cell: white at 0, blue towards 1, vermillion towards −1."""
    if not np.isfinite(value):
        return "background: #ffffff"
    rgb = np.array([0, 114, 178]) if value >= 0 else np.array([213, 94, 0])
    share = min(abs(float(value)), 1.0) * 0.75
    colour = np.rint(255 - share * (255 - rgb)).astype(int)
    ink = "#ffffff" if share > 0.45 else "#1d2125"
    return f"background: #{colour[0]:02x}{colour[1]:02x}{colour[2]:02x}; color: {ink}"


def seed_section(comparison: Comparison) -> dict[str, Any] | None:
    """Seed spread beside the differences between architectures (None without several seeds)."""
    from .report import Cell, Table

    spread = comparison.seed_spread
    if spread.empty:
        return None
    titles = {"accuracy": "accuracy", "swing": "mean swing", "flip_rate": "flip rate",
              "critical_magnitude": "median critical"}
    points = {"accuracy", "flip_rate"}

    def show(metric: str, value: float) -> str:
        if metric in points:
            return f"{100 * value:.1f}%" if np.isfinite(value) else "–"
        return _critical_text(value, "") if metric == "critical_magnitude" else (f"{value:.3f}" if np.isfinite(value) else "–")

    def gap(metric: str, value: float) -> str:
        return _pp(value).replace("+", "") if metric in points else (f"{value:.3f}" if np.isfinite(value) else "–")

    seeds = Table([("Family", False), ("Metric", False), ("Architecture", False), ("Per seed", False),
                   ("Range", True), ("SD", True)],
                  caption="Each metric for each seed of an architecture trained with several seeds, its "
                  "range (max − min) and standard deviation across seeds.")
    for _, row in spread.iterrows():
        per_seed = ", ".join(f"seed {s}: {show(row['metric'], v)}" for s, v in zip(row["seeds"], row["values"]))
        seeds.rows.append([
            Cell(row["family"], row["family"]), Cell(titles[row["metric"]], row["metric"]),
            Cell(row["arch"], row["arch"]), Cell(per_seed),
            Cell(gap(row["metric"], row["range"]), float(row["range"]) if np.isfinite(row["range"]) else None),
            Cell(gap(row["metric"], row["sd"]), float(row["sd"]) if np.isfinite(row["sd"]) else None),
        ])
    versus = Table([("Family", False), ("Metric", False), ("A − B", False), ("Difference", True),
                    ("Seed range", True), ("Beyond seed noise", False)],
                   caption="Difference between architectures (each the mean of its seeds) beside the "
                   "spread between seeds of one architecture (the larger of the two when both have "
                   "several seeds; otherwise that of the architecture named in brackets).")
    for _, row in comparison.architecture_differences.iterrows():
        metric = row["metric"]
        difference = _pp(row["difference"]) if metric in points else _signed(row["difference"], 3)
        reference = ("" if row["seed_reference"] in (row["arch_a"], row["arch_b"], None)
                     else f" ({row['seed_reference']})")
        versus.rows.append([
            Cell(row["family"], row["family"]), Cell(titles[metric], metric),
            Cell(f"{row['arch_a']} − {row['arch_b']}"),
            Cell(difference, float(row["difference"]) if np.isfinite(row["difference"]) else None),
            Cell(gap(metric, row["seed_range"]) + reference,
                 float(row["seed_range"]) if np.isfinite(row["seed_range"]) else None),
            Cell("yes" if row["beyond_seed_noise"] else "no", "yes" if row["beyond_seed_noise"] else "no"),
        ])
    return {"seeds": seeds, "versus": versus}


def disagreement_gallery(comparison: Comparison, label: str, size: int = GALLERY_SIZE) -> Any:
    """The perturbed digits of a family on which the models disagree most, side by side.

    Candidates are the perturbed gallery digits stored in the runs' exemplars.npz (draw 0 at
    every magnitude of the sweep, the clean digit included). Each candidate (digit, magnitude)
    is scored by :func:`disagreement` of the models' probability vectors from the results
    table; the ``size`` highest-scoring digits are shown, each at its most disputed magnitude:
    the same image once per model, with that model's ten probabilities under it.

    Returns
    -------
    robust_mnist.report.Gallery or None
        None with fewer than two models or no stored images for the family.
    """
    from . import plots
    from .report import COLUMN_PIXELS, Gallery, magnitude_text, make_strip, strip_scale

    entry = comparison.exemplars.get(label)
    models = comparison.models
    if entry is None or not entry["strips"] or len(models) < 2:
        return None
    unit = comparison.families.get(label, {}).get("unit", "")
    sweep = np.asarray(entry["magnitudes"], dtype=np.float64)
    images = np.array(sorted(entry["strips"]), dtype=np.int64)
    columns = ["model", "magnitude", "image", *metrics.PROBABILITY_COLUMNS]
    results = comparison.results
    perturbed = results.loc[(results["family"] == label) & (results["draw"] == 0)
                            & results["image"].isin(images) & results["magnitude"].isin(sweep), columns]
    clean = results.loc[(results["family"] == CLEAN) & results["image"].isin(images), columns]
    frame = pd.concat([perturbed, clean] if 0.0 in sweep else [perturbed], ignore_index=True)
    frame = frame.loc[frame["model"].isin(models)]
    wide = frame.pivot_table(index=["image", "magnitude"], columns="model",
                             values=metrics.PROBABILITY_COLUMNS, aggfunc="first").dropna()
    if wide.empty:
        return None
    probabilities = np.stack([wide.xs(m, axis=1, level="model")[metrics.PROBABILITY_COLUMNS].to_numpy(np.float64)
                              for m in models])  # (M, candidates, 10)
    score = disagreement(probabilities)
    candidates = wide.index.to_frame(index=False).assign(score=score, position=np.arange(len(score)))
    best = (candidates.sort_values(["score", "image", "magnitude"], ascending=[False, True, True], kind="stable")
            .drop_duplicates("image").head(size))
    # Digits as large as the text column allows (up to 4x): the columns are models, few.
    fits = [k for k in range(2, 5) if len(models) * plots.strip_geometry(k)["cell"] <= COLUMN_PIXELS]
    scale = max(fits) if fits else strip_scale(len(models))
    strips = []
    for _, row in best.iterrows():
        image, magnitude = int(row["image"]), float(row["magnitude"])
        step = int(np.flatnonzero(sweep == magnitude)[0])
        pixels = np.repeat(entry["strips"][image][step][None], len(models), axis=0)
        label_true = int(comparison.labels[image])
        where = "clean" if magnitude == 0 else magnitude_text(magnitude, unit)
        strips.append(make_strip(
            pixels, probabilities[:, int(row["position"])], label_true,
            title=str(comparison.ids[image]),
            details=[f"true class {label_true}", where, f"disagreement {row['score']:.2f}"],
            reference=label_true, scale=scale,
        ))
    if not strips:
        return None
    cell = strips[0].cell
    return Gallery(
        title="Where the models disagree most",
        description="The same perturbed digit in every column, one column per model, at the magnitude "
        "where the models' probabilities differ most (disagreement: mean pairwise total-variation distance).",
        header=list(models), cell=cell, strips=strips,
    )


def findings(comparison: Comparison) -> list[list[tuple[str, str]]]:
    """Headline sentences: the best model per family and whether the lead is significant."""
    from .report import interval, percent

    sentences = []
    if len(comparison.models) < 2:
        return sentences
    for family in [CLEAN, *comparison.families]:
        part = comparison.ranking.loc[comparison.ranking["family"] == family]
        if len(part) < 2:
            continue
        first, second = part.iloc[0], part.iloc[1]
        where = "On the clean digits" if family == CLEAN else f"Under {family}"
        measure = "" if family == CLEAN else " averaged over its magnitudes"
        pair = comparison.pairwise.loc[(comparison.pairwise["family"] == family)
                                       & comparison.pairwise["model_a"].isin([first["model"], second["model"]])
                                       & comparison.pairwise["model_b"].isin([first["model"], second["model"]])]
        wins = int(pair["significant"].sum())
        sentence = [(f"{where}, ", ""), (first["model"], "strong"), (" is most accurate: ", ""),
                    (percent(first["accuracy"]), "num"),
                    (" " + interval(first["accuracy_low"], first["accuracy_high"], True), "ci"),
                    (f"{measure}, against ", ""), (percent(second["accuracy"]), "num"),
                    (f" for {second['model']}", "")]
        if second["model"] in first["beats"] and family == CLEAN:
            sentence.append((f"; significantly better (McNemar p = {_p_text(float(pair['p_value'].iloc[0]))}).", ""))
        elif second["model"] in first["beats"]:
            sentence.append((f"; significantly better at {wins} of {len(pair)} magnitude{'s' if len(pair) != 1 else ''} after Holm's correction.", ""))
        else:
            sentence.append(("; the tests cannot separate them (a tie).", ""))
        sentences.append(sentence)
    spread = comparison.seed_spread
    if not spread.empty:
        accuracy = spread.loc[(spread["metric"] == "accuracy") & (spread["family"] != CLEAN)]
        versus = comparison.architecture_differences
        versus = versus.loc[(versus["metric"] == "accuracy") & (versus["family"] != CLEAN)]
        for arch, part in accuracy.groupby("arch", sort=False):
            largest = part.loc[part["range"].idxmax()]
            sentence = [("Seed noise: ", "strong"), (f"the {int(largest['n_seeds'])} seeds of {arch} differ in mean "
                        "accuracy by up to ", ""), (_pp(largest["range"]).replace("+", ""), "num"),
                        (f" (under {largest['family']})", "")]
            if len(versus):
                beyond = int(versus["beyond_seed_noise"].sum())
                sentence.append((f"; {beyond} of {len(versus)} differences between architectures "
                                 "(family by family) are larger than the seed spread.", ""))
            else:
                sentence.append((".", ""))
            sentences.append(sentence)
    matrix = comparison.kappa_matrix()
    pairs = [(matrix[i, j], comparison.models[i], comparison.models[j])
             for i, j in itertools.combinations(range(len(comparison.models)), 2) if np.isfinite(matrix[i, j])]
    if len(pairs) >= 2:
        high, low = max(pairs), min(pairs)
        sentences.append([("Error consistency: ", "strong"), (f"{high[1]} and {high[2]} err most alike (κ = ", ""),
                          (f"{high[0]:.2f}", "num"), (f"), {low[1]} and {low[2]} least (κ = ", ""),
                          (f"{low[0]:.2f}".replace("-", "−"), "num"), (").", "")])
    return sentences


def comparison_context(comparison: Comparison) -> dict[str, Any]:
    """Everything ``compare.html.j2`` renders."""
    from . import plots
    from .report import _slug, magnitude_text, svg_data_uri

    curves = comparison.curves
    families = []
    for index, label in enumerate(comparison.families):
        if label not in set(comparison.results["family"]):
            continue
        about = comparison.families[label]
        data = curves.loc[curves["family"] == label]
        data = data.assign(_order=data["model"].map({m: i for i, m in enumerate(comparison.models)}))
        data = data.sort_values(["_order", "magnitude"], kind="stable")
        families.append({
            "label": label,
            "grid": ", ".join(magnitude_text(m, about.get("unit", ""), short=True) for m in about.get("magnitudes", [])),
            "anchor": f"family-{index}-{_slug(label).lower()}",
            "about": about,
            "curves": svg_data_uri(plots.family_curves(data, unit=about.get("unit", ""), hue="model")),
            "ranking": ranking_table(comparison, label),
            "differences": differences_table(comparison, label),
            "tests": tests_table(comparison, label),
            "gallery": disagreement_gallery(comparison, label),
        })
    seeds = seed_section(comparison)
    toc = [("findings", "Findings", []), ("overview", "Overview", []), ("clean", "Clean digits", []),
           ("families", "Families", [(f["anchor"], f["label"]) for f in families]),
           ("consistency", "Error consistency", [])]
    if seeds is not None:
        toc.append(("seeds", "Seed noise", []))
    toc.append(("methods", "Methods", []))
    return {
        "title": f"{comparison.name}: model comparison",
        "header": header_section(comparison),
        "findings": findings(comparison),
        "overview": overview_table(comparison),
        "clean": {"ranking": ranking_table(comparison, CLEAN), "tests": tests_table(comparison, CLEAN)},
        "families": families,
        "kappa": kappa_section(comparison),
        "seeds": seeds,
        "methods": METHODS,
        "toc": toc,
        "alpha": comparison.alpha,
        "palette": {"true": plots.TRUE_COLOUR, "wrong": plots.WRONG_COLOUR, "other": plots.OTHER_COLOUR},
    }
