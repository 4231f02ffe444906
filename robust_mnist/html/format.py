"""Text formatting of numbers, magnitudes, grids, intervals, dates and durations for the HTML reports.

Every number the study and comparison reports show goes through one of these functions, so a
percentage, an interval or a magnitude with its unit reads the same on every page: a missing
value is an en dash, a minus sign is a real minus (U+2212), an infinite critical magnitude is
"never". They format values computed elsewhere (:mod:`robust_mnist.metrics` and friends) and
compute nothing themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # for annotations only: the summary command need not load the benchmark's statistics
    from ..benchmark_metrics import Corruption


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (False for None, NaN, infinities and text)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def percent(value: Any, digits: int = 1) -> str:
    """``0.1234 -> "12.3%"``; a missing value is an en dash."""
    return f"{100 * float(value):.{digits}f}%" if finite(value) else "–"


def number(value: Any, digits: int = 2) -> str:
    """A float with ``digits`` decimals (inf as "never", NaN as an en dash)."""
    if value is not None and not isinstance(value, str) and np.isinf(value):
        return "never" if value > 0 else "−∞"
    return f"{float(value):.{digits}f}".replace("-", "−") if finite(value) else "–"


def significant(value: float, digits: int = 3) -> str:
    """``value`` with at most ``digits`` significant digits, never in exponent notation."""
    text = np.format_float_positional(float(value), precision=digits, unique=True, fractional=False, trim="-")
    return text.replace("-", "−")


def magnitude_text(value: Any, unit: str = "", short: bool = False) -> str:
    """A magnitude with its unit, as a reader would write it.

    ``30 degrees -> "30°"``, ``2 px -> "2 px"``, ``20 "% size change" -> "+20%"``,
    ``0.05 "fraction of pixels" -> "5% of pixels"``; ``short`` drops spelled-out units (for
    column headers under a title that names the unit).
    """
    if not finite(value):
        return number(value)
    value = float(value)
    text = significant(value)
    unit = unit or ""
    if unit in ("degrees", "degree", "deg", "°"):
        return f"{text}°"
    if unit.startswith("%"):
        return ("+" if value > 0 else "") + f"{text}%"
    if unit.startswith("x ") or unit == "x":
        return f"{text}×"
    if unit.startswith("fraction"):
        share = significant(100 * value) + "%"
        return share if short else f"{share} of {unit.split(' of ', 1)[1]}" if " of " in unit else share
    if short or unit in ("", "t", "intensity sd", "sd"):
        return text
    if unit.startswith("px"):
        return f"{text} px"
    return f"{text} {unit}"


def interval(low: Any, high: Any, as_percent: bool = False, digits: int | None = None) -> str:
    """``"[11.2%, 13.0%]"``, or ``"[0.41, 0.45]"``."""
    if as_percent:
        digits = 1 if digits is None else digits
        return f"[{percent(low, digits)}, {percent(high, digits)}]"
    digits = 2 if digits is None else digits
    return f"[{number(low, digits)}, {number(high, digits)}]"


def magnitude_range(magnitudes: list[float], unit: str) -> str:
    """``"−45° … 45°"``: the range of a family's grid."""
    if not magnitudes:
        return "–"
    low, high = min(magnitudes), max(magnitudes)
    return f"{magnitude_text(low, unit, short=True)} … {magnitude_text(high, unit, short=True)}"


def grid_text(corruption: Corruption) -> str:
    """How a corruption's grid reads: "severity 5", "severities 1-5", or its magnitudes."""
    levels = list(corruption.severities)
    if levels:
        if len(levels) > 2 and levels == list(range(levels[0], levels[0] + len(levels))):
            return f"severities {levels[0]}-{levels[-1]}"
        return f"severit{'y' if len(levels) == 1 else 'ies'} {', '.join(str(s) for s in levels)}"
    return ", ".join(magnitude_text(m, corruption.unit) for m in corruption.magnitudes)


def grid_levels(magnitudes: Sequence[float], unit: str, severities: Sequence[int] = ()) -> str:
    """A family's grid as the report lists it: each magnitude, and its MNIST-C severity if any."""
    if len(severities) != len(magnitudes):
        severities = [None] * len(magnitudes)
    return ", ".join(magnitude_text(m, unit, short=True) + (f" (severity {s})" if s else "")
                     for m, s in zip(magnitudes, severities))


def critical_text(value: Any, unit: str) -> str:
    """A critical magnitude: "never" for +inf, an en dash when missing, else with its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "never" if np.isinf(value) else magnitude_text(value, unit)


def points(value: Any, digits: int = 1) -> str:
    """A difference of fractions in percentage points, signed: ``+3.2 pp``."""
    if not finite(value):
        return "–"
    return f"{100 * float(value):+.{digits}f} pp".replace("-", "−")


def signed(value: Any, digits: int = 2) -> str:
    """A signed difference: ``+0.12``, ``−0.05``."""
    if not finite(value):
        return "–"
    return f"{float(value):+.{digits}f}".replace("-", "−")


def p_value_text(p: float) -> str:
    """A p-value with three decimals, ``<0.001`` below that."""
    if not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def rank_text(rank: int, tied: bool) -> str:
    """A rank, ``=2`` when shared with other models."""
    return f"={rank}" if tied else str(rank)


def compact(count: int) -> str:
    """``1234567 -> "1.2 M"``, ``45600 -> "45.6 k"``."""
    for size, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if count >= size:
            return f"{count / size:.1f}{suffix}"
    return str(count)


def duration(run: Mapping[str, Any]) -> str:
    """How long a run computed (run.json's compute_seconds, else finished − started)."""
    seconds = run.get("compute_seconds")
    if not finite(seconds) or not seconds:
        try:
            seconds = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return "–"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def date(run: Mapping[str, Any]) -> str:
    """When a run finished (or started), ``YYYY-MM-DD HH:MM``."""
    stamp = run.get("finished") or run.get("started")
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "–"
    except (TypeError, ValueError):
        return str(stamp)


def data_text(run: Mapping[str, Any]) -> str:
    """The run's digits in words: ``"MNIST test set: 1,000 digits (a class-stratified subset)"``."""
    data = run.get("data", {})
    study_data = run.get("study", {}).get("data", {})
    n = data.get("n")
    if data.get("source") == "mnist-test":
        subset = " (a class-stratified subset)" if study_data.get("n") else ""
        return f"MNIST test set: {n:,} digits{subset}" if n else "MNIST test set"
    if data.get("source") == "folder":
        return f"{n:,} images from the folder {data.get('path') or study_data.get('path')}" if n else "a folder of images"
    return str(data.get("source") or "–")
