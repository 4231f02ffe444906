"""Every family's sweep of one digit, in one batch, analysed by the study's own per-digit metrics.

:func:`sweep_digit` perturbs the digit along each slider family's grid (:func:`sweep_grid`:
:data:`POINTS` evenly spaced magnitudes on each side of 0 up to the end of the family's default
grid; random families draw once, with the session's seed, so a grid point is exactly what the
slider shows there), predicts all of them with every model in one call per model, and writes
the outcome as a small results table in the run directory's columns (``rundir.BASE_COLUMNS``:
one clean row per model, one row per model, family and magnitude). That table then goes
through :func:`robust_mnist.metrics.family_sweeps` (the p(true class) curves, magnitude 0
included) and :func:`robust_mnist.digit_metrics.critical_magnitudes` (the smallest magnitude
where the prediction leaves the clean one), exactly as a study's digits do. The true class is
the label the user gave, else each model's own clean prediction. The headline names the
family whose smallest flipping push is the smallest fraction of its sweep: with units as
different as degrees and pixels, that fraction is what makes two families comparable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..digit_metrics import critical_magnitudes
from ..metrics import family_sweeps
from ..perturbations import family, perturb
from ..rundir import BASE_COLUMNS, CLEAN, PROBABILITY_COLUMNS
from .session import ExploreSession, check_digit, slider_extent, slider_families

#: Grid points on each side of 0 (a signed family gets twice as many).
POINTS = 12


def sweep_grid(name: str) -> np.ndarray:
    """The sweep of family ``name``: POINTS magnitudes per side of 0, 0 excluded, ascending."""
    low, high = slider_extent(name)
    negative = np.linspace(low, 0.0, POINTS + 1)[:-1] if low < 0 else np.empty(0)
    positive = np.linspace(0.0, high, POINTS + 1)[1:] if high > 0 else np.empty(0)
    return np.concatenate([negative, positive]).astype(np.float64)


def sweep_digit(
    session: ExploreSession, digit: np.ndarray, label: int | None = None, target: int | None = None,
) -> dict[str, Any]:
    """Sweep every slider family on ``digit`` and analyse it (see the module docstring).

    Parameters
    ----------
    session : ExploreSession
    digit : (28, 28) ndarray of float32 in [0, 1]
    label : int, optional
        The digit's true class; default each model's clean prediction.
    target : int, optional
        The morph target class; default morph's own (the most confusable class).

    Returns
    -------
    dict
        ``models``, ``label``, ``headline`` (one sentence), and ``families``: per family its
        ``name``, ``unit``, ``magnitudes`` (0 included), and per model ``p_true`` along them
        and the ``critical`` magnitude (signed, with the class it flips to; None if it never
        flips).
    """
    digit = check_digit(digit)
    if label is not None and (isinstance(label, bool) or label not in range(10)):
        raise ValueError(f"label {label!r} is not a digit 0-9")
    labels = None if label is None else np.array([label])
    names = slider_families()
    images, rows = [digit[None]], [(CLEAN, 0.0)]
    with session.lock:
        for name in names:
            options = {"target": int(target)} if name == "morph" and target is not None else {}
            for magnitude in sweep_grid(name):
                perturbed, _ = perturb(name, digit[None], magnitude, seed=session.seed, labels=labels, **options)
                images.append(perturbed)
                rows.append((name, float(magnitude)))
        batch = np.concatenate(images)
        probabilities = session.predict(batch)
    results = _results_table(session, rows, probabilities, label)
    curves = family_sweeps(results, ["label", "clean_pred", "pred", "p_true"])
    critical = critical_magnitudes(results, sweeps=curves)
    return _describe(session, names, curves, critical, label)


def _results_table(
    session: ExploreSession, rows: list[tuple[str, float]], probabilities: list[np.ndarray],
    label: int | None,
) -> pd.DataFrame:
    """The sweep as a results table (one image, one draw), in the run directory's columns."""
    frames = []
    families = np.array([name for name, _ in rows], dtype=object)
    magnitudes = np.array([m for _, m in rows], dtype=np.float64)
    for model, p in zip(session.models, probabilities):
        pred = p.argmax(axis=1).astype(np.int64)
        true = int(pred[0]) if label is None else int(label)
        frame = pd.DataFrame({
            "model": model.name, "family": families, "magnitude": magnitudes,
            "image": np.zeros(len(rows), np.int64), "draw": np.zeros(len(rows), np.int64),
            "label": np.full(len(rows), true, np.int64), "clean_pred": np.full(len(rows), pred[0], np.int64),
            "pred": pred, "p_true": p[:, true], "p_pred": p[np.arange(len(p)), pred],
        })
        for k, column in enumerate(PROBABILITY_COLUMNS):
            frame[column] = p[:, k]
        frames.append(frame[list(BASE_COLUMNS)])
    return pd.concat(frames, ignore_index=True)


def _describe(
    session: ExploreSession, names: list[str], curves: pd.DataFrame, critical: pd.DataFrame,
    label: int | None,
) -> dict[str, Any]:
    by_digit = {(row.model, row.family): row for row in critical.itertuples(index=False)}
    families = []
    best: tuple[float, str, str] | None = None
    for name in names:
        cls = family(name)
        low, high = slider_extent(name)
        extent = max(abs(low), abs(high)) or 1.0
        entry: dict[str, Any] = {"name": name, "unit": cls.unit, "p_true": {}, "critical": {}}
        for index, model in enumerate(session.models):
            curve = curves.loc[(curves["model"] == model.name) & (curves["family"] == name)]
            entry["magnitudes"] = [float(m) for m in curve["magnitude"]]
            entry["p_true"][model.name] = [float(p) for p in curve["p_true"]]
            row = by_digit[(model.name, name)]
            if np.isfinite(row.critical_magnitude):
                flipped = int(curve.loc[curve["magnitude"] == row.signed_magnitude, "pred"].iloc[0])
                entry["critical"][model.name] = {
                    "magnitude": float(row.critical_magnitude), "signed": float(row.signed_magnitude),
                    "from": int(row.clean_pred), "to": flipped,
                }
                relative = float(row.critical_magnitude) / extent
                if index == 0 and (best is None or relative < best[0]):
                    sentence = (
                        f"This {int(row.clean_pred)} becomes a {flipped} at {name} "
                        f"{float(row.signed_magnitude):+.3g} {cls.unit}"
                    )
                    best = (relative, name, sentence)
            else:
                entry["critical"][model.name] = None
        families.append(entry)
    first = session.models[0].name
    if best is None:
        clean = int(critical.loc[critical["model"] == first, "clean_pred"].iloc[0])
        headline = f"No family flips this {clean} within its sweep ({first})."
    else:
        headline = best[2] + (f" ({first}; the smallest push of any family, relative to its sweep)."
                              if len(session.models) > 1 else " (the smallest push of any family, relative to its sweep).")
    return {
        "models": [m.name for m in session.models], "label": label,
        "headline": headline, "flips_first": None if best is None else best[1], "families": families,
    }
