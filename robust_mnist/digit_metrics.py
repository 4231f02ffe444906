"""Per-digit instability metrics, and instability set against a digit's properties.

Along a family's sweep (see :mod:`robust_mnist.metrics` for the results table and its
conventions), each digit gets its :func:`swing` and total variation and its
:func:`critical_magnitudes` (refined by bisection where the run did it); morphs have their own
flip points (:mod:`robust_mnist.morph_metrics`). These per-digit values are then set
against the digit's ambiguity, morphometrics or class (:func:`ambiguity_stratification`,
:func:`instability_correlation`, :func:`per_class`, :func:`pooled_instability`), and
:func:`summary_table` condenses a run into the table the ``summary`` command prints. Pure
functions of tables: no file, no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .metrics import (
    AMBIGUITY,
    CELL,
    DIGIT,
    PROBABILITY_COLUMNS,
    RULES,
    SWING_COLUMNS,
    check_results,
    clean_predictions,
    family_sweeps,
    probability_matrix,
    sweeps_for,
)
from .stats import grouped_bootstrap_ci, grouped_correlation_ci

def _cells(sweeps: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per (model, family, image, magnitude): the mean of ``columns`` over draws."""
    return sweeps.groupby(DIGIT + ["magnitude"], sort=True)[list(columns)].mean().reset_index()


# --------------------------------------------------------------------------------------------
# Per digit: swing, total variation
# --------------------------------------------------------------------------------------------


def swing(results: pd.DataFrame, sweeps: pd.DataFrame | None = None, total_variation: bool = True) -> pd.DataFrame:
    """Per digit and family: how far the probabilities move along the family's sweep.

    With the sweep ordered by magnitude and including the clean prediction (magnitude 0), and
    ``p_j`` the probability vector at the j-th magnitude averaged over draws (so for random
    families these measure the systematic change of the mean prediction, not draw-to-draw
    noise):

    - ``swing = max_j p_j[y] - min_j p_j[y]``, the range of the true-class probability, in
      [0, 1];
    - ``total_variation = sum_{j=2..n} 0.5 * ||p_j - p_{j-1}||_1``, the path length of the
      probability vector in total-variation distance, in [0, n - 1] (each step in [0, 1]);
    - ``flip_rate``: the fraction of non-zero magnitudes at which the prediction differs from
      the clean one (draw-averaged), and ``accuracy`` likewise the fraction correct.

    Parameters
    ----------
    results : DataFrame
        The results table.
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.
    total_variation : bool
        Whether to compute ``total_variation`` (most of the cost: it averages every
        probability over the draws).

    Returns
    -------
    DataFrame
        One row per (model, family, image), sorted: ``model, family, image, label,
        clean_pred, n_magnitudes, p_true_min, p_true_max, swing, total_variation, flip_rate,
        accuracy`` (the last two NaN when the sweep has no non-zero magnitude; no
        ``total_variation`` without ``total_variation``).
    """
    check_results(results)
    return _swing(sweeps_for(results, sweeps, SWING_COLUMNS), total_variation)


def _sweep_cells(sweeps: pd.DataFrame, total_variation: bool = True) -> pd.DataFrame:
    """Per digit and magnitude of :func:`family_sweeps`' rows: ``label``, ``clean_pred``,
    ``p_true``, ``correct``, ``flipped`` averaged over the draws, and with ``total_variation``
    the probabilities too and ``tv_step``, the step from the previous magnitude."""
    sweeps = sweeps.assign(
        correct=(sweeps["pred"] == sweeps["label"]).astype(np.float64),
        flipped=(sweeps["pred"] != sweeps["clean_pred"]).astype(np.float64),
    )
    probabilities = PROBABILITY_COLUMNS if total_variation else []
    cells = _cells(sweeps, ["label", "clean_pred", "p_true", "correct", "flipped", *probabilities])
    if total_variation:
        codes = cells.groupby(DIGIT, sort=True).ngroup().to_numpy()
        p = probability_matrix(cells)
        step = 0.5 * np.abs(np.diff(p, axis=0)).sum(axis=1)
        cells["tv_step"] = np.r_[0.0, np.where(codes[1:] == codes[:-1], step, 0.0)]
    return cells


def _swing(sweeps: pd.DataFrame, total_variation: bool = True, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`swing` of the rows of :func:`family_sweeps` (with ``SWING_COLUMNS``), or of
    their :func:`_sweep_cells` when the caller has them."""
    cells = _sweep_cells(sweeps, total_variation) if cells is None else cells
    nonzero = cells["magnitude"] != 0
    cells = cells.assign(correct=cells["correct"].where(nonzero), flipped=cells["flipped"].where(nonzero))
    path = {"total_variation": ("tv_step", "sum")} if "tv_step" in cells else {}
    table = cells.groupby(DIGIT, sort=True).agg(
        label=("label", "first"),
        clean_pred=("clean_pred", "first"),
        n_magnitudes=("magnitude", "size"),
        p_true_min=("p_true", "min"),
        p_true_max=("p_true", "max"),
        **path,
        flip_rate=("flipped", "mean"),
        accuracy=("correct", "mean"),
    ).reset_index()
    table.insert(table.columns.get_loc("p_true_max") + 1, "swing", table["p_true_max"] - table["p_true_min"])
    return table.astype({"label": np.int64, "clean_pred": np.int64, "n_magnitudes": np.int64})


def swing_summary(
    results: pd.DataFrame, seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> pd.DataFrame:
    """Mean swing and total variation per model and family, with intervals over digits.

    ``swing = 1/m sum_i swing_i`` and ``total_variation = 1/m sum_i TV_i`` over the ``m``
    digits of :func:`swing`.

    Returns
    -------
    DataFrame
        ``model, family, n_digits, swing, swing_low, swing_high, total_variation,
        total_variation_low, total_variation_high``.
    """
    return grouped_bootstrap_ci(
        swing(results), ["model", "family"], ["swing", "total_variation"], "mean", n_boot, level, seed
    )


# --------------------------------------------------------------------------------------------
# Critical magnitudes
# --------------------------------------------------------------------------------------------


def critical_magnitudes(
    results: pd.DataFrame,
    rule: str = "majority",
    refined: pd.DataFrame | None = None,
    sweeps: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per digit and family: the smallest magnitude at which the prediction changes.

    A grid point ``m != 0`` *flips* a digit when the prediction differs from the clean one:
    with several draws, when more than half of them do (``rule="majority"``) or when any does
    (``rule="any"``); with one draw the rules agree. Then ::

        critical_magnitude = min { |m| : m flips the digit },   +inf if none does

    For signed families both sides count (the smaller distance from 0 on either side), and
    ``signed_magnitude`` tells the side (on a tie, the negative one). ``bracket_magnitude`` is
    the grid point next to it towards 0 on the same side (0 if none): the prediction there is
    still the clean one, so the change happens in ``(bracket, signed]``.

    Parameters
    ----------
    results : DataFrame
        The results table.
    rule : {"majority", "any"}
    refined : DataFrame, optional
        Critical magnitudes refined between grid points, as the runner computes them with the
        model (:func:`robust_mnist.runner.refine.refine_sweep`; metrics stay pure): columns
        ``model, family, image, high``, ``high`` a signed magnitude in ``[bracket_magnitude,
        signed_magnitude]`` of a digit that flips. It replaces ``signed_magnitude``, its
        absolute value ``critical_magnitude``, and ``refined`` is True for that digit.
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    DataFrame
        One row per (model, family, image), sorted: ``model, family, image, label,
        clean_pred, critical_magnitude, signed_magnitude, bracket_magnitude, refined``
        (NaN signed and bracket magnitudes for digits that never flip).

    Raises
    ------
    ValueError
        On an unknown rule, or a refined value for a digit that does not flip on the grid
        or outside its bracket.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not supported; use one of {RULES}")
    check_results(results)
    return _critical(sweeps_for(results, sweeps, ["label", "clean_pred", "pred"]), rule, refined)


def _critical(sweeps: pd.DataFrame, rule: str, refined: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`critical_magnitudes` of the rows of :func:`family_sweeps`."""
    digits = sweeps.groupby(DIGIT, sort=True).agg(
        label=("label", "first"), clean_pred=("clean_pred", "first")
    ).reset_index()
    sweeps = sweeps.loc[sweeps["magnitude"] != 0, DIGIT + ["magnitude", "pred", "clean_pred"]]
    cells = sweeps.assign(flipped=(sweeps["pred"] != sweeps["clean_pred"]).astype(np.float64))
    cells = cells.groupby(DIGIT + ["magnitude"], sort=True)["flipped"].mean().reset_index()
    cells["size"] = cells["magnitude"].abs()
    flips = cells.loc[cells["flipped"] > 0.5] if rule == "majority" else cells.loc[cells["flipped"] > 0]
    first = flips.sort_values(DIGIT + ["size", "magnitude"], kind="stable").drop_duplicates(DIGIT)
    first = first[DIGIT + ["magnitude", "size"]].rename(
        columns={"magnitude": "signed_magnitude", "size": "critical_magnitude"}
    )

    # The grid point before the critical one on its side: same sign, smaller size.
    below = cells[DIGIT + ["magnitude", "size"]].merge(first, on=DIGIT)
    below = below.loc[
        (np.sign(below["magnitude"]) == np.sign(below["signed_magnitude"]))
        & (below["size"] < below["critical_magnitude"])
    ]
    below = below.sort_values(DIGIT + ["size"], kind="stable").drop_duplicates(DIGIT, keep="last")
    below = below[DIGIT + ["magnitude"]].rename(columns={"magnitude": "bracket_magnitude"})
    first = first.merge(below, on=DIGIT, how="left")
    first["bracket_magnitude"] = first["bracket_magnitude"].fillna(0.0)

    table = digits.merge(first, on=DIGIT, how="left")
    table["critical_magnitude"] = table["critical_magnitude"].fillna(np.inf)
    table["refined"] = False
    if refined is not None and len(refined):
        # Only the models and families at hand (a caller may pass a part of the results).
        refined = refined.merge(table[["model", "family"]].drop_duplicates(), on=["model", "family"])
        found = table.reset_index().merge(refined[DIGIT + ["high"]], on=DIGIT, how="inner")
        low, grid, value = (found[c].to_numpy(np.float64) for c in ("bracket_magnitude", "signed_magnitude", "high"))
        wrong = ~(np.minimum(low, grid) <= value) | ~(value <= np.maximum(low, grid))  # NaN grid: no flip
        if len(found) < len(refined) or wrong.any():
            bad = found.loc[wrong].iloc[0] if wrong.any() else None
            if bad is None:
                where = "a digit that is not in the results"
            else:
                where = f"model {bad['model']!r} family {bad['family']!r} image {bad['image']}: " + (
                    "it never flips on the grid" if np.isnan(bad["signed_magnitude"]) else
                    f"{bad['high']:g} is outside its bracket [{bad['bracket_magnitude']:g}, {bad['signed_magnitude']:g}]"
                )
            raise ValueError(f"refined critical magnitudes do not match the results ({where})")
        rows = found["index"].to_numpy()
        table.loc[rows, "signed_magnitude"] = value
        table.loc[rows, "critical_magnitude"] = np.abs(value)
        table.loc[rows, "refined"] = True
    return table[
        DIGIT + ["label", "clean_pred", "critical_magnitude", "signed_magnitude", "bracket_magnitude", "refined"]
    ]


def critical_summary(
    critical: pd.DataFrame,
    by: str = "family",
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    flipped_fraction: bool = True,
) -> pd.DataFrame:
    """Median critical magnitude (inf-aware) per family or per family and class.

    ``critical_magnitude = median_i critical_magnitude_i`` over the digits of the group; it is
    +inf when more than half of them never flip within the grid, and its interval can be
    open-ended (+inf high bound) for the same reason. ``flipped_fraction = mean_i
    1[critical_magnitude_i < inf]``.

    Parameters
    ----------
    critical : DataFrame
        The output of :func:`critical_magnitudes`.
    by : {"family", "class"}
        Per model and family, or per model, family and true class (``label``).
    seed, n_boot, level
        Bootstrap over digits.
    flipped_fraction : bool
        Whether to compute ``flipped_fraction`` (a bootstrap of its own).

    Returns
    -------
    DataFrame
        ``model, family[, label], n_digits, critical_magnitude, critical_magnitude_low,
        critical_magnitude_high`` and, with ``flipped_fraction``, ``flipped_fraction,
        flipped_fraction_low, flipped_fraction_high``.
    """
    groups = {"family": ["model", "family"], "class": ["model", "family", "label"]}
    if by not in groups:
        raise ValueError(f"by {by!r} is not supported; use one of {tuple(groups)}")
    median = grouped_bootstrap_ci(critical, groups[by], "critical_magnitude", "median", n_boot, level, seed)
    if not flipped_fraction:
        return median
    critical = critical.assign(flipped_fraction=np.isfinite(critical["critical_magnitude"]).astype(np.float64))
    flipped = grouped_bootstrap_ci(critical, groups[by], "flipped_fraction", "mean", n_boot, level, seed)
    return median.merge(flipped.drop(columns="n_digits"), on=groups[by])


# --------------------------------------------------------------------------------------------
# Ambiguity, morphometrics, classes
# --------------------------------------------------------------------------------------------


#: The digit properties :func:`pooled_instability` sets instability against, in this order:
#: the clean margin, then the stored morphometrics (stroke thickness and slant).
POOLED_COVARIATES = ("margin", "thickness", "slant")


def quantile_bins(values: pd.Series, bins: int = 5) -> pd.Series:
    """Quantile bin (0 = smallest values) of each value, ties kept together.

    The values' average ranks cut into ``bins`` equal-count bins (``pd.qcut``; ties may merge
    bins); every value in bin 0 when there are fewer than two distinct values.

    Parameters
    ----------
    values : Series of float
    bins : int

    Returns
    -------
    Series of int
        Same index as ``values``.
    """
    if values.nunique() < 2:
        return pd.Series(0, index=values.index)
    return pd.qcut(values.rank(method="average"), bins, labels=False, duplicates="drop").astype(int)


def _covariate(results: pd.DataFrame, covariate: str | pd.Series) -> tuple[str, pd.DataFrame]:
    """``(name, frame of model, image, <name>)`` for a clean-ambiguity name or a per-image Series."""
    clean = clean_predictions(results)
    if isinstance(covariate, pd.Series):
        name = str(covariate.name) if covariate.name is not None else "covariate"
        if not covariate.index.is_unique:
            raise ValueError(f"covariate {name!r} must have one value per image (a unique index)")
        values = clean["image"].map(covariate).to_numpy(dtype=np.float64)
        return name, clean[["model", "image"]].assign(**{name: values})
    if covariate not in AMBIGUITY:
        raise ValueError(
            f"covariate {covariate!r} is not supported; use one of {AMBIGUITY} or a Series indexed by image"
        )
    return covariate, clean[["model", "image", covariate]]


def ambiguity_stratification(
    results: pd.DataFrame,
    by: str | pd.Series = "margin",
    bins: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    swing_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Instability per quantile bin of the clean prediction's ambiguity (or a morphometric).

    The digits of each model are split into ``bins`` quantile bins of the covariate (the clean
    ``margin = p_(1) - p_(2)``, the clean ``entropy`` in bits, or a per-image Series such as
    stroke thickness or slant; ties may merge bins), bin 0 holding the smallest values (for
    the margin, the most ambiguous digits). Per model, family and bin: ``swing`` and
    ``flip_rate`` are the means over the bin's digits of :func:`swing`'s per-digit values.

    Parameters
    ----------
    results : DataFrame
    by : {"margin", "entropy"} or Series
        A Series is indexed by image; its name names the output columns.
    bins : int
    seed, n_boot, level
        Bootstrap over digits.
    swing_table : DataFrame, optional
        ``swing(results)``, when the caller already has it (it takes seconds on a large
        table); computed here otherwise. It is not modified.

    Returns
    -------
    DataFrame
        ``model, family, bin, <by>_min, <by>_max`` (the covariate's range in the bin),
        ``n_digits, swing, swing_low, swing_high, flip_rate, flip_rate_low, flip_rate_high``.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    name, covariate = _covariate(results, by)
    covariate = covariate.loc[covariate[name].notna()].copy()
    covariate["bin"] = covariate.groupby("model")[name].transform(
        lambda values: quantile_bins(values, bins)
    ).astype(np.int64)
    ranges = covariate.groupby(["model", "bin"])[name].agg(["min", "max"]).add_prefix(f"{name}_").reset_index()
    swing_table = swing(results) if swing_table is None else swing_table
    digits = swing_table.merge(covariate[["model", "image", "bin"]], on=["model", "image"])
    table = grouped_bootstrap_ci(
        digits, ["model", "family", "bin"], ["swing", "flip_rate"], "mean", n_boot, level, seed
    )
    table = table.merge(ranges, on=["model", "bin"], how="left")
    front = ["model", "family", "bin", f"{name}_min", f"{name}_max"]
    return table[front + [c for c in table.columns if c not in front]]


def instability_correlation(
    results: pd.DataFrame,
    covariate: str | pd.Series = "margin",
    instability: str = "swing",
    method: str = "spearman",
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    swing_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Correlation between a digit's instability and its ambiguity or morphometrics.

    Per model and family, ``correlation = rho(instability_i, covariate_i)`` over digits, with a
    pairs-bootstrap interval (:func:`robust_mnist.stats.correlation_ci`; Spearman's rank
    correlation by default). A negative correlation with the margin means that ambiguous
    digits (small margin) swing more.

    Parameters
    ----------
    results : DataFrame
    covariate : {"margin", "entropy"} or Series
        The clean prediction's margin or entropy, or a per-image Series (thickness, slant...).
    instability : {"swing", "total_variation", "flip_rate"}
        A per-digit column of :func:`swing`.
    method : {"spearman", "pearson"}
    seed, n_boot, level
        Bootstrap over digits.
    swing_table : DataFrame, optional
        ``swing(results)``, when the caller already has it (it takes seconds on a large
        table); computed here otherwise. It is not modified.

    Returns
    -------
    DataFrame
        ``model, family, covariate, instability, method, n_digits, correlation,
        correlation_low, correlation_high``.
    """
    choices = ("swing", "total_variation", "flip_rate")
    if instability not in choices:
        raise ValueError(f"instability {instability!r} is not supported; use one of {choices}")
    name, values = _covariate(results, covariate)
    swing_table = swing(results) if swing_table is None else swing_table
    digits = swing_table.merge(values, on=["model", "image"])
    table = grouped_correlation_ci(digits, ["model", "family"], instability, name, method, n_boot, level, seed)
    return table.assign(covariate=name, instability=instability, method=method)[
        ["model", "family", "covariate", "instability", "method", "n_digits",
         "correlation", "correlation_low", "correlation_high"]
    ]


def pooled_instability(
    swing_table: pd.DataFrame,
    clean: pd.DataFrame,
    morphometrics: pd.DataFrame | None,
    model: str,
    seed: int = 0,
    n_boot: int = 1000,
    bins: int = 5,
) -> list[dict[str, Any]]:
    """Each digit's swing averaged over families, against its ambiguity, thickness and slant.

    A digit's pooled swing and flip rate are the means of its per-family values
    (:func:`swing`) over the families that perturbed it. For each covariate of
    :data:`POOLED_COVARIATES` that is available (the clean ``margin`` always; ``thickness``
    and ``slant`` when ``morphometrics`` is given) and has at least three digits: the Spearman
    correlation of the pooled swing with it (pairs-bootstrap interval,
    :func:`robust_mnist.stats.correlation_ci`), and per quantile bin of the covariate
    (:func:`quantile_bins`) the mean pooled swing and flip rate with intervals and the
    covariate's median.

    Parameters
    ----------
    swing_table : DataFrame
        :func:`swing` of the results.
    clean : DataFrame
        :func:`robust_mnist.metrics.clean_predictions` of the results.
    morphometrics : DataFrame or None
        ``thickness`` and ``slant`` per image (indexed by image), or None when the run has none.
    model : str
    seed, n_boot
        Bootstrap over digits (95% intervals).
    bins : int

    Returns
    -------
    list of dict
        One per covariate, in order: ``name``, ``strata`` (a DataFrame: ``bin, n_digits,
        swing(_low, _high), flip_rate(_low, _high), median``), ``correlation``,
        ``correlation_low``, ``correlation_high``, ``n_digits``.
    """
    mine = swing_table.loc[(swing_table["model"] == model).to_numpy()]
    pooled = mine.groupby("image")[["swing", "flip_rate"]].mean()
    values = {"margin": clean.loc[(clean["model"] == model).to_numpy()].set_index("image")["margin"]}
    if morphometrics is not None:
        values.update(thickness=morphometrics["thickness"], slant=morphometrics["slant"])
    frames = {}
    for name in POOLED_COVARIATES:
        if name in values:
            frame = pooled.assign(value=values[name].reindex(pooled.index)).dropna()
            if len(frame) >= 3:
                frames[name] = frame
    if not frames:
        return []
    # The covariates' correlations at once: they share their resamples and the swing's ranks.
    together = pd.concat(frames, names=["covariate"]).reset_index(level="covariate")
    rho = grouped_correlation_ci(together, "covariate", "swing", "value", "spearman", n_boot, seed=seed)
    rho = rho.set_index("covariate")
    result = []
    for name, frame in frames.items():
        frame["bin"] = quantile_bins(frame["value"], bins)
        strata = grouped_bootstrap_ci(frame, "bin", ["swing", "flip_rate"], "mean", n_boot, seed=seed)
        medians = frame.groupby("bin")["value"].median()
        strata["median"] = [float(medians[b]) for b in strata["bin"]]
        result.append({"name": name, "strata": strata, "correlation": float(rho.at[name, "correlation"]),
                       "correlation_low": float(rho.at[name, "correlation_low"]),
                       "correlation_high": float(rho.at[name, "correlation_high"]), "n_digits": len(frame)})
    return result


def per_class(
    results: pd.DataFrame,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    swing_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per model, family and true class: clean accuracy, accuracy, flip rate and swing.

    Means over the class's digits of :func:`swing`'s per-digit values: ``clean_accuracy =
    mean 1[clean_pred = label]``, ``accuracy`` and ``flip_rate`` over the non-zero
    magnitudes, ``swing``.

    Parameters
    ----------
    results : DataFrame
    seed, n_boot, level
        Bootstrap over digits.
    swing_table : DataFrame, optional
        ``swing(results)``, when the caller already has it (it takes seconds on a large
        table); computed here otherwise. It is not modified.

    Returns
    -------
    DataFrame
        ``model, family, label, n_digits`` and ``<metric>, <metric>_low, <metric>_high`` for
        clean_accuracy, accuracy, flip_rate, swing.
    """
    digits = swing(results) if swing_table is None else swing_table
    digits = digits.assign(clean_accuracy=(digits["clean_pred"] == digits["label"]).astype(np.float64))
    return grouped_bootstrap_ci(
        digits, ["model", "family", "label"], ["clean_accuracy", "accuracy", "flip_rate", "swing"],
        "mean", n_boot, level, seed,
    )


# --------------------------------------------------------------------------------------------
# The run summary
# --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ["model", "family", "metric", "magnitude", "n_digits", "value", "low", "high"]


def summary_table(
    results: pd.DataFrame,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    rule: str = "majority",
    refined: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The run's compact summary: a tidy (long) frame, one row per model, family and figure.

    ``metric`` is one of, in this order within each model and family:

    - ``clean_accuracy``: ``mean 1[clean_pred = label]`` over the family's digits (magnitude
      NaN);
    - ``accuracy``: at each non-zero grid magnitude, draw-averaged per digit (``magnitude``
      set; the same numbers as :func:`per_magnitude`);
    - ``flip_rate``: per digit the fraction of non-zero magnitudes whose prediction differs
      from the clean one, averaged over digits (magnitude NaN);
    - ``critical_magnitude``: the median over digits of :func:`critical_magnitudes` with
      ``rule`` (magnitude NaN; +inf when most digits never flip).

    ``value`` is the estimate and ``low``, ``high`` its bootstrap interval over digits.

    Parameters
    ----------
    results : DataFrame
        The results table.
    seed, n_boot, level
        Bootstrap over digits.
    rule : {"majority", "any"}
        See :func:`critical_magnitudes`.
    refined : DataFrame, optional
        Refined critical magnitudes (see :func:`critical_magnitudes`).

    Returns
    -------
    DataFrame
        Columns ``model, family, metric, magnitude, n_digits, value, low, high``.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not supported; use one of {RULES}")
    check_results(results)
    sweeps = family_sweeps(results, SWING_COLUMNS)
    cells = _sweep_cells(sweeps, total_variation=False)  # shared by the accuracy and the flip rate
    accuracy = grouped_bootstrap_ci(cells.rename(columns={"correct": "accuracy"}), CELL, "accuracy", "mean",
                                    n_boot, level, seed)
    is_clean = accuracy["magnitude"] == 0
    clean = accuracy.loc[is_clean].assign(metric="clean_accuracy", magnitude=np.nan)
    accuracy = accuracy.loc[~is_clean].assign(metric="accuracy")
    digits = _swing(sweeps, cells=cells)
    flips = grouped_bootstrap_ci(digits, ["model", "family"], "flip_rate", "mean", n_boot, level, seed)
    flips = flips.assign(metric="flip_rate", magnitude=np.nan)
    critical = grouped_bootstrap_ci(
        _critical(sweeps, rule, refined), ["model", "family"], "critical_magnitude", "median", n_boot, level, seed
    ).assign(metric="critical_magnitude", magnitude=np.nan)
    parts = []
    sources = ((clean, "accuracy"), (accuracy, "accuracy"), (flips, "flip_rate"), (critical, "critical_magnitude"))
    for part, column in sources:
        renamed = part.rename(columns={column: "value", f"{column}_low": "low", f"{column}_high": "high"})
        parts.append(renamed[SUMMARY_COLUMNS])
    table = pd.concat(parts, ignore_index=True)
    order = {"clean_accuracy": 0, "accuracy": 1, "flip_rate": 2, "critical_magnitude": 3}
    table = table.assign(_order=table["metric"].map(order))
    table = table.sort_values(["model", "family", "_order", "magnitude"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)
