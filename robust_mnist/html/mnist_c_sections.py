"""The MNIST-C sections of the study and comparison reports: the benchmark's tables.

A run whose study holds MNIST-C corruptions gets a section of its own in both reports: each
model's mean error and mCE, each corruption's error and CE (:func:`scores_tables`), for a sweep
the error at every severity with the digits' median critical severity
(:func:`severity_table`), and in the comparison the models ranked by mCE
(:func:`ranking_table`). Every number comes from :mod:`robust_mnist.benchmark_metrics` (through
:mod:`robust_mnist.report_data` and :class:`robust_mnist.compare.Comparison`); this module only
lays them out. Runs without MNIST-C corruptions have no such section, and their pages are
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..benchmark_metrics import BenchmarkScores, Corruption
from .components import Cell, Table, estimate_cell
from .format import finite, grid_text, magnitude_text, rank_text

#: The Methods entries the reports add when they show MNIST-C figures.
METHODS = (
    ("MNIST-C", "Mu and Gilmer's (2019) benchmark: 15 corruptions of the MNIST test digits (shot and "
     "impulse noise, glass and motion blur, shear, scale, rotate, brightness, translate, stripe, fog, "
     "spatter, dotted line, zigzag, Canny edges), each at the severity of its published test set, or "
     "swept over its five severity levels."),
    ("Corruption error and CE", "A corruption's error E is the share of its corrupted digits a model "
     "gets wrong (draws averaged within a digit; for a sweep, averaged over the severities, as "
     "ImageNet-C does). CE = E(model) / E(reference): below 1, the model errs less than the reference "
     "under that corruption. mCE is the mean CE over the corruptions, the mean error the mean E (Hendrycks "
     "and Dietterich 2019)."),
    ("MNIST-C intervals", "95% percentile bootstrap over digits, seeded with the study seed: every "
     "resample recomputes every model's error on every corruption from the same resampled digits, so the "
     "intervals of CE, mCE and of the differences of mCE between models are paired. Two models share a "
     "rank by mCE when the interval of their difference includes 0."),
    ("Critical severity", "The lowest severity level at which a digit's prediction differs from its "
     "clean prediction (in most draws); \"never\" when no level changes it. Medians over digits."),
)


def _values_text(corruption: Corruption) -> str:
    """The magnitudes of a severity grid in the family's unit ("3 photons"), for a cell note."""
    if not corruption.severities:
        return ""
    pairs = sorted(zip(corruption.severities, corruption.magnitudes))
    return ", ".join(magnitude_text(m, corruption.unit) for _, m in pairs)


def _ratio_cell(row: Any, metric: str) -> Cell:
    """A CE or mCE with its interval; an infinite one (a reference without errors) as ∞."""
    value = row[metric]
    if value is not None and not pd.isna(value) and np.isinf(value):
        return Cell("∞", 1e300)
    return estimate_cell(row, metric, digits=2)


def scores_tables(scores: BenchmarkScores, corruptions: Sequence[Corruption], models: Sequence[str]) -> dict[str, Table]:
    """Per model the mean error and mCE; per corruption each model's error and CE."""
    by_model = scores.models.set_index("model")
    overall = Table([("Model", False), ("Corruptions", True), ("Mean error", True), ("mCE", True)], caption=(
        f"Mean error: over the corruptions, of the corrupted digits. mCE: mean corruption error relative to the "
        f"reference model {scores.reference} (1 = as robust as it; lower is better). Brackets: 95% paired "
        "bootstrap intervals over digits."))
    for model in models:
        if model not in by_model.index:
            continue
        row = by_model.loc[model]
        overall.rows.append([Cell(model + (" (reference)" if model == scores.reference else ""), model),
                             Cell(str(int(row["n_corruptions"])), int(row["n_corruptions"])),
                             estimate_cell(row, "mean_error", True), _ratio_cell(row, "mce")])
    several = len(models) > 1
    columns = [("Corruption", False), ("Grid", False)]
    for model in models:
        suffix = f" · {model}" if several else ""
        columns += [(f"Error{suffix}", True), (f"CE{suffix}", True)]
    per_corruption = Table(columns, caption=(
        "Error: share of the corrupted digits classified wrongly (a sweep: mean over its severities). CE: the "
        f"error divided by that of {scores.reference} under the same corruption. Grid: the severities, with "
        "their values in the family's unit underneath. Brackets: 95% paired bootstrap intervals over digits."))
    table = scores.corruptions.set_index(["corruption", "model"])
    for corruption in corruptions:
        if (corruption.label, models[0]) not in table.index:
            continue
        name = corruption.label if corruption.name == corruption.label else f"{corruption.label} ({corruption.name})"
        cells = [Cell(name, corruption.label), Cell(grid_text(corruption), corruption.label, _values_text(corruption))]
        for model in models:
            row = table.loc[(corruption.label, model)]
            cells += [estimate_cell(row, "error", True), _ratio_cell(row, "ce")]
        per_corruption.rows.append(cells)
    return {"overall": overall, "corruptions": per_corruption}


def severity_table(
    severities: tuple[pd.DataFrame, pd.DataFrame], corruptions: Sequence[Corruption], model: str
) -> Table | None:
    """One model's error at each severity of each corruption, and the median critical severity.

    Only the corruptions swept in severities; None when none has more than one (the
    protocol's single levels).
    """
    curves, critical = severities
    corruptions = [c for c in corruptions if c.severities]
    if not any(len(c.severities) > 1 for c in corruptions):
        return None
    levels = sorted({level for c in corruptions for level in c.levels})
    columns = [("Corruption", False)] + [(f"{_level_text(level)}", True) for level in levels]
    columns.append(("Median critical severity", True))
    table = Table(columns, caption=(
        f"Model {model}: error at each severity (the family's value at that level underneath), and the median "
        "over digits of the lowest severity that changes a digit's prediction (never: most digits hold at "
        "every level). Brackets: 95% bootstrap intervals over digits."))
    curve = curves.loc[curves["model"] == model].set_index(["corruption", "level"])
    worst = critical.loc[critical["model"] == model].set_index("corruption")
    for corruption in corruptions:
        if corruption.label not in worst.index:
            continue
        cells = [Cell(corruption.label, corruption.label)]
        for level in levels:
            if (corruption.label, level) not in curve.index:
                cells.append(Cell("–"))
                continue
            row = curve.loc[(corruption.label, level)]
            cell = estimate_cell(row, "error", True)
            cells.append(Cell(cell.text, cell.sort, f"{cell.note} {magnitude_text(row['magnitude'], corruption.unit)}"))
        row = worst.loc[corruption.label]
        value, low, high = (row[f"critical_severity{end}"] for end in ("", "_low", "_high"))
        sort = 1e300 if np.isinf(value) else (float(value) if finite(value) else None)
        cells.append(Cell(_level(value), sort, f"[{_level(low)}, {_level(high)}]" if not pd.isna(low) else ""))
        table.rows.append(cells)
    return table


def _level(value: float) -> str:
    """A (median) severity level: "never" for +inf, "4", "4.5"."""
    if pd.isna(value):
        return "–"
    return "never" if np.isinf(value) else f"{float(value):g}"


def _level_text(level: float) -> str:
    return f"Severity {int(level)}" if float(level).is_integer() and 1 <= level <= 5 else f"{level:g}"


def ranking_table(ranking: pd.DataFrame, reference: str) -> Table:
    """The comparison's models ranked by mCE, with what each significantly beats."""
    table = Table([("Rank", True), ("Model", False), ("mCE", True), ("Mean error", True), ("Beats", False)], caption=(
        f"Ordered by mCE (relative to {reference}; lower is more robust). = marks a shared rank: the paired "
        "bootstrap interval of the two models' mCE difference includes 0. Beats: models with a significantly "
        "higher mCE. Brackets: 95% paired bootstrap intervals over digits."))
    for _, row in ranking.iterrows():
        table.rows.append([Cell(rank_text(row["rank"], row["tied"]), int(row["rank"])), Cell(row["model"], row["model"]),
                           _ratio_cell(row, "mce"), estimate_cell(row, "mean_error", True),
                           Cell(", ".join(row["beats"]) or "–")])
    return table


def study_section(
    scores: BenchmarkScores | None,
    severities: tuple[pd.DataFrame, pd.DataFrame] | None,
    corruptions: Sequence[Corruption],
    models: Sequence[str],
) -> dict[str, Any] | None:
    """The study report's MNIST-C section, or None for a run without MNIST-C corruptions."""
    if scores is None:
        return None
    shown = [c for c in corruptions if c.label in set(scores.corruptions["corruption"])]
    tables = scores_tables(scores, shown, list(models))
    return {
        "reference": scores.reference,
        "count": len(shown),
        "overall": tables["overall"],
        "corruptions": tables["corruptions"],
        "severities": severity_table(severities, shown, models[0]) if severities is not None else None,
        "primary": models[0],
    }


def comparison_section(
    scores: BenchmarkScores | None, ranking: pd.DataFrame | None, corruptions: Sequence[Corruption], models: Sequence[str]
) -> dict[str, Any] | None:
    """The comparison report's MNIST-C section (ranking by mCE, per corruption), or None."""
    if scores is None or ranking is None:
        return None
    shown = [c for c in corruptions if c.label in set(scores.corruptions["corruption"])]
    return {
        "reference": scores.reference,
        "count": len(shown),
        "ranking": ranking_table(ranking, scores.reference),
        "corruptions": scores_tables(scores, shown, list(models))["corruptions"],
    }
