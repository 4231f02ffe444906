"""The study report's numbers: a run read for the report, and every aggregate it shows.

:func:`load_report_data` reads a run directory through :mod:`robust_mnist.rundir` (the results
columns the page needs, the digits and their stored morphometrics, the exemplars and refined
critical magnitudes) and orders its families and models as the study lists them;
:func:`compute_aggregates` computes, once, every aggregate the page shows with
:mod:`robust_mnist.metrics`, :mod:`robust_mnist.digit_metrics` and
:mod:`robust_mnist.morph_metrics`, each with bootstrap intervals seeded by the study seed; and
:func:`headline_magnitude`, :func:`confusion_magnitude` and :func:`fragility_order` choose what
the findings quote. A run with MNIST-C corruptions also gets their scores
(:mod:`robust_mnist.benchmark_metrics`). The pages themselves are drawn by :mod:`robust_mnist.html.study_report`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import digit_metrics, metrics, morph_metrics, stats
from .benchmark_metrics import BenchmarkScores, benchmark_corruptions, run_scores, severity_errors
from .errors import RunDirError
from .rundir import PROBABILITY_COLUMNS, load_run, slug

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


def load_report_data(run_dir: str | os.PathLike) -> RunData:
    """Read a run directory's run.json, results, digits, morphometrics and exemplars.

    Raises
    ------
    RunDirError
        If ``run_dir`` is not a run directory, a file of it is damaged, or the run has no
        results yet.
    """
    stored = load_run(run_dir, RESULT_COLUMNS)  # each file read once
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


@dataclass
class Aggregates:
    """The metrics the page shows, computed once from the results table."""

    per_magnitude: pd.DataFrame
    swing: pd.DataFrame
    swing_summary: pd.DataFrame
    critical: pd.DataFrame
    critical_summary: pd.DataFrame
    critical_by_class: pd.DataFrame
    worst_case: pd.DataFrame
    flip_probability: pd.DataFrame
    per_class: pd.DataFrame
    clean: pd.DataFrame
    clean_accuracy: pd.DataFrame
    transitions: pd.DataFrame
    morph_pairs: pd.DataFrame
    #: Thickness and slant per digit, or None (the run stored none).
    morphometrics: pd.DataFrame | None
    correlations: pd.DataFrame
    margin_strata: pd.DataFrame
    pooled: list[dict[str, Any]]
    #: MNIST-C scores (:func:`robust_mnist.benchmark_metrics.run_scores`); None without
    #: MNIST-C corruptions.
    mnist_c: BenchmarkScores | None = None
    #: Error per severity and median critical severity of each MNIST-C corruption
    #: (:func:`robust_mnist.benchmark_metrics.severity_errors`); None without them.
    mnist_c_severities: tuple[pd.DataFrame, pd.DataFrame] | None = None


def compute_aggregates(data: RunData) -> Aggregates:
    """Every aggregate of the report, with bootstrap intervals seeded by the study seed."""
    results, seed = data.results, data.seed
    options = {"seed": seed, "n_boot": N_BOOT}
    random = {f.label for f in data.families if f.draws > 1}
    # The sweeps and the per-digit swing each take seconds on a large run: computed once here
    # and passed to every metric that would otherwise recompute them.
    sweeps = metrics.family_sweeps(results)
    swing = digit_metrics.swing(results, sweeps=sweeps)
    critical = digit_metrics.critical_magnitudes(results, refined=data.refined, sweeps=sweeps)
    clean = metrics.clean_predictions(results)
    transitions = morph_metrics.morph_transitions(results)
    benchmark = run_scores(results, data.run, data.models, n_boot=N_BOOT)
    severities = None
    if benchmark is not None:
        corruptions = [c for c in benchmark_corruptions(data.run) if c.label in set(benchmark.corruptions["corruption"])]
        severities = severity_errors(results, corruptions, n_boot=N_BOOT, seed=seed)
    return Aggregates(
        per_magnitude=metrics.per_magnitude(results, **options, sweeps=sweeps),
        swing=swing,
        swing_summary=stats.grouped_bootstrap_ci(swing, ["model", "family"], ["swing", "flip_rate"], "mean", N_BOOT, seed=seed),
        critical=critical,
        critical_summary=digit_metrics.critical_summary(critical, "family", **options),
        critical_by_class=digit_metrics.critical_summary(critical, "class", **options),
        worst_case=metrics.worst_case_accuracy(results, **options, sweeps=sweeps),
        flip_probability=metrics.flip_probability(results, random, **options, sweeps=sweeps),
        per_class=digit_metrics.per_class(results, **options, swing_table=swing),
        clean=clean,
        clean_accuracy=stats.grouped_bootstrap_ci(clean, ["model"], "correct", "mean", N_BOOT, seed=seed),
        transitions=transitions,
        morph_pairs=morph_metrics.morph_summary(transitions, **options) if len(transitions) else pd.DataFrame(),
        morphometrics=data.morphometrics,
        # Per family, only against the margin (the article's question): each bootstrapped
        # rank correlation over 10,000 digits costs about a quarter of a second.
        correlations=digit_metrics.instability_correlation(results, "margin", **options, swing_table=swing),
        margin_strata=digit_metrics.ambiguity_stratification(results, "margin", STRATA, **options, swing_table=swing),
        pooled=digit_metrics.pooled_instability(
            swing, clean, data.morphometrics, data.models[0], seed, N_BOOT, STRATA
        ),
        mnist_c=benchmark,
        mnist_c_severities=severities,
    )


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
