"""The building blocks of the report pages: table cells, sortable tables, sentences, digit strips.

:class:`Table` and :class:`Cell` hold a sortable table (numeric columns sort by value, not by
their text); :func:`estimate_cell`, :func:`critical_cell` and :func:`difference_cell` show an
estimate with its interval; :func:`estimate_segments` does the same inside a sentence of
:data:`Segment`\\ s; :func:`make_strip` turns digits and their probabilities into a
:class:`Strip` (one PNG drawn pixel-exact by :func:`robust_mnist.strips.digit_strip`), and a
:class:`Gallery` holds strips under one header. The templates' macros render them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..strips import digit_strip, strip_geometry, strip_palette
from .format import finite, interval, magnitude_text, number, percent, points, signed
from .page import png_data_uri

#: Width in CSS pixels of the text column (47rem), which strips should not exceed.
COLUMN_PIXELS = 752

#: A piece of a sentence: ``(text, style)`` with style "" plain, "num" a number, "ci" an
#: interval, "strong" emphasised.
Segment = tuple[str, str]


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown, and the value it sorts by (numbers sort numerically)."""

    text: str
    sort: float | str | None = None
    note: str = ""  # secondary text (an interval), shown muted after the main text


@dataclass
class Table:
    """A table for the page; sortable by clicking a header when ``sortable``.

    Attributes
    ----------
    columns : list of (title, numeric) pairs
        ``numeric`` columns sort by their cells' ``sort`` value and are right-aligned.
    rows : list of list of Cell
    caption : str
    sortable : bool
    css_class : str
        Extra classes of the ``<table>`` element.
    """

    columns: list[tuple[str, bool]]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    sortable: bool = True
    css_class: str = ""


def estimate_cell(row: Any, metric: str, as_percent: bool = False, digits: int | None = None) -> Cell:
    """A cell showing ``<metric>`` with its interval ``<metric>_low``, ``<metric>_high``."""
    value = row[metric]
    if as_percent:
        text = percent(value, 1 if digits is None else digits)
    else:
        text = number(value, 2 if digits is None else digits)
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    note = interval(low, high, as_percent, digits) if finite(low) and finite(high) else ""
    sort = float(value) if finite(value) or (value is not None and np.isinf(value)) else None
    if sort is not None and np.isinf(sort):
        sort = 1e300 if sort > 0 else -1e300  # JSON-safe and still sorts last
    return Cell(text, sort, note)


def text_cell(value: Any) -> Cell:
    return Cell(str(value), str(value))


def int_cell(value: Any) -> Cell:
    return Cell(f"{int(value):,}", int(value))


def estimate_segments(row: Any, metric: str, as_percent: bool = True, digits: int | None = None) -> list[Segment]:
    """A sentence's segments for ``<metric>`` and its interval (``<metric>_low``, ``_high``)."""
    value = percent(row[metric], 1 if digits is None else digits) if as_percent else number(row[metric], 2 if digits is None else digits)
    return [(value, "num"), (" " + interval(row[f"{metric}_low"], row[f"{metric}_high"], as_percent, digits), "ci")]


def critical_cell(row: pd.Series | None, unit: str) -> Cell:
    """A median critical magnitude with its interval ("never" for +inf)."""
    if row is None:
        return Cell("–")
    value = row["critical_magnitude"]
    text = "never" if np.isinf(value) else magnitude_text(value, unit)
    note = ""
    if finite(row["critical_magnitude_low"]) or np.isinf(row["critical_magnitude_low"]):
        low, high = row["critical_magnitude_low"], row["critical_magnitude_high"]
        note = f"[{magnitude_text(low, unit) if np.isfinite(low) else 'never'}, {magnitude_text(high, unit) if np.isfinite(high) else 'never'}]"
    return Cell(text, 1e300 if np.isinf(value) else float(value), note)


def difference_cell(row: Mapping[str, Any], metric: str, as_points: bool) -> Cell:
    """A table cell with a signed difference, its interval, and ✱ when it excludes 0."""
    value, low, high = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
    show = points if as_points else signed
    star = " ✱" if row.get(f"{metric}_significant") else ""
    if not finite(value):
        return Cell("–", None)
    note = f"[{show(low)}, {show(high)}]" if finite(low) and finite(high) else ""
    if as_points:
        note = note.replace(" pp", "")
    return Cell(show(value) + star, float(value), note)


@dataclass
class Strip:
    """One digit's strip: the PNG of digits and bars, and the HTML labels under each cell."""

    title: str
    details: list[str]
    uri: Any  # the PNG data URI: str, or a worker's Drawing that renders as one
    width: int
    height: int
    cell: int
    labels: list[tuple[str, bool]]  # (text, is a flip) under each cell
    alt: str


@dataclass
class Gallery:
    """Strips sharing one column header (the magnitudes)."""

    title: str
    description: str
    header: list[str]
    cell: int
    strips: list[Strip]
    open: bool = True


def strip_scale(columns: int) -> int:
    """The largest integer upscaling (2 to 3) at which ``columns`` cells fit the text column."""
    geometry = strip_geometry(1)
    per_cell = COLUMN_PIXELS / max(columns, 1)
    scale = int((per_cell - (geometry["cell"] - 28)) // 30)
    return max(2, min(3, scale))


def make_strip(
    images: np.ndarray,
    probabilities: np.ndarray,
    true_class: int,
    *,
    title: str,
    details: Sequence[str] = (),
    reference: int | None = None,
    scale: int = 2,
    encode: Callable[..., Any] = png_data_uri,
) -> Strip:
    """A gallery strip: digits and ten-bar charts as one PNG, labelled by prediction.

    Parameters
    ----------
    images : (K, 28, 28) ndarray of uint8
    probabilities : (K, 10) ndarray of float
    true_class : int
    title : str
    details : sequence of str
        Short facts shown beside the title (id, swing...).
    reference : int, optional
        The clean prediction: labels of cells predicting something else are marked as flips.
    scale : int
    encode : callable
        ``encode(pixels, palette)``, the strip's PNG data URI (default
        :func:`robust_mnist.html.page.png_data_uri`; a worker's, see
        :meth:`robust_mnist.html.figures.FigurePool.encode`).
    """
    pixels = digit_strip(images, probabilities, true_class, scale=scale)
    predicted = probabilities.argmax(axis=1)
    top = probabilities.max(axis=1)
    labels = [(f"{p} · {q:.2f}", reference is not None and p != reference)
              for p, q in zip(predicted, top)]
    alt = f"{title}: predictions " + ", ".join(str(p) for p in predicted)
    return Strip(title=title, details=list(details), uri=encode(pixels, strip_palette()),
                 width=pixels.shape[1], height=pixels.shape[0],
                 cell=strip_geometry(scale)["cell"], labels=labels, alt=alt)
