"""The study report: one self-contained HTML page that shows where and how probabilities swing.

:func:`write_report` reads a run directory, or takes a run already read (through
:mod:`robust_mnist.report_data`, never a model or perturbation code), takes the aggregates
computed there, draws them with :mod:`robust_mnist.plots` (in worker processes for a large
study, :mod:`robust_mnist.html.figures`) and renders
``templates/report.html.j2`` into a single file
(:func:`robust_mnist.html.page.render_page`). This module builds the page's header, findings,
reproduction panel and summary table; the per-family sections are in
:mod:`robust_mnist.html.study_sections`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import plots
from ..report_data import (
    HEADLINE_FLIP,
    N_BOOT,
    Aggregates,
    FamilyInfo,
    RunData,
    compute_aggregates,
    fragility_order,
    headline_magnitude,
    load_report_data,
    one,
    select,
)
from ..benchmark_metrics import benchmark_corruptions
from ..rundir import Run, read_run_info, slug
from .components import Cell, Segment, Table, critical_cell, estimate_cell, estimate_segments, text_cell
from .figures import HERE, FigurePool
from .format import compact, data_text, date, duration, finite, magnitude_range, magnitude_text, percent
from .mnist_c_sections import METHODS as MNIST_C_METHODS
from .mnist_c_sections import study_section as mnist_c_section
from .page import render_page
from .study_sections import (
    ambiguity_figure,
    ambiguity_section,
    critical_figures,
    family_sections,
    galleries,
    highlight_gallery,
    morph_sections,
    per_class_figure,
    per_class_section,
)

logger = logging.getLogger(__name__)

#: A study with at least this many perturbation families gets its report's figures drawn in
#: worker processes (three or more per family): starting the workers pays from about twenty.
PARALLEL_FAMILIES = 8
#: At most this many worker processes draw figures.
MAX_FIGURE_WORKERS = 4

#: The article's reported training result, for the reproduction panel.
ARTICLE = {"val_accuracy": 0.984, "val_loss": 0.0537, "stopped_epoch": 30}


def default_report_path(run_dir: str | os.PathLike) -> Path:
    """``reports/<slug of the study name>.html``, relative to the current directory."""
    run = read_run_info(run_dir)
    return Path("reports") / f"{slug(str(run.get('study', {}).get('name') or Path(run_dir).name))}.html"


#: How the findings say "applying family X at magnitude m"; {m} is the magnitude with its unit.
PHRASES = {
    "rotate": "Rotating by {m}",
    "translate_x": "Shifting sideways by {m}",
    "translate_y": "Shifting vertically by {m}",
    "translate": "Shifting by {m} in a random direction",
    "scale": "Scaling by {m}",
    "shear": "Shearing by {m}",
    "elastic": "An elastic distortion of {m}",
    "thin": "Thinning the strokes by {m}",
    "thicken": "Thickening the strokes by {m}",
    "gaussian_noise": "Gaussian noise of sd {m}",
    "salt_pepper": "Salt-and-pepper noise on {m}",
    "blur": "Blurring with sigma {m}",
    "occlude": "An occluding patch of {m}",
    "morph": "Morphing to t = {m} toward another digit",
    "compose": "The composition {label} at {m}",
}

#: The methods section: each quantity the page shows, defined in a sentence or two.
METHODS = (
    ("Accuracy", "The share of perturbed digits whose predicted class (the most probable one) "
     "is the true class. For random families the draws of a digit are averaged first."),
    ("Flip rate", "The share of perturbed digits whose prediction differs from the model's "
     "prediction on the clean digit, right or wrong."),
    ("Mean p(true class)", "The model's probability of the true class, averaged over digits: it "
     "shows confidence draining away before the prediction flips."),
    ("Swing", "For one digit, the range (maximum minus minimum) of the true-class probability "
     "along a family's sweep of magnitudes, clean digit included; averaged over draws at each "
     "magnitude. 0 means the probability never moved, 1 that it went from certain to zero."),
    ("Critical magnitude", "The smallest |magnitude| at which a digit's prediction differs from "
     "its clean prediction (for random families: in a majority of draws); \"never\" when it holds "
     "across the whole grid. Family medians are over digits. For a deterministic family run with "
     "refine = k in the study file, each digit's value is then refined with the model by k bisection "
     "steps between the grid points around it (the last where the prediction held and the first "
     "where it changed), to 1/2^k of the grid spacing."),
    ("Worst-case accuracy", "The share of digits classified correctly at every magnitude of the "
     "grid (clean included), as a grid-search adversary would find them (Engstrom et al. 2019)."),
    ("Flip probability", "ImageNet-P's measure (Hendrycks and Dietterich 2019): for ordered "
     "families, the share of consecutive magnitude steps at which the prediction changes; for "
     "random (noise) families, the share of draws whose prediction differs from the clean one."),
    ("Morph flip point t*", "Along a morph from a source digit (t = 0) to a digit of another "
     "class (t = 1), the t at which the target class overtakes the others, interpolated "
     "linearly between grid points; sharpness is the steepest rise of the target probability "
     "per unit t."),
    ("Ambiguity (margin)", "The clean prediction's top probability minus the second one: small "
     "for digits the model finds ambiguous."),
    ("Stroke thickness and slant", "Morphometrics of the clean digits (Morpho-MNIST's "
     "definitions): thickness is the mean stroke width in pixels, slant the shear of the digit "
     "in degrees."),
    ("Mean swing and flip rate over families", "A digit's swing, and the share of its magnitudes "
     "at which its prediction flips, each averaged over all the families it was perturbed by: one "
     "instability score per digit, used in the ambiguity and shape figure."),
    ("Confidence intervals", "Every interval is a 95% percentile bootstrap over digits "
     f"({N_BOOT} resamples, seeded with the study seed), so it reflects which digits happened to "
     "be in the study. Correlations are Spearman rank correlations with a pairs bootstrap."),
)


def header_section(data: RunData) -> dict[str, Any]:
    """Title, description and the metadata list of the page header."""
    run = data.run
    study = run.get("study", {})
    models = []
    for name in data.models:
        info = run.get("models", {}).get(name, {}) or {}
        source = f"{info['arch']}, seed {info['seed']}" if info.get("arch") else (info.get("path") or "")
        if info.get("engine") == "onnx":  # older runs, and the tests' numpy models, say nothing
            source += f" · on ONNX Runtime {info.get('onnxruntime') or ''}".rstrip()
        elif info.get("engine") == "keras":
            source += " · on TensorFlow"
        models.append({"name": name, "source": source, "checksum": info.get("checksum") or ""})
    versions = run.get("versions", {}) or {}
    status = run.get("status", "complete")
    return {
        "name": str(study.get("name") or data.run_dir.name),
        "description": str(study.get("description") or ""),
        "models": models,
        "data": data_text(run),
        "data_checksum": str((run.get("data") or {}).get("checksum") or ""),
        "seed": run.get("seed", "–"),
        "families": len(data.families),
        "versions": " · ".join(f"{k} {v}" for k, v in versions.items() if v),
        "date": date(run),
        "duration": duration(run),
        "status": status,
        "unfinished": status != "complete",
        "command": " ".join(run.get("command") or []),
        "study_file": str(run.get("study_file") or ""),
        "run_dir": str(data.run_dir),
    }


def reproduction_section(data: RunData) -> Table | None:
    """The article's training result beside each model's, when a model came from training."""
    trained = [(name, (data.run.get("models", {}).get(name) or {}).get("training")) for name in data.models]
    trained = [(name, record) for name, record in trained if record]
    if not trained:
        return None
    columns = [("", False), ("Article", True)] + [(name, True) for name, _ in trained]
    rows = []
    for title, key, kind in (
        ("Validation accuracy", "val_accuracy", "percent"),
        ("Validation loss", "val_loss", "loss"),
        ("Stopped at epoch", "stopped_epoch", "int"),
        ("Test accuracy (10,000 digits)", "test_accuracy", "percent"),
    ):
        cells = [Cell(title, title)]
        for value in [ARTICLE.get(key)] + [record.get(key) for _, record in trained]:
            if not finite(value):
                cells.append(Cell("–", None))
            elif kind == "percent":
                cells.append(Cell(percent(value, 2), float(value)))
            elif kind == "loss":
                cells.append(Cell(f"{float(value):.4f}", float(value)))
            else:
                cells.append(Cell(f"{int(value)}", int(value)))
        rows.append(cells)
    return Table(columns, rows, sortable=False, css_class="compare",
                 caption="The article's figures (98.4% validation accuracy, loss 0.0537, early stop "
                 "at epoch 30) beside this run's training records.")


def _phrase(info: FamilyInfo, magnitude: float) -> str:
    text = PHRASES.get(info.family, "{label} at {m}").format(m=magnitude_text(magnitude, info.unit), label=info.label)
    return text if info.label == info.family or "{label}" in PHRASES.get(info.family, "{label}") else f"{text} ({info.label})"


def findings_section(data: RunData, agg: Aggregates) -> list[list[Segment]]:
    """The headline findings, as sentences of segments (plain text, numbers, intervals)."""
    model = data.models[0]
    findings: list[list[Segment]] = []
    clean = one(agg.clean_accuracy, model=model)
    if clean is not None:
        findings.append([("On the study's clean digits the model is ", "")]
                        + estimate_segments(clean, "correct") + [(" accurate.", "")])

    # Most and least fragile families, by worst-case accuracy over their grid. Morphs are left
    # out: at t = 1 the digit *is* another class, so changing the prediction is the point.
    info = {f.label: f for f in data.families}
    worst = fragility_order(data, agg)
    if len(worst) >= 1:
        first = worst.iloc[0]
        family = info.get(first["family"])
        sentence = [("Most fragile: ", ""), (str(first["family"]), "strong"), (". Only ", "")]
        sentence += estimate_segments(first, "worst_case_accuracy")
        sentence += [(" of digits stay correctly classified at every magnitude up to ", ""),
                     (magnitude_text(first["grid_max"], family.unit if family else ""), "num"),
                     (" (worst-case accuracy)", "")]
        if len(worst) > 1:
            last = worst.iloc[-1]
            sentence += [("; the least fragile, ", ""), (str(last["family"]), "strong"), (", keeps ", "")]
            sentence += estimate_segments(last, "worst_case_accuracy")
        findings.append(sentence + [(".", "")])

    # Ambiguity: do digits with a small clean margin swing more?
    pooled = {p["name"]: p for p in agg.pooled}
    margin = select(agg.correlations, model=model).dropna(subset=["correlation"])
    if "margin" in pooled:
        overall = pooled["margin"]
        if overall["correlation_high"] < 0:
            verdict = "Ambiguous digits swing more. "
        elif overall["correlation_low"] > 0:
            verdict = "Ambiguous digits swing less, not more. "
        else:
            verdict = "No clear relation between ambiguity and swing. "
        sentence = [(verdict, "strong"),
                    ("A digit's swing averaged over the families correlates with its clean margin at ρ = ", "")]
        sentence += estimate_segments(overall, "correlation", as_percent=False)
        strata = overall["strata"]
        if len(strata) >= 2:
            sentence += [("; the most ambiguous fifth of digits swings by ", "")]
            sentence += estimate_segments(strata.iloc[0], "swing", as_percent=False)
            sentence += [(" and flips at ", "")] + estimate_segments(strata.iloc[0], "flip_rate")
            sentence += [(" of magnitudes, the most confident fifth by ", "")]
            sentence += estimate_segments(strata.iloc[-1], "swing", as_percent=False)
            sentence += [(" and at ", "")] + estimate_segments(strata.iloc[-1], "flip_rate")
        if len(margin):
            negative = int((margin["correlation_high"] < 0).sum())
            strongest = margin.sort_values("correlation").iloc[0]
            sentence += [(f". Per family, the correlation is clearly negative under {negative} of {len(margin)}; "
                          "most strongly under ", ""), (str(strongest["family"]), "strong"), (" (ρ = ", "")]
            sentence += estimate_segments(strongest, "correlation", as_percent=False) + [(")", "")]
        findings.append(sentence + [(".", "")])

    for name, noun, more in (("thickness", "stroke thickness", "thicker"), ("slant", "slant", "more right-leaning")):
        if name not in pooled:
            continue
        row = pooled[name]
        if row["correlation_low"] > 0:
            verdict = f"{more} digits swing more"
        elif row["correlation_high"] < 0:
            verdict = f"{more} digits swing less"
        else:
            verdict = "no clear relation"
        findings.append([(f"Swing and {noun}: ", "strong"), (f"{verdict}; ρ = ", "")]
                        + estimate_segments(row, "correlation", as_percent=False) + [(".", "")])

    for morph in (f for f in data.families if f.is_morph):
        pairs = select(agg.morph_pairs, model=model, family=morph.label) if len(agg.morph_pairs) else pd.DataFrame()
        if len(pairs):
            # A pair needs a few paths to be quoted: one odd digit is not a finding.
            enough = max(3, int(pairs["n_digits"].median() // 2))
            pairs = pairs.loc[np.isfinite(pairs["t_star"]) & (pairs["n_digits"] >= enough)]
        if len(pairs):
            early = pairs.sort_values(["t_star", "n_digits"], ascending=[True, False]).iloc[0]
            findings.append([("Morphs ", ""), (f"({morph.label}) ", "") if morph.label != "morph" else ("", ""),
                             ("flip earliest from ", ""), (f"{int(early['label'])} to {int(early['target'])}", "strong"),
                             (": median t* = ", "")] + estimate_segments(early, "t_star", as_percent=False)
                            + [(f" over {int(early['n_digits'])} paths.", "")])
    return [[segment for segment in sentence if segment[0]] for sentence in findings]


def family_findings(data: RunData, agg: Aggregates) -> list[list[Segment]]:
    """One sentence per family at its headline magnitude, most fragile family first."""
    model = data.models[0]
    order = fragility_order(data, agg)["family"].tolist()
    info = {f.label: f for f in data.families}
    sentences = []
    for label in order + [f.label for f in data.families if f.label not in order]:
        family = info.get(label)
        curve = select(agg.per_magnitude, model=model, family=label)
        row = headline_magnitude(curve) if family else None
        if row is None:
            continue
        clean = one(curve, magnitude=0.0)
        largest = row["flip_rate"] < HEADLINE_FLIP
        sentence = [(_phrase(family, row["magnitude"]), "")]
        sentence += [(", the largest tested, flips only " if largest else " flips ", "")]
        sentence += estimate_segments(row, "flip_rate")
        sentence += [(" of predictions; accuracy ", "")] + estimate_segments(row, "accuracy")
        if clean is not None:
            sentence += [(f" (clean {percent(clean['accuracy'])})", "")]
        sentences.append(sentence + [(".", "")])
    return sentences


def summary_table(data: RunData, agg: Aggregates) -> Table:
    """Per family (and model): the key aggregates with their intervals, sortable."""
    several = len(data.models) > 1
    columns = ([("Model", False)] if several else []) + [
        ("Family", False), ("Grid", True), ("Worst-case acc.", True), ("Flip prob.", True),
        ("Median critical", True), ("Mean swing", True),
    ]
    rows = []
    for model in data.models:
        for family in data.families:
            key = {"model": model, "family": family.label}
            worst = one(agg.worst_case, **key)
            flips = one(agg.flip_probability, **key)
            critical = one(agg.critical_summary, **key)
            swing = one(agg.swing_summary, **key)
            digits = int(swing["n_digits"]) if swing is not None else 0
            unit = f"{family.unit} · " if family.unit and len(family.unit) <= 20 else ""
            draws = f" · {family.draws} draws" if family.draws > 1 else ""
            cells = [text_cell(model)] if several else []
            cells += [
                Cell(family.label, family.label, f"{unit}{digits:,} digits"),
                Cell(magnitude_range(family.magnitudes, family.unit), max((abs(m) for m in family.magnitudes), default=None),
                     f"{len(family.magnitudes)} points{draws}"),
                estimate_cell(worst, "worst_case_accuracy", True) if worst is not None else Cell("–"),
                estimate_cell(flips, "flip_probability", True) if flips is not None else Cell("–"),
                critical_cell(critical, family.unit),
                estimate_cell(swing, "swing") if swing is not None else Cell("–"),
            ]
            rows.append(cells)
    return Table(columns, rows, css_class="summary", caption=(
        "Worst-case acc.: correct at every magnitude of the grid. Flip prob.: ImageNet-P's flip "
        "probability. Median critical: the median magnitude at which predictions first change. "
        "Brackets: 95% bootstrap intervals over digits. Click a column header to sort."))


def build_context(run: str | os.PathLike | Run, figures: FigurePool = HERE) -> dict[str, Any]:
    """Everything ``report.html.j2`` renders, from a run directory or a run already read.

    Figures and digit strips are drawn by ``figures`` (:mod:`robust_mnist.html.figures`),
    those whose numbers come first first: a pool's workers draw while the rest is computed.
    """
    data = load_report_data(run)
    agg = compute_aggregates(data)
    family_galleries = {family.label: galleries(data, family, figures=figures) for family in data.families}
    histories = {name: (data.run.get("models", {}).get(name) or {}).get("training") or {} for name in data.models}
    histories = {name: record["history"] for name, record in histories.items() if record.get("history")}
    training_figure = figures.draw(plots.training_curves, histories, reference=ARTICLE) if histories else None
    morphs = morph_sections(data, agg, figures)
    # Then the figures of the quicker numbers, so that the workers draw them while the
    # per-magnitude curves are computed.
    critical = critical_figures(data, agg, figures)
    class_figure = per_class_figure(data, agg, figures)
    stratified_figure = ambiguity_figure(data, agg, figures)
    families = family_sections(data, agg, figures, family_galleries, critical)
    overview_figure = figures.draw(plots.overview_grid, select(agg.per_magnitude, model=data.models[0]),
                                   [(f.label, f.unit) for f in data.families]) if data.families else None
    ambiguity = ambiguity_section(data, agg, stratified_figure)
    classes = per_class_section(data, agg, class_figure)
    header = header_section(data)
    toc = [("findings", "Findings", []), ("overview", "Overview", [])]
    reproduction = reproduction_section(data)
    if reproduction is not None:
        toc.insert(0, ("reproduction", "Reproduction", []))
    mnist_c = mnist_c_section(agg.mnist_c, agg.mnist_c_severities, benchmark_corruptions(data.run), data.models)
    if mnist_c is not None:
        toc.append(("mnist-c", "MNIST-C", []))
    toc.append(("families", "Families", [(f["info"].anchor, f["info"].label) for f in families]))
    if morphs:
        toc.append(("morphs", "Morphs", []))
    toc += [("ambiguity", "Ambiguity and shape", []), ("classes", "Per class", []), ("methods", "Methods", [])]
    clean = one(agg.clean_accuracy, model=data.models[0])
    stats = [
        (f"{len(data.images):,}", "digits"),
        (f"{len(data.families)}", "perturbation families"),
        (compact(len(data.results)), "predictions"),
    ]
    if clean is not None:
        stats.append((percent(clean["correct"]), "clean accuracy"))
    return {
        "title": f"{header['name']}: robustness report",
        "stats": stats,
        "header": header,
        "reproduction": reproduction,
        "training_figure": training_figure,
        "findings": findings_section(data, agg),
        "highlight": highlight_gallery(data, agg, family_galleries=family_galleries),
        "family_findings": family_findings(data, agg),
        "summary": summary_table(data, agg),
        "overview_figure": overview_figure,
        "families": families,
        "morphs": morphs,
        "ambiguity": ambiguity,
        "classes": classes,
        "mnist_c": mnist_c,
        "methods": METHODS + (MNIST_C_METHODS if mnist_c is not None else ()),
        "toc": toc,
        "primary_model": data.models[0],
        "several_models": len(data.models) > 1,
        "palette": {"true": plots.TRUE_COLOUR, "wrong": plots.WRONG_COLOUR, "other": plots.OTHER_COLOUR},
    }


def figure_workers(run_info: dict[str, Any]) -> int:
    """How many processes should draw a run's report figures: one core computes the
    statistics, the others draw; none for a small study (see :data:`PARALLEL_FAMILIES`)."""
    if len(run_info.get("families") or {}) < PARALLEL_FAMILIES:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores - 1, MAX_FIGURE_WORKERS)


def write_report(
    run: str | os.PathLike | Run, out: str | os.PathLike | None = None, *, workers: int | None = 0
) -> Path:
    """Write the study's HTML report.

    Parameters
    ----------
    run : path-like or Run
        A run directory written by :func:`robust_mnist.run_study` (an unfinished run is reported
        as far as it got), or that run already read (:func:`robust_mnist.report_data.read_run`).
    out : path-like, optional
        The HTML file; default ``reports/<study name>.html`` (see :func:`default_report_path`).
    workers : int or None
        Processes that draw the figures while this one computes (:mod:`robust_mnist.html.figures`);
        None: :func:`figure_workers` (what ``robust-mnist report`` does); 0: none, all is done
        here. They are spawned, so a script that asks for them must guard its entry point
        with ``if __name__ == "__main__":``, as with any multiprocessing. The page is the same
        either way.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    RunDirError
        If ``run`` holds no run, a file of it is damaged, or the run has no results yet.
    """
    run_dir = run.path if isinstance(run, Run) else Path(run)
    out = default_report_path(run_dir) if out is None else Path(out)
    logger.info("report: reading %s and computing the aggregates", run_dir)
    if workers is None:
        workers = figure_workers(run.info if isinstance(run, Run) else read_run_info(run_dir))
    # The workers start now and load matplotlib while the statistics are computed.
    with FigurePool(workers) as figures:
        context = build_context(run, figures)
        path = render_page("report.html.j2", context, out)
    logger.info("report: wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
