"""Matplotlib figures for the reports: severity curves, critical magnitudes, confusion, morphs.

Every function takes its data and an optional ``ax`` and returns the
:class:`~matplotlib.figure.Figure`; none saves or shows anything (only :mod:`robust_mnist.html`
writes files). Figures are built with the object-oriented API (no pyplot), so no global figure
state or GUI backend is involved. Curve functions colour by model when the data holds several,
so the comparison report can overlay models with the same functions. The colours here are also
those of the digit galleries (:mod:`robust_mnist.strips`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies. The same hex
# values are used by the page's CSS, so a colour means the same thing in text and figures.
BLUE = "#0072B2"
VERMILLION = "#D55E00"
GREEN = "#009E73"
ORANGE = "#E69F00"
SKY = "#56B4E9"
PURPLE = "#CC79A7"
YELLOW = "#F0E442"
INK = "#222222"
GREY = "#8C8C8C"
LIGHT = "#E4E4E4"

#: Colours of successive models in overlaid curves.
MODEL_COLOURS = (BLUE, VERMILLION, GREEN, ORANGE, PURPLE, SKY, INK, YELLOW)
#: Colour of each standard curve metric when a single model is shown.
METRIC_COLOURS = {"accuracy": BLUE, "flip_rate": VERMILLION, "p_true": GREEN}
#: Colours of the ten-bar charts: the true class, a wrong predicted class, the rest.
TRUE_COLOUR, WRONG_COLOUR, OTHER_COLOUR = BLUE, VERMILLION, "#A8A8A8"

#: Matplotlib settings of every report figure: small, quiet axes that match the page's text.
STYLE = {
    # Text stays text in the SVG (a fraction of the bytes of glyph outlines); the list ends in
    # the generic family, so a browser without DejaVu Sans still draws a sans-serif face.
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "svg.fonttype": "none",
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 8.5,
    "axes.edgecolor": "#555555",
    "axes.linewidth": 0.7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#E6E6E6",
    "grid.linewidth": 0.6,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 3.5,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "image.interpolation": "none",
}

#: Width in inches of a figure that fills the report's text column.
COLUMN_WIDTH = 7.2


def _axes(
    ax: Axes | None, size: tuple[float, float], margins: dict[str, float] | None = None
) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``size`` inches with one axes.

    ``margins`` (``subplots_adjust`` fractions) fix the layout of a new figure: much faster
    than a layout engine, which measures every text several times.
    """
    if ax is not None:
        return ax.figure, ax
    if margins is None:
        fig = Figure(figsize=size, layout="constrained")
    else:
        fig = Figure(figsize=size)
        fig.subplots_adjust(**margins)
    return fig, fig.add_subplot()


def _label(name: str, unit: str) -> str:
    return f"{name} ({unit})" if unit else name


def severity_curve(
    data: pd.DataFrame,
    metric: str,
    *,
    ax: Axes | None = None,
    hue: str = "model",
    color: str | None = None,
    title: str | None = None,
    xlabel: str = "magnitude",
    percent: bool = False,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """One metric against magnitude, with its confidence band, one line per ``hue`` value.

    Parameters
    ----------
    data : pandas.DataFrame
        Columns ``magnitude``, ``<metric>``, ``<metric>_low``, ``<metric>_high`` and, when
        several lines are drawn, ``hue``. Rows of one line need not be sorted.
    metric : str
        The column to draw.
    ax : matplotlib.axes.Axes, optional
        Draw into this axes instead of a new figure.
    hue : str
        Column naming the lines (the model); one line per distinct value, coloured from
        :data:`MODEL_COLOURS`, with a legend when there are several.
    color : str, optional
        Colour of a single line (default: the metric's colour in :data:`METRIC_COLOURS`).
    percent : bool
        Show values (fractions) as percentages.
    ylim : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    with matplotlib.rc_context(STYLE):
        fig, ax = _axes(ax, (3.2, 2.4))
        groups = list(data.groupby(hue, sort=False)) if hue in data and data[hue].nunique() > 1 else [(None, data)]
        for index, (name, group) in enumerate(groups):
            group = group.sort_values("magnitude")
            if name is None:
                colour = color or METRIC_COLOURS.get(metric, BLUE)
            else:
                colour = MODEL_COLOURS[index % len(MODEL_COLOURS)]
            x = group["magnitude"].to_numpy(float)
            low, high = f"{metric}_low", f"{metric}_high"
            if low in group and high in group:
                ax.fill_between(x, group[low].to_numpy(float), group[high].to_numpy(float),
                                color=colour, alpha=0.22, linewidth=0)
            ax.plot(x, group[metric].to_numpy(float), marker="o", color=colour,
                    label=None if name is None else str(name))
        if len(groups) > 1:
            ax.legend(loc="best")
        if percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
        return fig


#: The curves drawn for every family: (column, title, shown as a percentage).
FAMILY_METRICS = (
    ("accuracy", "Accuracy", True),
    ("flip_rate", "Flip rate", True),
    ("p_true", "Mean p(true class)", False),
)


def family_curves(
    data: pd.DataFrame,
    *,
    unit: str = "",
    metrics: Sequence[tuple[str, str, bool]] = FAMILY_METRICS,
    hue: str = "model",
) -> Figure:
    """Side-by-side severity curves of one family (accuracy, flip rate, mean p(true)).

    Parameters
    ----------
    data : pandas.DataFrame
        One family's aggregates per magnitude (and model): the columns that
        :func:`severity_curve` needs for each metric.
    unit : str
        The family's magnitude unit, for the x label.
    metrics : sequence of (column, title, percent)
    hue : str
        Column naming the models.

    Returns
    -------
    matplotlib.figure.Figure
        One row of ``len(metrics)`` panels sharing the y range [0, 1].
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH, 2.35))
        fig.subplots_adjust(left=0.068, right=0.995, bottom=0.19, top=0.9, wspace=0.3)
        axes = fig.subplots(1, len(metrics), sharex=True)
        for ax, (column, title, percent) in zip(np.atleast_1d(axes), metrics):
            severity_curve(data, column, ax=ax, hue=hue, title=title,
                           xlabel=_label("magnitude", unit), percent=percent, ylim=(-0.03, 1.03))
        for ax in np.atleast_1d(axes)[1:]:  # one legend naming the models is enough
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        return fig


def overview_grid(
    data: pd.DataFrame,
    families: Sequence[tuple[str, str]],
    *,
    metrics: Sequence[str] = ("accuracy", "flip_rate"),
    columns: int = 5,
) -> Figure:
    """Small multiples: accuracy and flip rate against magnitude, one panel per family.

    Parameters
    ----------
    data : pandas.DataFrame
        Per-magnitude aggregates of one model: ``family``, ``magnitude`` and, for each
        metric, ``<metric>``, ``<metric>_low``, ``<metric>_high``.
    families : sequence of (label, unit)
        The panels, in reading order.
    metrics : sequence of str
        Drawn in every panel, coloured as in :data:`METRIC_COLOURS`.
    columns : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        All panels share the y range [0, 1] (shown as percentages).
    """
    names = {"accuracy": "accuracy", "flip_rate": "flip rate", "p_true": "mean p(true)"}
    rows = max(1, -(-len(families) // columns))
    height = 0.45 + 1.45 * rows
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH, height))
        fig.subplots_adjust(left=0.075, right=0.99, bottom=0.5 / height, top=1 - 0.42 / height,
                            wspace=0.12, hspace=0.75)
        axes = np.atleast_2d(fig.subplots(rows, columns, sharey=True, squeeze=False))
        for ax in axes.ravel()[len(families):]:
            ax.set_visible(False)
        for ax, (label, unit) in zip(axes.ravel(), families):
            rows_of = data.loc[data["family"] == label].sort_values("magnitude")
            x = rows_of["magnitude"].to_numpy(float)
            for metric in metrics:
                colour = METRIC_COLOURS.get(metric, BLUE)
                ax.fill_between(x, rows_of[f"{metric}_low"].to_numpy(float), rows_of[f"{metric}_high"].to_numpy(float),
                                color=colour, alpha=0.22, linewidth=0)
                ax.plot(x, rows_of[metric].to_numpy(float), color=colour, linewidth=1.3, marker="o",
                        markersize=2, label=names.get(metric, metric))
            ax.set_title(str(label), fontsize=8, loc="left")
            ax.set_xlabel(unit, fontsize=7, labelpad=1)
            ax.tick_params(labelsize=6.5, pad=1.5)
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.set_yticks([0, 0.5, 1])
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncol=len(metrics), bbox_to_anchor=(0.99, 1.0))
        return fig


def training_curves(
    histories: dict[str, dict[str, Sequence[float]]],
    *,
    reference: dict[str, float] | None = None,
) -> Figure:
    """Validation accuracy and loss per epoch, with the article's figures as reference lines.

    Parameters
    ----------
    histories : dict of str to dict
        Per model name, Keras's history: lists ``val_accuracy`` and ``val_loss`` (and
        optionally ``accuracy``, ``loss``), one value per epoch.
    reference : dict, optional
        ``val_accuracy``, ``val_loss`` and ``stopped_epoch`` to mark (the article's).

    Returns
    -------
    matplotlib.figure.Figure
        Two panels side by side.
    """
    reference = reference or {}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH, 2.1))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.21, top=0.88, wspace=0.25)
        axes = fig.subplots(1, 2, sharex=True)
        for ax, key, title in ((axes[0], "val_accuracy", "Validation accuracy"),
                               (axes[1], "val_loss", "Validation loss")):
            for index, (name, history) in enumerate(histories.items()):
                values = np.asarray(history.get(key, []), dtype=float)
                if len(values):
                    ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=2.5,
                            color=MODEL_COLOURS[index % len(MODEL_COLOURS)], label=str(name))
            if key in reference:
                ax.axhline(reference[key], color=GREY, linestyle="--", linewidth=0.9)
                text = f"{100 * reference[key]:.1f}%" if key == "val_accuracy" else f"{reference[key]:.4g}"
                ax.annotate(f"article {text}", (1, reference[key]), xycoords=("axes fraction", "data"),
                            xytext=(-2, 3), textcoords="offset points", ha="right", fontsize=7, color=GREY)
            if "stopped_epoch" in reference:
                ax.axvline(reference["stopped_epoch"], color=GREY, linestyle=":", linewidth=0.9)
            ax.set_title(title)
            ax.set_xlabel("epoch")
        if "val_loss" in reference:
            axes[1].set_ylim(0, None)
        if "val_accuracy" in reference:
            low = min([reference["val_accuracy"]] + [min(h.get("val_accuracy", [1.0]) or [1.0]) for h in histories.values()])
            axes[0].set_ylim(max(0.0, low - 0.005), 1.0)
            axes[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        if len(histories) > 1:
            axes[0].legend(loc="lower right")
        return fig


def critical_magnitude_plot(
    critical: np.ndarray,
    grid: np.ndarray,
    *,
    ax: Axes | None = None,
    unit: str = "",
    color: str = VERMILLION,
) -> Figure:
    """Distribution of the digits' critical magnitudes, with the cumulative share flipped.

    Parameters
    ----------
    critical : (N,) ndarray of float
        Each digit's critical magnitude: the smallest |magnitude| at which its prediction
        changed; NaN or inf for a digit that never flipped within the grid.
    grid : (M,) ndarray of float
        The family's magnitude grid. Signed grids pool both signs by size. A digit counts at
        the first grid size at or above its critical magnitude: a refined (bisected) value
        between two grid sizes counts at the larger, where the grid first sees the flip.
    unit : str
    color : str

    Returns
    -------
    matplotlib.figure.Figure
        Bars: share of digits first flipping at each grid size, and a grey "never" bar;
        line: share flipped by each size.
    """
    critical = np.abs(np.asarray(critical, dtype=float))
    sizes = np.unique(np.abs(np.asarray(grid, dtype=float)))
    sizes = sizes[sizes != 0]
    n = max(len(critical), 1)
    flipped = critical[np.isfinite(critical)]
    # Bin i holds (sizes[i - 1], sizes[i]]: where the grid first sees the flip.
    bins = np.minimum(np.searchsorted(sizes, flipped, side="left"), max(len(sizes) - 1, 0))
    counts = np.bincount(bins, minlength=len(sizes)) if len(sizes) else np.zeros(0, dtype=int)
    never = len(critical) - len(flipped)
    signed = (np.asarray(grid, dtype=float) < 0).any()
    with matplotlib.rc_context(STYLE):
        fig, ax = _axes(ax, (3.5, 2.7), dict(left=0.16, right=0.98, bottom=0.17, top=0.86))
        positions = np.arange(len(sizes))
        ax.bar(positions, counts / n, width=0.68, color=color, alpha=0.85, label="first flips here")
        ax.bar([len(sizes)], [never / n], width=0.68, color=LIGHT, edgecolor=GREY, linewidth=0.6,
               label="never flips")
        ax.plot(positions, np.cumsum(counts) / n, color=INK, marker="o", markersize=2.8,
                linewidth=1.1, label="flipped by then")
        labels = [f"{value:g}" for value in sizes]
        ax.set_xticks(list(positions) + [len(sizes)], labels + ["never"])
        if len(sizes) > 10:
            for index, tick in enumerate(ax.get_xticklabels()[:-1]):
                tick.set_visible(index % 2 == 0)
        ax.set_ylim(0, 1.03)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel(_label("critical magnitude" + (" |m|" if signed else ""), unit))
        ax.set_ylabel("share of digits")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, handlelength=1.2,
                  columnspacing=1.0, borderaxespad=0.2)
        return fig


def confusion_plot(
    matrix: np.ndarray,
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """What a distorted digit becomes: the true-class by predicted-class matrix.

    Parameters
    ----------
    matrix : (10, 10) array_like of float
        Counts (or shares) with true classes in rows, predicted classes in columns.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Rows normalised to shares; cells of at least 2% are written out; the diagonal is
        drawn in blue, errors in vermillion, so the eye goes to what digits turn into.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (10, 10):
        raise ValueError(f"confusion matrix must have shape (10, 10); got {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    rgba = np.ones((10, 10, 4))
    diagonal = np.eye(10, dtype=bool)
    for mask, colour in ((diagonal, BLUE), (~diagonal, VERMILLION)):
        rgb = np.array(matplotlib.colors.to_rgb(colour))
        # Errors are rarer than correct answers: a square-root scale keeps 5% visible.
        strength = np.sqrt(shares) if colour == VERMILLION else shares
        rgba[mask, :3] = 1 - strength[mask, None] * (1 - rgb)
    with matplotlib.rc_context(STYLE):
        fig, ax = _axes(ax, (3.5, 3.3), dict(left=0.1, right=0.98, bottom=0.12, top=0.92))
        ax.imshow(rgba, interpolation="none", aspect="equal")
        # Only cells of at least 2% are written: enough to read the matrix, and text is what
        # makes figures slow to lay out.
        for i, j in zip(*np.nonzero(shares >= 0.02)):
            share = shares[i, j]
            dark = share > (0.55 if i == j else 0.3)
            ax.text(j, i, f"{100 * share:.0f}", ha="center", va="center", fontsize=6.5,
                    color="white" if dark else INK)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if title:
            ax.set_title(title)
        return fig


def morph_trace(
    t: np.ndarray,
    p_source: np.ndarray,
    p_target: np.ndarray,
    *,
    t_star: float | None = None,
    source_class: int | None = None,
    target_class: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Source and target probabilities along a morph path, with the flip point t*.

    Parameters
    ----------
    t : (T,) ndarray of float
        Interpolation weights (0 = the source digit, 1 = the target).
    p_source, p_target : (T,) ndarray of float
        The model's probability of the source and of the target class at each t.
    t_star : float, optional
        Where the prediction left the source class (NaN or None when it never did).
    source_class, target_class : int, optional
        For the legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    with matplotlib.rc_context(STYLE):
        fig, ax = _axes(ax, (4.5, 1.8))
        order = np.argsort(t)
        t = np.asarray(t, float)[order]
        ax.plot(t, np.asarray(p_source, float)[order], color=BLUE, marker="o",
                label="p(source)" if source_class is None else f"p({source_class})")
        ax.plot(t, np.asarray(p_target, float)[order], color=VERMILLION, marker="o",
                label="p(target)" if target_class is None else f"p({target_class})")
        if t_star is not None and np.isfinite(t_star):
            ax.axvline(t_star, color=INK, linestyle="--", linewidth=0.9)
            ax.annotate(f"t* = {t_star:.2f}", (t_star, 1.0), xytext=(3, -2), textcoords="offset points",
                        ha="left", va="top", fontsize=7.5)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(t.min() - 0.03, t.max() + 0.03)
        ax.set_xlabel("morph weight t")
        ax.set_ylabel("probability")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
        return fig


def morph_figure(
    t: np.ndarray,
    images: np.ndarray,
    p_source: np.ndarray,
    p_target: np.ndarray,
    *,
    t_star: float | None = None,
    source_class: int | None = None,
    target_class: int | None = None,
) -> Figure:
    """A morph strip: the digits along t above the traced source and target probabilities.

    Parameters
    ----------
    t : (T,) ndarray of float
    images : (T, 28, 28) ndarray of float in [0, 1] or uint8
        The morphed digit at each t, ink bright (as MNIST stores it).
    p_source, p_target : (T,) ndarray of float
    t_star, source_class, target_class
        As in :func:`morph_trace`.

    Returns
    -------
    matplotlib.figure.Figure
        The digits sit above the trace at their t, drawn pixel-exact.
    """
    t = np.asarray(t, dtype=float)
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    spacing = np.diff(np.sort(t)).min() if len(t) > 1 else 1.0
    # The t range leaves half a digit of room at each end; the digits are as large as the row
    # allows without overlapping (at most an inch), and the figure is as tall as they need.
    lo, hi = t.min() - 0.5 * spacing, t.max() + 0.5 * spacing
    width = COLUMN_WIDTH
    left, right = 0.08, 0.86
    axes_width = (right - left) * width  # inches
    side = min(1.0, 0.92 * spacing / (hi - lo) * axes_width)  # inches
    margin_bottom, trace_height, gap, margin_top = 0.42, 1.1, 0.1, 0.04
    height = margin_bottom + trace_height + gap + side + margin_top
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height))
        ax = fig.add_axes((left, margin_bottom / height, right - left, trace_height / height))
        morph_trace(t, p_source, p_target, t_star=t_star, source_class=source_class,
                    target_class=target_class, ax=ax)
        ax.set_xlim(lo, hi)
        # The digits share one axes above the trace, aligned with it in t: one imshow each.
        strip = fig.add_axes((left, (margin_bottom + trace_height + gap) / height, right - left, side / height))
        half = side / axes_width * (hi - lo) / 2  # half a digit's width, in t units
        for value, image in zip(t, images):
            strip.imshow(image.astype(float) / scale, cmap="gray_r", vmin=0, vmax=1,
                         interpolation="none", aspect="auto", extent=(value - half, value + half, 0, 1))
            strip.add_patch(matplotlib.patches.Rectangle(
                (value - half, 0), 2 * half, 1, fill=False, edgecolor=LIGHT, linewidth=0.6))
        strip.set_xlim(lo, hi)
        strip.set_ylim(0, 1)
        strip.set_axis_off()
        return fig


def stratified_plot(
    data: pd.DataFrame,
    metric: str,
    *,
    x: str = "bin",
    ax: Axes | None = None,
    xlabel: str = "",
    ylabel: str = "",
    color: str = VERMILLION,
) -> Figure:
    """A metric's mean per bin of a digit property, with confidence intervals.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per bin, in display order: ``x`` (the bin's label or centre), ``<metric>``,
        ``<metric>_low``, ``<metric>_high``.
    metric : str
    x : str
        Column labelling the bins; numeric values are placed at their value, anything else
        at equal spacing.

    Returns
    -------
    matplotlib.figure.Figure
    """
    with matplotlib.rc_context(STYLE):
        fig, ax = _axes(ax, (3.5, 2.5))
        numeric = pd.api.types.is_numeric_dtype(data[x])
        positions = data[x].to_numpy(float) if numeric else np.arange(len(data))
        values = data[metric].to_numpy(float)
        errors = None
        if f"{metric}_low" in data and f"{metric}_high" in data:
            errors = np.vstack([values - data[f"{metric}_low"].to_numpy(float),
                                data[f"{metric}_high"].to_numpy(float) - values])
            errors = np.clip(np.nan_to_num(errors), 0, None)
        ax.errorbar(positions, values, yerr=errors, color=color, marker="o", capsize=2.5,
                    linewidth=1.4, elinewidth=1.0)
        if not numeric:
            ax.set_xticks(positions, [str(label) for label in data[x]])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return fig


def stratified_panels(
    panels: Sequence[tuple[pd.DataFrame, str, str, str]],
    *,
    metrics: Sequence[tuple[str, str, bool]],
) -> Figure:
    """A grid of :func:`stratified_plot` panels: one column per covariate, one row per metric.

    Parameters
    ----------
    panels : sequence of (data, x, xlabel, title)
        One column each: the per-bin table, its bin column, the x label and the title.
    metrics : sequence of (metric, ylabel, percent)
        One row each, sharing the y axis across the row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH, 0.6 + 2.0 * len(metrics)), layout="constrained")
        axes = fig.subplots(len(metrics), len(panels), sharey="row", sharex="col", squeeze=False)
        for row, (metric, ylabel, percent) in enumerate(metrics):
            for column, (data, x, xlabel, title) in enumerate(panels):
                ax = axes[row, column]
                stratified_plot(data, metric, x=x, ax=ax, xlabel=xlabel if row == len(metrics) - 1 else "",
                                ylabel=ylabel if column == 0 else "",
                                color=MODEL_COLOURS[column % len(MODEL_COLOURS)])
                if percent:
                    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
                if row == 0:
                    ax.set_title(title)
        return fig


def class_heatmap(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    vmax: float | None = None,
) -> Figure:
    """A family-by-class map of a per-class metric (mean swing), values written in the cells.

    Parameters
    ----------
    matrix : (F, 10) array_like of float
        One row per family, one column per true class; NaN cells stay blank.
    row_labels : sequence of str
        The families, top to bottom.
    title : str, optional
    vmax : float, optional
        The value drawn darkest (default: the largest in the matrix).

    Returns
    -------
    matplotlib.figure.Figure
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] != 10 or matrix.shape[0] != len(row_labels):
        raise ValueError(f"matrix must have shape ({len(row_labels)}, 10); got {matrix.shape}")
    top = vmax if vmax is not None else (np.nanmax(matrix) if np.isfinite(matrix).any() else 1.0)
    top = top if top > 0 else 1.0
    shares = np.clip(np.nan_to_num(matrix / top), 0, 1)
    rgb = np.array(matplotlib.colors.to_rgb(VERMILLION))
    rgba = np.ones(matrix.shape + (4,))
    rgba[..., :3] = 1 - shares[..., None] * (1 - rgb)
    with matplotlib.rc_context(STYLE):
        fig, ax = _axes(ax, (COLUMN_WIDTH * 0.8, 0.75 + 0.27 * len(row_labels)))
        ax.imshow(rgba, interpolation="none", aspect="auto")
        for i, j in zip(*np.nonzero(np.isfinite(matrix))):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6.8,
                    color="white" if shares[i, j] > 0.6 else INK)
        ax.set_xticks(range(10))
        ax.set_yticks(range(len(row_labels)), [str(label) for label in row_labels])
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xlabel("true class")
        ax.tick_params(length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if title:
            fig.suptitle(title, x=0.02, ha="left", fontsize=STYLE["axes.titlesize"],
                         fontweight=STYLE["axes.titleweight"])
        return fig


__all__ = [
    "BLUE", "VERMILLION", "GREEN", "ORANGE", "SKY", "PURPLE", "YELLOW", "INK", "GREY", "LIGHT",
    "MODEL_COLOURS", "METRIC_COLOURS", "STYLE", "COLUMN_WIDTH", "FAMILY_METRICS",
    "severity_curve", "family_curves", "overview_grid", "training_curves", "critical_magnitude_plot",
    "confusion_plot",
    "morph_trace", "morph_figure", "stratified_plot", "stratified_panels", "class_heatmap",
    "TRUE_COLOUR", "WRONG_COLOUR", "OTHER_COLOUR",
]
