"""Comparing models on the same perturbed digits: merged runs and their paired statistics.

Every model of a study sees exactly the same perturbed digits (the runner derives each cell's
randomness from the study seed, the spec, the magnitude and the draw only), so two models'
outcomes on a digit form a *pair*, and differences between models are tested with paired
statistics, which are far more sensitive than comparing two independent accuracies:

- :func:`pairwise_accuracy`: McNemar's exact test of the accuracy difference of every pair
  of models at every family and magnitude (with digits as units when they have several
  draws), Holm's step-down correction across a family's magnitudes, and a paired bootstrap
  interval of the difference (the tests themselves are in :mod:`robust_mnist.paired_stats`);
- :func:`per_digit_metrics` and :func:`model_summary`: each model's accuracy, swing, flip rate
  and critical magnitude per family, whose paired differences
  :func:`robust_mnist.paired_stats.paired_differences` gives;
- :func:`consistency` and :func:`kappa_matrix`: error consistency (Geirhos et al. 2020) per
  cell, per family and model by model.

:func:`compare_runs` merges one or several run directories of the same study
(:func:`robust_mnist.merge.merge_runs`: through :mod:`robust_mnist.rundir` only, no model, no
perturbation code) into one :class:`Comparison`, which computes these statistics, the seed
spread and the ranking (:mod:`robust_mnist.ranking`) on first access. The comparison report is
drawn by :mod:`robust_mnist.html.compare_report`.

Units. A *trial* is one perturbed digit: (family, magnitude, image, draw). For deterministic
families a digit has one draw, so trials are digits. For random families each draw is a
different perturbed image seen by every model, but draws of one digit are not independent (a
hard digit is hard in every draw), so the tests and intervals treat the *digit* as the unit:
McNemar's test becomes an exact sign-flip test of each digit's balance of discordant draws
(:func:`robust_mnist.paired_stats.mcnemar_clustered`), and the bootstrap intervals resample
digits with all their draws (:mod:`robust_mnist.stats`).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import pandas as pd

from . import digit_metrics, metrics, stats
from .benchmark_metrics import BenchmarkScores, rank_by_mce, run_scores
from .errors import ComparisonError
from .merge import TRIAL_KEYS, MergedRuns, merge_runs
from .paired_stats import (
    DIFFERENCE_METRICS,
    cohen_kappa,
    holm,
    mcnemar_clustered,
    model_pairs,
    paired_differences,
)
from .ranking import architecture_differences, rank_models, seed_spread
from .rundir import CLEAN

__all__ = [
    "ALPHA", "N_BOOT", "Comparison", "ComparisonError", "compare_runs", "consistency", "kappa_matrix",
    "model_summary", "paired_outcomes", "pairwise_accuracy", "per_digit_metrics",
]

#: Significance level of the tests (after Holm's correction).
ALPHA = 0.05
#: Bootstrap resamples of every interval.
N_BOOT = 1000


# ====================================================================== results-table statistics


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
    metrics.check_results(results)
    models = _models(results, models)
    frame = results.loc[results["model"].isin(models), [*TRIAL_KEYS, "model", "label", "pred"]]
    frame = frame.assign(correct=frame["pred"].to_numpy() == frame["label"].to_numpy())
    duplicated = frame.duplicated([*TRIAL_KEYS, "model"])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} duplicate rows (model, family, magnitude, image, draw) in the results")
    wide = frame.pivot(index=TRIAL_KEYS, columns="model", values="correct")
    if wide.isna().any().any():
        lacking = wide.columns[wide.isna().any()].tolist()
        raise ValueError(
            f"models {lacking} lack some of the perturbed digits the others were evaluated on: "
            "a comparison needs every model on the same digits (one complete study run)"
        )
    labels = frame.drop_duplicates(TRIAL_KEYS).set_index(TRIAL_KEYS)["label"]
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
    over the sweep (:func:`robust_mnist.digit_metrics.swing`), ``critical_magnitude`` the smallest
    magnitude that flips it, ``+inf`` if none does
    (:func:`robust_mnist.digit_metrics.critical_magnitudes`, majority rule, refined by bisection
    where ``refined`` has it). The mean of ``accuracy`` over digits is the family's accuracy
    averaged over its magnitudes.

    Returns
    -------
    DataFrame
        ``model, family, image, label, accuracy, swing, flip_rate, critical_magnitude``.
    """
    swing = digit_metrics.swing(results)
    critical = digit_metrics.critical_magnitudes(results, refined=refined)
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
                    cohen_kappa(sums[:, index[(f"{a}\0{b}", mag)]], sums[:, index[(a, mag)]], sums[:, index[(b, mag)]])
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


# ================================================================================ the runs


@dataclass
class Comparison(MergedRuns):
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

    @cached_property
    def mnist_c(self) -> BenchmarkScores | None:
        """The MNIST-C scores of every model (:func:`robust_mnist.benchmark_metrics.run_scores`),
        or None when the study has no MNIST-C corruption.

        Raises
        ------
        ComparisonError
            If the study names a reference model that is not among the compared models.
        """
        try:
            return run_scores(self.results, self.runs[0], self.models, self.model_info, self.n_boot, self.level)
        except ValueError as error:
            raise ComparisonError(f"{self.run_dirs[0]}: {error}") from None

    @cached_property
    def mnist_c_ranking(self) -> pd.DataFrame | None:
        """The models ranked by mCE (:func:`robust_mnist.benchmark_metrics.rank_by_mce`), or None."""
        return None if self.mnist_c is None else rank_by_mce(self.mnist_c, self.model_info)


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    alpha: float = ALPHA,
    n_boot: int = N_BOOT,
    level: float = 0.95,
) -> Comparison:
    """Merge the models of one or several complete runs of the same study.

    Reads only the run directories (:func:`robust_mnist.merge.merge_runs`): run.json,
    digits.npz, the results table and exemplars.npz. The runs must hold the same digits
    (checksum of digits.npz's images and labels) and the same perturbations (spec labels,
    families, options, magnitudes, draws, digit subsets and every realised parameter); models
    then saw identical perturbed digits and are compared pairwise.

    Model names must be unique: a name that occurs in several runs is prefixed with its run
    directory's name (``"<run>/<model>"``), unless it is the same model file (same checksum),
    whose repeated results are then dropped.

    Raises
    ------
    ComparisonError
        A one-line message naming the runs and what differs; also for a directory that is
        not a complete run.
    """
    merged = merge_runs(run_dirs)
    return Comparison(**{f.name: getattr(merged, f.name) for f in fields(merged)},
                      alpha=alpha, n_boot=n_boot, level=level)
