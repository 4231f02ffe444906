"""Morph flip points: where along a morph from one digit toward another the prediction turns.

A morph family perturbs a source digit toward a digit of another class by an interpolation
weight ``t`` in [0, 1]. :func:`morph_transitions` finds, on each such path, the flip point
``t*`` at which the target class overtakes the others and how sharply its probability rises;
:func:`morph_summary` aggregates them per class pair with bootstrap intervals. Pure functions
of the results table (:mod:`robust_mnist.metrics` describes it): no file, no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import CLEAN, PROBABILITY_COLUMNS, check_results, probability_matrix
from .stats import grouped_bootstrap_ci

MORPH_PATH = ["model", "family", "image", "draw", "target"]


def morph_transitions(results: pd.DataFrame, target_column: str = "param_target_class") -> pd.DataFrame:
    """Per morph path: the flip point t* and the sharpness of the transition.

    A path is a source digit (model, family, image, draw) morphed toward ``target`` (the
    ``target_column`` of its rows) over the grid ``t_1 < ... < t_n`` (the magnitudes),
    starting at ``t = 0`` with the clean prediction unless the run evaluated ``t = 0``. Rows
    whose target is NaN (non-morph families) are ignored. With ``p_j`` the probability vector
    at ``t_j`` and the target margin ``d_j = p_j[target] - max_{c != target} p_j[c]`` (the
    prediction is the target exactly when ``d_j > 0``):

    - ``t_star``: with ``k`` the first grid point where the prediction is the target,
      ``t* = t_{k-1} + (t_k - t_{k-1}) * (-d_{k-1}) / (d_k - d_{k-1})``, the zero of ``d``
      interpolated linearly between the last non-target and the first target grid point;
      ``t* = t_1`` if the first point is already the target, +inf if the path never reaches
      it. Along a typical morph the strongest other class is the source class, so ``d`` is
      ``p_target - p_source``; taking the maximum over the other classes keeps ``t*``
      consistent with the prediction when a third class leads in between.
    - ``sharpness = max_j (p_j[target] - p_{j-1}[target]) / (t_j - t_{j-1})``, the steepest
      rise of the target probability per unit t (NaN for a single grid point).

    Parameters
    ----------
    results : DataFrame
        The results table.
    target_column : str
        The column holding each morph row's target class.

    Returns
    -------
    DataFrame
        One row per path, sorted: ``model, family, image, draw, label, target, n_points,
        t_star, sharpness``; empty (same columns) when the table has no morph rows.
    """
    check_results(results)
    columns = MORPH_PATH[:4] + ["label", "target", "n_points", "t_star", "sharpness"]
    if target_column not in results.columns:
        return pd.DataFrame(columns=columns)
    morphs = results.loc[(results["family"] != CLEAN) & results[target_column].notna()]
    if morphs.empty:
        return pd.DataFrame(columns=columns)
    keep = ["model", "family", "magnitude", "image", "draw", "label", "pred", *PROBABILITY_COLUMNS]
    morphs = morphs[keep].assign(target=morphs[target_column].to_numpy().astype(np.int64))
    paths = morphs[MORPH_PATH].drop_duplicates()
    at_zero = morphs.loc[morphs["magnitude"] == 0, MORPH_PATH].drop_duplicates()
    lacking = paths.merge(at_zero, on=MORPH_PATH, how="left", indicator=True)
    lacking = lacking.loc[lacking["_merge"] == "left_only", MORPH_PATH]
    clean = results.loc[results["family"] == CLEAN, ["model", "image", "label", "pred", *PROBABILITY_COLUMNS]]
    zero = lacking.merge(clean, on=["model", "image"], how="inner").assign(magnitude=0.0)
    rows = pd.concat([morphs, zero[morphs.columns]], ignore_index=True)
    rows = rows.sort_values(MORPH_PATH + ["magnitude"], kind="stable").reset_index(drop=True)

    p = probability_matrix(rows)
    target = rows["target"].to_numpy()
    index = np.arange(len(rows))
    p_target = p[index, target]
    others = p.copy()
    others[index, target] = -np.inf
    margin = p_target - others.max(axis=1)
    t = rows["magnitude"].to_numpy(dtype=np.float64)
    codes = rows.groupby(MORPH_PATH, sort=True).ngroup().to_numpy()
    same = np.r_[False, codes[1:] == codes[:-1]]
    previous = np.r_[0, index[:-1]]

    hit = rows["pred"].to_numpy() == target
    first_hit = hit & (pd.Series(hit).groupby(codes).cumsum().to_numpy() == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.clip(-margin[previous] / (margin - margin[previous]), 0.0, 1.0)
        crossing = np.where(same, t[previous] + (t - t[previous]) * fraction, t)
        slope = np.where(same, (p_target - p_target[previous]) / (t - t[previous]), np.nan)
    rows["t_star"] = np.where(first_hit, crossing, np.nan)
    rows["slope"] = slope
    table = rows.groupby(MORPH_PATH, sort=True).agg(
        label=("label", "first"),
        n_points=("magnitude", "size"),
        t_star=("t_star", "min"),
        sharpness=("slope", "max"),
    ).reset_index()
    table["t_star"] = table["t_star"].fillna(np.inf)
    return table[columns].astype({"label": np.int64, "n_points": np.int64})


def morph_summary(
    transitions: pd.DataFrame,
    by: Sequence[str] = ("label", "target"),
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Median flip point and mean sharpness per model, family and (by default) class pair.

    ``t_star = median_i t*_i`` (inf-aware: +inf when most paths never reach the target) and
    ``sharpness = mean_i sharpness_i`` over the paths of the group, with bootstrap intervals
    over paths (one per source digit and target).

    Parameters
    ----------
    transitions : DataFrame
        The output of :func:`morph_transitions`.
    by : sequence of str
        Extra grouping columns besides model and family: ``("label", "target")`` for source
        and target class pairs, ``()`` for the family as a whole.

    Returns
    -------
    DataFrame
        ``model, family, *by, n_digits, t_star, t_star_low, t_star_high, sharpness,
        sharpness_low, sharpness_high``.
    """
    groups = ["model", "family", *by]
    median = grouped_bootstrap_ci(transitions, groups, "t_star", "median", n_boot, level, seed)
    sharpness = grouped_bootstrap_ci(transitions, groups, "sharpness", "mean", n_boot, level, seed)
    return median.merge(sharpness.drop(columns="n_digits"), on=groups)


def reach_fraction(transitions: pd.DataFrame) -> pd.Series:
    """Per source and target class: the share of morph paths whose prediction reaches the target.

    ``reached = mean_i 1[t*_i < inf]`` over the paths of :func:`morph_transitions` (pass one
    model's and family's paths).

    Returns
    -------
    Series of float
        Indexed by ``(label, target)``.
    """
    reached = transitions.assign(reached=lambda f: np.isfinite(f["t_star"]).astype(float))
    return reached.groupby(["label", "target"])["reached"].mean()
