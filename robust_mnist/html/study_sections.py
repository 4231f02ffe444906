"""The study report's per-family sections: curves, galleries, morphs, ambiguity, classes.

Each function turns the run (:class:`robust_mnist.report_data.RunData`) and its aggregates
(:class:`robust_mnist.report_data.Aggregates`) into the variables of one part of
``report.html.j2``: figures as data URIs (:mod:`robust_mnist.plots`, drawn by a
:class:`robust_mnist.html.figures.FigurePool`), sortable tables and digit galleries
(:mod:`robust_mnist.html.components`). They compute no statistic: every number shown comes
from the aggregates or from a metrics function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .. import plots
from ..morph_metrics import reach_fraction
from ..report_data import (
    Aggregates,
    FamilyInfo,
    RunData,
    fragility_order,
    headline_magnitude,
    one,
    select,
)
from ..strips import strip_geometry
from .components import (
    Cell,
    Gallery,
    Strip,
    Table,
    critical_cell,
    estimate_cell,
    estimate_segments,
    int_cell,
    make_strip,
    strip_scale,
)
from .figures import HERE, FigurePool
from .format import finite, grid_levels, magnitude_text, percent, significant

#: Digits per gallery (the runner stores up to 6 per selection).
GALLERY_SIZE = 4
#: Morph strips shown per morph family.
MORPH_EXAMPLES = 4
#: How the page names each property of :func:`robust_mnist.digit_metrics.pooled_instability`:
#: (title, axis label).
COVARIATES = {
    "margin": ("Ambiguity", "fifths of the clean margin\n(Q1: most ambiguous)"),
    "thickness": ("Stroke thickness", "fifths of stroke thickness\n(Q1: thinnest; median px)"),
    "slant": ("Slant", "fifths of slant\n(Q1: leaning left; median °)"),
}
#: Said under the ambiguity section's introduction when the run stored no morphometrics.
NO_MORPHOMETRICS = ("Stroke thickness and slant are left out: this run directory stores no "
                    "morphometrics of its digits (it was made before they were stored); run the "
                    "study again to see them.")


def _gallery_strips(data: RunData, family: FamilyInfo, selection: str, model_index: int,
                    scale: int, figures: FigurePool) -> list[Strip]:
    ex = data.exemplars
    key = f"{family.label}/{selection}"
    if key not in ex:
        return []
    chosen = [int(i) for i in ex[key][model_index] if i >= 0][:GALLERY_SIZE]
    gallery = list(ex[f"{family.label}/images"])
    magnitudes = ex[f"{family.label}/magnitudes"]
    strips = []
    for image in chosen:
        k = gallery.index(image)
        probabilities = ex[f"{family.label}/probs"][model_index, k]
        label = int(data.labels[image])
        swing = float(ex[f"{family.label}/swing"][model_index, k])
        critical = float(ex[f"{family.label}/critical"][model_index, k])
        details = [f"true {label}", f"swing {swing:.2f}",
                   "never flips" if not np.isfinite(critical) else f"flips at {magnitude_text(critical, family.unit)}"]
        clean_column = int(np.argmin(np.abs(magnitudes)))
        strips.append(make_strip(
            ex[f"{family.label}/strips"][k], probabilities, label,
            title=str(data.ids[image]), details=details,
            reference=int(probabilities[clean_column].argmax()), scale=scale, encode=figures.encode))
    return strips


GALLERIES = (
    ("unstable", "Most unstable digits", "the largest swing of the true-class probability along the sweep", True),
    ("early_flip", "Earliest flips", "the smallest critical magnitude (any draw)", False),
    ("stable", "Most stable digits", "the smallest swing, among digits classified correctly when clean", False),
)


def galleries(data: RunData, family: FamilyInfo, model_index: int = 0, figures: FigurePool = HERE) -> list[Gallery]:
    """The family's three galleries, from exemplars.npz (empty when the run has none); their
    strips encoded by ``figures``."""
    ex = data.exemplars
    if f"{family.label}/magnitudes" not in ex:
        return []
    magnitudes = ex[f"{family.label}/magnitudes"]
    scale = strip_scale(len(magnitudes))
    header = ["clean" if m == 0 else magnitude_text(m, family.unit, short=True) for m in magnitudes]
    result = []
    for selection, title, description, is_open in GALLERIES:
        strips = _gallery_strips(data, family, selection, model_index, scale, figures)
        if strips:
            result.append(Gallery(title, f"Selected by {description}.", header,
                                  strip_geometry(scale)["cell"], strips, is_open))
    return result


def highlight_gallery(data: RunData, agg: Aggregates, size: int = 3,
                      family_galleries: Mapping[str, list[Gallery]] | None = None) -> Gallery | None:
    """The article's figure, systematically: the most unstable digits of the most fragile family.

    ``family_galleries``: each family's :func:`galleries`, when the caller has them.
    """
    info = {f.label: f for f in data.families}
    for label in fragility_order(data, agg)["family"]:
        family = info.get(label)
        if family is None:
            continue
        found = family_galleries[label] if family_galleries is not None else galleries(data, family)
        if found and found[0].strips:
            return replace(found[0], strips=found[0].strips[:size], title=f"The digits that swing most under {label}")
    return None


def critical_figures(data: RunData, agg: Aggregates, figures: FigurePool = HERE) -> dict[str, Any]:
    """Per family, the figure of its digits' critical magnitudes (drawn by ``figures``)."""
    model = data.models[0]
    return {
        family.label: figures.draw(
            plots.critical_magnitude_plot,
            select(agg.critical, model=model, family=family.label)["critical_magnitude"].to_numpy(float),
            agg.grids.get(family.label, np.empty(0)), unit=family.unit)
        for family in data.families
    }


def family_sections(data: RunData, agg: Aggregates, figures: FigurePool = HERE,
                    family_galleries: Mapping[str, list[Gallery]] | None = None,
                    critical: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per family: curves, critical magnitudes, what digits become, galleries.

    Figures are drawn by ``figures``; ``family_galleries`` (each family's :func:`galleries`)
    and ``critical`` (:func:`critical_figures`) when the caller has them.
    """
    model = data.models[0]
    critical_figure = critical_figures(data, agg, figures) if critical is None else critical
    sections = []
    for family in data.families:
        curve = select(agg.per_magnitude, family=family.label)
        primary = select(curve, model=model)
        drawn = {
            "curves": figures.draw(plots.family_curves, curve, unit=family.unit),
            "critical": critical_figure[family.label],
        }
        become, matrix = agg.confusion.get(family.label, (None, None))
        if become is not None:
            drawn["confusion"] = figures.draw(plots.confusion_plot, matrix,
                                              title=f"At {magnitude_text(become, family.unit)}: true → predicted (%)")
        headline = headline_magnitude(primary)
        clean = one(primary, magnitude=0.0)
        worst = one(agg.worst_case, model=model, family=family.label)
        facts = []
        if clean is not None:
            facts.append([("Clean accuracy ", "")] + estimate_segments(clean, "accuracy"))
        if headline is not None:
            facts.append([(f"at {magnitude_text(headline['magnitude'], family.unit)}: ", ""), ("flip rate ", "")]
                         + estimate_segments(headline, "flip_rate"))
        if worst is not None:
            facts.append([("worst-case accuracy ", "")] + estimate_segments(worst, "worst_case_accuracy"))
        options = ", ".join(f"{k} = {v}" for k, v in family.options.items())
        sections.append({
            "info": family,
            "grid": grid_levels(family.magnitudes, family.unit, family.severities),
            "options": options,
            "n_digits": int(select(agg.swing, model=model, family=family.label).shape[0]),
            "figures": drawn,
            "confusion_magnitude": magnitude_text(become, family.unit) if become is not None else "",
            "facts": facts,
            "galleries": family_galleries[family.label] if family_galleries is not None else galleries(data, family),
        })
    return sections


def morph_sections(data: RunData, agg: Aggregates, figures: FigurePool = HERE) -> list[dict[str, Any]]:
    """Per morph family: strips with traced probabilities, and the earliest-flipping pairs."""
    model = data.models[0]
    ex = data.exemplars
    sections = []
    for family in (f for f in data.families if f.is_morph):
        drawn = []
        label = family.label
        target_key = f"{label}/param/target_class"
        if f"{label}/strips" in ex and target_key in ex:
            transitions = select(agg.transitions, model=model, family=label, draw=0)
            by_image = transitions.set_index("image") if len(transitions) else pd.DataFrame()
            gallery = list(ex[f"{label}/images"])
            t = ex[f"{label}/magnitudes"]
            # The earliest flip, the largest swings (complete transitions) and the most stable.
            chosen: list[tuple[int, str]] = []
            for selection, count, why in (("early_flip", 1, "earliest flip"), ("unstable", MORPH_EXAMPLES - 2, "largest swing"),
                                          ("stable", 1, "most stable")):
                picks = [int(i) for i in ex.get(f"{label}/{selection}", np.empty((1, 0)))[0]
                         if i >= 0 and int(i) not in {c for c, _ in chosen}]
                chosen += [(image, why) for image in picks[:count]]
            for image, why in chosen:
                k = gallery.index(image)
                probabilities = ex[f"{label}/probs"][0, k]
                targets = ex[target_key][k]
                target = int(np.nanmax(targets)) if np.isfinite(targets).any() else None
                source = int(data.labels[image])
                if target is None:
                    continue
                t_star = None
                if image in by_image.index:
                    row = by_image.loc[[image]]
                    row = row.loc[row["target"] == target]
                    t_star = float(row["t_star"].iloc[0]) if len(row) else None
                figure = figures.draw(plots.morph_figure, t, ex[f"{label}/strips"][k], probabilities[:, source],
                                      probabilities[:, target], t_star=t_star, source_class=source, target_class=target)
                drawn.append({
                    "uri": figure,
                    "caption": f"{data.ids[image]} ({why}): {source} → {target}; "
                               + (f"t* = {t_star:.2f}" if t_star is not None and np.isfinite(t_star) else "the prediction never reaches the target"),
                })
        pairs = select(agg.morph_pairs, model=model, family=label) if len(agg.morph_pairs) else pd.DataFrame()
        table = Table([("Source", True), ("Target", True), ("Paths", True), ("Median t*", True),
                       ("Reached target", True), ("Sharpness", True)], caption=(
            "Median flip point t* per class pair (never: fewer than half the paths reach the target), "
            "the share of paths whose prediction reaches the target, and the mean sharpness (steepest "
            "rise of p(target) per unit t). Sorted by median t*; click a header to re-sort."))
        if len(pairs):
            reached = reach_fraction(select(agg.transitions, model=model, family=label))
            for _, row in pairs.sort_values(["t_star", "label", "target"]).iterrows():
                share = reached.get((row["label"], row["target"]), np.nan)
                table.rows.append([
                    int_cell(row["label"]), int_cell(row["target"]), int_cell(row["n_digits"]),
                    critical_cell(row.rename({"t_star": "critical_magnitude", "t_star_low": "critical_magnitude_low",
                                               "t_star_high": "critical_magnitude_high"}), "t"),
                    Cell(percent(share, 0), float(share) if finite(share) else None),
                    estimate_cell(row, "sharpness", digits=1),
                ])
        sections.append({"info": family, "figures": drawn, "pairs": table})
    return sections


def ambiguity_figure(data: RunData, agg: Aggregates, figures: FigurePool = HERE) -> Any:
    """Mean swing and flip rate per fifth of each digit property (None without any)."""
    if not agg.pooled:
        return None
    names = [COVARIATES[p["name"]] for p in agg.pooled]  # (title, axis label)
    return figures.draw(
        plots.stratified_panels,
        [(_fifths(p["strata"]), "fifth", xlabel, title) for p, (title, xlabel) in zip(agg.pooled, names)],
        metrics=(("swing", "mean swing", False), ("flip_rate", "mean flip rate", True)))


def ambiguity_section(data: RunData, agg: Aggregates, figure: Any) -> dict[str, Any]:
    """Instability against ambiguity, stroke thickness and slant: ``figure``
    (:func:`ambiguity_figure`) and a table."""
    model = data.models[0]
    names = [COVARIATES[p["name"]] for p in agg.pooled]  # (title, axis label)
    summary = [[(f"{title}: ", "strong"), ("ρ = ", "")] + estimate_segments(p, "correlation", as_percent=False)
               + [(f" over {p['n_digits']:,} digits", "")] for p, (title, _) in zip(agg.pooled, names)]
    table = Table([("Family", False), ("ρ (swing, margin)", True), ("Swing Q1 (most ambiguous)", True),
                   ("Swing Q5 (most confident)", True)],
                  caption="Per family: the Spearman correlation between each digit's swing and its clean "
                  "margin (negative: ambiguous digits swing more), and the mean swing of the fifth of digits "
                  "with the smallest and with the largest clean margin.")
    correlations = select(agg.correlations, model=model)
    for family in data.families:
        row = one(correlations, family=family.label)
        cells = [Cell(family.label, family.label),
                 estimate_cell(row, "correlation") if row is not None else Cell("–")]
        strata = select(agg.margin_strata, model=model, family=family.label).sort_values("bin")
        for position in (0, -1):
            cells.append(estimate_cell(strata.iloc[position], "swing") if len(strata) else Cell("–"))
        table.rows.append(cells)
    shape = agg.morphometrics is not None
    return {
        "figure": figure, "summary": summary, "table": table, "note": "" if shape else NO_MORPHOMETRICS,
        "figure_title": "Mean swing against ambiguity" + (", stroke thickness and slant" if shape else ""),
    }


def _fifths(strata: pd.DataFrame) -> pd.DataFrame:
    """The strata with their axis labels: ``Q1`` to ``Q5`` over the covariate's median."""
    labels = [f"Q{b + 1}\n{significant(m, 2)}" for b, m in zip(strata["bin"], strata["median"])]
    return strata.assign(fifth=labels)


def _per_class_rows(data: RunData, agg: Aggregates) -> pd.DataFrame:
    """The primary model's per-class rows, families in study order."""
    labels = {f.label: i for i, f in enumerate(data.families)}
    per_class = select(agg.per_class, model=data.models[0])
    per_class = per_class.assign(_order=per_class["family"].map(labels))
    return per_class.sort_values(["_order", "label"], kind="stable")


def per_class_figure(data: RunData, agg: Aggregates, figures: FigurePool = HERE) -> Any:
    """The family-by-class map of the mean swing (None without families)."""
    labels = [f.label for f in data.families]
    if not labels:
        return None
    matrix = np.full((len(labels), 10), np.nan)
    for _, row in _per_class_rows(data, agg).iterrows():
        if row["family"] in labels:
            matrix[labels.index(row["family"]), int(row["label"])] = row["swing"]
    return figures.draw(plots.class_heatmap, matrix, labels, title="Mean swing by family and true class")


def per_class_section(data: RunData, agg: Aggregates, figure: Any) -> dict[str, Any]:
    """Per true class: ``figure`` (:func:`per_class_figure`) and a sortable table."""
    model = data.models[0]
    per_class = _per_class_rows(data, agg)
    units = {f.label: f.unit for f in data.families}
    table = Table([("Family", False), ("Class", True), ("Digits", True), ("Clean acc.", True),
                   ("Flip rate", True), ("Mean swing", True), ("Median critical", True)],
                  caption="Per family and true class: clean accuracy, the flip rate over the family's "
                  "non-zero magnitudes, the mean swing and the median critical magnitude. Click a "
                  "header to sort.")
    critical = select(agg.critical_by_class, model=model)
    for _, row in per_class.iterrows():
        crit = one(critical, family=row["family"], label=row["label"])
        table.rows.append([
            Cell(str(row["family"]), str(row["family"])), int_cell(row["label"]), int_cell(row["n_digits"]),
            estimate_cell(row, "clean_accuracy", True), estimate_cell(row, "flip_rate", True), estimate_cell(row, "swing"),
            critical_cell(crit, units.get(row["family"], "")),
        ])
    return {"figure": figure, "table": table}

