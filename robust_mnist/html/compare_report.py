"""The comparison report: models of one study side by side, with their paired statistics.

:func:`write_comparison_report` renders a :class:`robust_mnist.compare.Comparison` into one
self-contained HTML file with the study report's page machinery
(:func:`robust_mnist.html.page.render_page`): findings, an overview of ranks, per family the
curves of every model, the ranking, paired differences, the tests at every magnitude and the
digits the models disagree on most, error consistency, seed noise and the methods. Every
number comes from the comparison's statistics (:mod:`robust_mnist.compare`,
:mod:`robust_mnist.ranking`, :mod:`robust_mnist.paired_stats`); this module only lays them out.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import plots
from ..benchmark_metrics import benchmark_corruptions
from ..compare import N_BOOT, Comparison
from ..metrics import PROBABILITY_COLUMNS
from ..paired_stats import disagreement
from ..rundir import CLEAN, slug
from ..strips import strip_geometry
from .components import (
    COLUMN_PIXELS,
    Cell,
    Gallery,
    Table,
    difference_cell,
    estimate_cell,
    make_strip,
    strip_scale,
)
from .format import (
    critical_text,
    data_text,
    date,
    duration,
    finite,
    interval,
    magnitude_text,
    number,
    p_value_text,
    percent,
    points,
    rank_text,
    signed,
)
from .mnist_c_sections import METHODS as MNIST_C_METHODS
from .mnist_c_sections import comparison_section as mnist_c_section
from .page import render_page, svg_data_uri

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
    return Path("reports") / f"{slug(comparison.name)}-compare.html"


def write_comparison_report(comparison: Comparison, out: str | os.PathLike | None = None) -> Path:
    """Write the comparison report: one self-contained HTML file (see :mod:`robust_mnist.html.page`).

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
    out = Path(out) if out is not None else default_comparison_path(comparison)
    return render_page("compare.html.j2", comparison_context(comparison), out)


def _critical_estimate(row: Mapping[str, Any], unit: str) -> Cell:
    value = row.get("critical_magnitude", math.nan)
    low, high = row.get("critical_magnitude_low"), row.get("critical_magnitude_high")
    sort = 1e300 if value is not None and np.isinf(value) else (float(value) if finite(value) else None)
    note = f"[{critical_text(low, unit)}, {critical_text(high, unit)}]" if low is not None and not pd.isna(low) else ""
    return Cell(critical_text(value, unit), sort, note)


def _family_title(label: str) -> str:
    return "clean digits" if label == CLEAN else label


def header_section(comparison: Comparison) -> dict[str, Any]:
    """The masthead: runs, models (with their training record), data, versions."""
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
             "date": date(run), "duration": duration(run)}
            for path, run in zip(comparison.run_dirs, comparison.runs)]
    versions = first.get("versions", {})
    return {
        "name": comparison.name,
        "description": first.get("study", {}).get("description", ""),
        "runs": runs,
        "models": models,
        "data": data_text(first),
        "data_checksum": first.get("data", {}).get("checksum", ""),
        "families": len(comparison.families),
        "seed": comparison.seed,
        "versions": " · ".join(f"{k} {v}" for k, v in versions.items() if v),
        "notes": list(comparison.notes),
    }


def overview_table(comparison: Comparison) -> Table:
    """Model by family: each cell the model's rank and its mean accuracy over magnitudes."""
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
            cells.append(Cell(f"{rank_text(row['rank'], row['tied'])} · {percent(row['accuracy'])}", float(row["accuracy"])))
        table.rows.append(cells)
    return table


def ranking_table(comparison: Comparison, family: str) -> Table:
    """One family's ranking with intervals and what each model significantly beats."""
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
        cells = [Cell(rank_text(row["rank"], row["tied"]), int(row["rank"])), Cell(row["model"], row["model"]),
                 estimate_cell(row, "accuracy", True)]
        if not clean:
            cells += [estimate_cell(row, "swing"), estimate_cell(row, "flip_rate", True),
                      _critical_estimate(row, unit)]
        cells += [Cell(", ".join(row["beats"]) or "–"), Cell(", ".join(row["crossing"]) or "–")]
        table.rows.append(cells)
    return table


def tests_table(comparison: Comparison, family: str) -> Table:
    """Every pair at every magnitude: accuracies, difference, discordant counts, p-values."""
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
            difference_cell({**row, "difference_significant": row["significant"]}, "difference", True),
            Cell(str(int(row["a_only"])), int(row["a_only"])), Cell(str(int(row["b_only"])), int(row["b_only"])),
            Cell(p_value_text(row["p_value"]), float(row["p_value"])),
            Cell(p_value_text(row["p_holm"]) + star, float(row["p_holm"])),
        ])
    return table


def differences_table(comparison: Comparison, family: str) -> Table:
    """Per pair: paired bootstrap differences and error consistency."""
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
            difference_cell(row, "accuracy", True), difference_cell(row, "swing", False),
            difference_cell(row, "flip_rate", True), difference_cell(row, "critical_magnitude", False),
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
    spread = comparison.seed_spread
    if spread.empty:
        return None
    titles = {"accuracy": "accuracy", "swing": "mean swing", "flip_rate": "flip rate",
              "critical_magnitude": "median critical"}
    in_points = {"accuracy", "flip_rate"}

    def show(metric: str, value: float) -> str:
        if metric in in_points:
            return f"{100 * value:.1f}%" if np.isfinite(value) else "–"
        return critical_text(value, "") if metric == "critical_magnitude" else (f"{value:.3f}" if np.isfinite(value) else "–")

    def gap(metric: str, value: float) -> str:
        return points(value).replace("+", "") if metric in in_points else (f"{value:.3f}" if np.isfinite(value) else "–")

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
        difference = points(row["difference"]) if metric in in_points else signed(row["difference"], 3)
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


def disagreement_gallery(comparison: Comparison, label: str, size: int = GALLERY_SIZE) -> Gallery | None:
    """The perturbed digits of a family on which the models disagree most, side by side.

    Candidates are the perturbed gallery digits stored in the runs' exemplars.npz (draw 0 at
    every magnitude of the sweep, the clean digit included). Each candidate (digit, magnitude)
    is scored by :func:`disagreement` of the models' probability vectors from the results
    table; the ``size`` highest-scoring digits are shown, each at its most disputed magnitude:
    the same image once per model, with that model's ten probabilities under it.

    Returns
    -------
    robust_mnist.html.components.Gallery or None
        None with fewer than two models or no stored images for the family.
    """
    entry = comparison.exemplars.get(label)
    models = comparison.models
    if entry is None or not entry["strips"] or len(models) < 2:
        return None
    unit = comparison.families.get(label, {}).get("unit", "")
    sweep = np.asarray(entry["magnitudes"], dtype=np.float64)
    images = np.array(sorted(entry["strips"]), dtype=np.int64)
    columns = ["model", "magnitude", "image", *PROBABILITY_COLUMNS]
    results = comparison.results
    perturbed = results.loc[(results["family"] == label) & (results["draw"] == 0)
                            & results["image"].isin(images) & results["magnitude"].isin(sweep), columns]
    clean = results.loc[(results["family"] == CLEAN) & results["image"].isin(images), columns]
    frame = pd.concat([perturbed, clean] if 0.0 in sweep else [perturbed], ignore_index=True)
    frame = frame.loc[frame["model"].isin(models)]
    wide = frame.pivot_table(index=["image", "magnitude"], columns="model",
                             values=PROBABILITY_COLUMNS, aggfunc="first").dropna()
    if wide.empty:
        return None
    probabilities = np.stack([wide.xs(m, axis=1, level="model")[PROBABILITY_COLUMNS].to_numpy(np.float64)
                              for m in models])  # (M, candidates, 10)
    score = disagreement(probabilities)
    candidates = wide.index.to_frame(index=False).assign(score=score, position=np.arange(len(score)))
    best = (candidates.sort_values(["score", "image", "magnitude"], ascending=[False, True, True], kind="stable")
            .drop_duplicates("image").head(size))
    # Digits as large as the text column allows (up to 4x): the columns are models, few.
    fits = [k for k in range(2, 5) if len(models) * strip_geometry(k)["cell"] <= COLUMN_PIXELS]
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
            sentence.append((f"; significantly better (McNemar p = {p_value_text(float(pair['p_value'].iloc[0]))}).", ""))
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
                        "accuracy by up to ", ""), (points(largest["range"]).replace("+", ""), "num"),
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
            "anchor": f"family-{index}-{slug(label).lower()}",
            "about": about,
            "curves": svg_data_uri(plots.family_curves(data, unit=about.get("unit", ""), hue="model")),
            "ranking": ranking_table(comparison, label),
            "differences": differences_table(comparison, label),
            "tests": tests_table(comparison, label),
            "gallery": disagreement_gallery(comparison, label),
        })
    seeds = seed_section(comparison)
    mnist_c = mnist_c_section(comparison.mnist_c, comparison.mnist_c_ranking,
                              benchmark_corruptions(comparison.runs[0]), comparison.models)
    toc = [("findings", "Findings", []), ("overview", "Overview", [])]
    toc += [("mnist-c", "MNIST-C", [])] if mnist_c is not None else []
    toc += [("clean", "Clean digits", []),
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
        "mnist_c": mnist_c,
        "methods": METHODS + (MNIST_C_METHODS if mnist_c is not None else ()),
        "toc": toc,
        "alpha": comparison.alpha,
        "palette": {"true": plots.TRUE_COLOUR, "wrong": plots.WRONG_COLOUR, "other": plots.OTHER_COLOUR},
    }
