"""The study report's numbers: a run read for the report, and every aggregate it shows.

:func:`read_run` reads a run directory through :mod:`robust_mnist.rundir` (the results
columns the page and the summary need, the digits and their stored morphometrics, the
exemplars and refined critical magnitudes) and :func:`load_report_data` orders its families
and models as the study lists them; :func:`compute_aggregates` computes, once and when first
used, every aggregate the page shows with :mod:`robust_mnist.metrics`,
:mod:`robust_mnist.digit_metrics` and :mod:`robust_mnist.morph_metrics`, each with bootstrap
intervals seeded by the study seed; and :func:`headline_magnitude`,
:func:`confusion_magnitude` and :func:`fragility_order` choose what the findings quote. A run
with MNIST-C corruptions also gets their scores (:mod:`robust_mnist.benchmark_metrics`). The
pages themselves are drawn by :mod:`robust_mnist.html.study_report`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import digit_metrics, metrics, morph_metrics, stats
from .benchmark_metrics import BenchmarkScores, benchmark_corruptions, run_scores, severity_errors
from .errors import RunDirError
from .rundir import PROBABILITY_COLUMNS, Run, load_run, slug

#: Bootstrap resamples behind every interval of the report.
N_BOOT = 1000
#: Quantile bins of the ambiguity and morphometric stratifications.
STRATA = 5
#: A family's headline magnitude is the smallest at which at least this share of predictions
#: flips (or its largest magnitude when none does).
HEADLINE_FLIP = 0.10


@dataclass
class FamilyInfo:
    """One perturbation spec of the run, as the report needs it."""

    label: str
    family: str
    unit: str
    magnitudes: list[float]
    draws: int
    options: dict[str, Any]
    anchor: str
    #: Bisection steps refining the critical magnitudes (0: grid values).
    refine: int = 0
    #: MNIST-C's severity level of each magnitude, when the study gave severities.
    severities: tuple[int, ...] = ()

    @property
    def is_morph(self) -> bool:
        return self.family == "morph"


@dataclass
class RunData:
    """Everything the report reads from a run directory."""

    run_dir: Path
    run: dict[str, Any]
    results: pd.DataFrame
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    exemplars: dict[str, np.ndarray]
    families: list[FamilyInfo]
    models: list[str]
    seed: int
    #: Critical magnitudes refined by bisection (:func:`robust_mnist.rundir.load_refined`).
    refined: pd.DataFrame | None = None
    #: Thickness and slant of each clean digit (:func:`robust_mnist.rundir.load_morphometrics`);
    #: None for runs made before they were stored.
    morphometrics: pd.DataFrame | None = None


#: The results columns the report uses; the other realised parameters are left on disk (the
#: article study has two dozen, mostly NaN, which would double the memory of the table).
RESULT_COLUMNS = ("model", "family", "magnitude", "image", "draw", "label", "clean_pred", "pred",
                  "p_true", "p_pred", *PROBABILITY_COLUMNS, "param_target_class")


def read_run(run_dir: str | os.PathLike) -> Run:
    """A run directory read as the report and the summary use it.

    run.json, the results columns :data:`RESULT_COLUMNS`, the digits and their
    morphometrics, the exemplars and refined critical magnitudes (each file once): pass it to
    :func:`robust_mnist.html.study_report.write_report` and
    :func:`robust_mnist.summary.write_summary` to read a run once for both.

    Raises
    ------
    RunDirError
        If ``run_dir`` is not a run directory or a file of it is damaged.
    """
    return load_run(run_dir, RESULT_COLUMNS)


def load_report_data(run: str | os.PathLike | Run) -> RunData:
    """A run's run.json, results, digits, morphometrics and exemplars, as the report uses them.

    Parameters
    ----------
    run : path-like or Run
        A run directory, or a run already read with at least the columns
        :data:`RESULT_COLUMNS` (:func:`read_run`).

    Raises
    ------
    RunDirError
        If ``run`` is not a run directory, a file of it is damaged, or the run has no
        results yet.
    """
    stored = run if isinstance(run, Run) else read_run(run)
    run_dir, run, results, exemplars, digits = stored.path, stored.info, stored.results, stored.exemplars, stored.digits
    if results.empty:
        raise RunDirError(f"{run_dir}: the run has no results yet (status {run.get('status')!r})")
    present = set(results["family"].unique())
    families = []
    for index, spec in enumerate(run.get("study", {}).get("perturbations", [])):
        label = str(spec.get("label", spec.get("family")))
        if label not in present:
            continue
        family = str(exemplars.get(f"{label}/family", spec.get("family", label)))
        unit = str(exemplars.get(f"{label}/unit", ""))
        families.append(FamilyInfo(
            label=label, family=family, unit=unit,
            magnitudes=[float(m) for m in spec.get("magnitudes", [])],
            draws=int(spec.get("draws") or 1), options=dict(spec.get("options") or {}),
            anchor=f"family-{index}-{slug(label).lower()}", refine=int(spec.get("refine") or 0),
            severities=tuple(int(level) for level in spec.get("severities") or ()),
        ))
    # unique() first: iterating the million-row string column itself takes seconds.
    present_models = set(results["model"].unique())
    models = [m for m in run.get("models", {}) if m in present_models]
    models += sorted(present_models - set(models))
    return RunData(run_dir, run, results, digits.images, digits.labels, digits.ids, exemplars, families,
                   models, int(run.get("seed") or 0), stored.refined, stored.morphometrics)


def nonzero(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a per-magnitude table at a non-zero magnitude."""
    return frame.loc[frame["magnitude"] != 0]


def headline_magnitude(curve: pd.DataFrame) -> pd.Series | None:
    """The row of one family's per-magnitude curve that the findings quote.

    The smallest |magnitude| at which at least :data:`HEADLINE_FLIP` of predictions flip (the
    larger flip rate on a tie between signs); the largest |magnitude| when none does.
    """
    rows = nonzero(curve).assign(size=lambda f: f["magnitude"].abs())
    if rows.empty:
        return None
    hits = rows.loc[rows["flip_rate"] >= HEADLINE_FLIP]
    if not hits.empty:
        return hits.sort_values(["size", "flip_rate"], ascending=[True, False]).iloc[0]
    return rows.sort_values(["size", "flip_rate"], ascending=[False, False]).iloc[0]


def confusion_magnitude(curve: pd.DataFrame) -> float | None:
    """The magnitude of the "what does it become" matrix: where half the damage is done.

    The smallest |magnitude| whose flip rate reaches half the family's largest flip rate.
    """
    rows = nonzero(curve).assign(size=lambda f: f["magnitude"].abs())
    if rows.empty:
        return None
    target = 0.5 * rows["flip_rate"].max()
    hits = rows.loc[rows["flip_rate"] >= target].sort_values(["size", "flip_rate"], ascending=[True, False])
    return float(hits.iloc[0]["magnitude"])


class Aggregates:
    """The metrics the page shows, each computed once from the results table, when first used.

    Built by :func:`compute_aggregates`. Computing on demand lets the report draw the figures
    of the numbers it has (in worker processes, :mod:`robust_mnist.html.figures`) while it
    computes the others; no value depends on the order in which they are computed.
    """

    def __init__(self, data: RunData) -> None:
        self.data = data
        self._options = {"seed": data.seed, "n_boot": N_BOOT}

    @cached_property
    def sweeps(self) -> pd.DataFrame:
        """:func:`robust_mnist.metrics.family_sweeps`: built once (seconds on a large run) for
        every metric that needs them."""
        return metrics.family_sweeps(self.data.results)

    @cached_property
    def per_magnitude(self) -> pd.DataFrame:
        # The page shows no calibration error: its bootstrap would cost as much as the rest.
        return metrics.per_magnitude(self.data.results, **self._options, sweeps=self.sweeps, calibration=False)

    @cached_property
    def swing(self) -> pd.DataFrame:
        # The page shows no total variation.
        return digit_metrics.swing(self.data.results, sweeps=self.sweeps, total_variation=False)

    @cached_property
    def swing_summary(self) -> pd.DataFrame:
        return stats.grouped_bootstrap_ci(self.swing, ["model", "family"], ["swing", "flip_rate"], "mean", N_BOOT,
                                          seed=self.data.seed)

    @cached_property
    def critical(self) -> pd.DataFrame:
        return digit_metrics.critical_magnitudes(self.data.results, refined=self.data.refined, sweeps=self.sweeps)

    @cached_property
    def grids(self) -> dict[str, np.ndarray]:
        """Per family, the primary model's grid: the sorted non-zero magnitudes of its sweeps
        (those of :attr:`per_magnitude`, known before it is computed)."""
        sweeps = self.sweeps
        rows = ((sweeps["model"] == self.data.models[0]) & (sweeps["magnitude"] != 0)).to_numpy()
        magnitudes = sweeps.loc[rows, ["family", "magnitude"]].groupby("family")["magnitude"]
        return {family: np.unique(values.to_numpy(float)) for family, values in magnitudes}

    @cached_property
    def critical_summary(self) -> pd.DataFrame:
        # The page shows the medians, not the share of digits that flip.
        return digit_metrics.critical_summary(self.critical, "family", **self._options, flipped_fraction=False)

    @cached_property
    def critical_by_class(self) -> pd.DataFrame:
        return digit_metrics.critical_summary(self.critical, "class", **self._options, flipped_fraction=False)

    @cached_property
    def worst_case(self) -> pd.DataFrame:
        return metrics.worst_case_accuracy(self.data.results, **self._options, sweeps=self.sweeps)

    @cached_property
    def flip_probability(self) -> pd.DataFrame:
        random = {f.label for f in self.data.families if f.draws > 1}
        return metrics.flip_probability(self.data.results, random, **self._options, sweeps=self.sweeps)

    @cached_property
    def per_class(self) -> pd.DataFrame:
        return digit_metrics.per_class(self.data.results, **self._options, swing_table=self.swing)

    @cached_property
    def clean(self) -> pd.DataFrame:
        return metrics.clean_predictions(self.data.results)

    @cached_property
    def clean_accuracy(self) -> pd.DataFrame:
        return stats.grouped_bootstrap_ci(self.clean, ["model"], "correct", "mean", N_BOOT, seed=self.data.seed)

    @cached_property
    def transitions(self) -> pd.DataFrame:
        return morph_metrics.morph_transitions(self.data.results)

    @cached_property
    def morph_pairs(self) -> pd.DataFrame:
        transitions = self.transitions
        return morph_metrics.morph_summary(transitions, **self._options) if len(transitions) else pd.DataFrame()

    @property
    def morphometrics(self) -> pd.DataFrame | None:
        """Thickness and slant per digit, or None (the run stored none)."""
        return self.data.morphometrics

    @cached_property
    def correlations(self) -> pd.DataFrame:
        # Per family, only against the margin (the article's question).
        return digit_metrics.instability_correlation(self.data.results, "margin", **self._options, swing_table=self.swing)

    @cached_property
    def margin_strata(self) -> pd.DataFrame:
        return digit_metrics.ambiguity_stratification(self.data.results, "margin", STRATA, **self._options,
                                                      swing_table=self.swing)

    @cached_property
    def pooled(self) -> list[dict[str, Any]]:
        return digit_metrics.pooled_instability(self.swing, self.clean, self.data.morphometrics, self.data.models[0],
                                                self.data.seed, N_BOOT, STRATA)

    @cached_property
    def confusion(self) -> dict[str, tuple[float, np.ndarray]]:
        """What a distorted digit becomes: per family, the primary model's confusion matrix
        ((10, 10) counts, true class by predicted class) at its :func:`confusion_magnitude`."""
        model = self.data.models[0]
        magnitudes = {f.label: confusion_magnitude(select(self.per_magnitude, model=model, family=f.label))
                      for f in self.data.families}
        cells = [(model, label, magnitude) for label, magnitude in magnitudes.items() if magnitude is not None]
        matrices = metrics.confusions(self.data.results, cells, sweeps=self.sweeps)
        return {label: (magnitude, matrix.to_numpy()) for (_, label, magnitude), matrix in zip(cells, matrices)}

    @cached_property
    def mnist_c(self) -> BenchmarkScores | None:
        """MNIST-C scores (:func:`robust_mnist.benchmark_metrics.run_scores`); None without
        MNIST-C corruptions."""
        return run_scores(self.data.results, self.data.run, self.data.models, n_boot=N_BOOT)

    @cached_property
    def mnist_c_severities(self) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """Error per severity and median critical severity of each MNIST-C corruption
        (:func:`robust_mnist.benchmark_metrics.severity_errors`); None without them."""
        if self.mnist_c is None:
            return None
        scored = set(self.mnist_c.corruptions["corruption"])
        corruptions = [c for c in benchmark_corruptions(self.data.run) if c.label in scored]
        return severity_errors(self.data.results, corruptions, n_boot=N_BOOT, seed=self.data.seed)


def compute_aggregates(data: RunData) -> Aggregates:
    """Every aggregate of the report, with bootstrap intervals seeded by the study seed
    (each computed when first used, see :class:`Aggregates`)."""
    return Aggregates(data)


def select(frame: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    """The rows of ``frame`` whose columns equal the given values (``model="cnn"``...)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in equal.items():
        mask &= (frame[column] == value).to_numpy()
    return frame.loc[mask]


def one(frame: pd.DataFrame, **equal: Any) -> pd.Series | None:
    """The first row of :func:`select`, or None."""
    rows = select(frame, **equal)
    return None if rows.empty else rows.iloc[0]


def fragility_order(data: RunData, agg: Aggregates) -> pd.DataFrame:
    """Worst-case accuracy rows of the primary model's distortion families, most fragile first."""
    morphs = {f.label for f in data.families if f.is_morph}
    worst = select(agg.worst_case, model=data.models[0])
    return worst.loc[~worst["family"].isin(morphs)].sort_values(["worst_case_accuracy", "family"])
