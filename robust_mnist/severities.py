"""MNIST-C in study files: severity grids, the published corruptions, the reference model.

A study spec may give ``severities = [1, 2, 3, 4, 5]`` instead of magnitudes for a family
with MNIST-C's 5-level severity table: :func:`severity_grid` turns the levels into the
family's magnitudes (:func:`robust_mnist.perturbations.mnistc.severity_magnitude`). A spec
whose family is one of MNIST-C's 15 published corruptions
(:data:`robust_mnist.perturbations.mnistc.PUBLISHED`) belongs to the benchmark, under MNIST-C's
name of it (:func:`mnist_c_name`), and :func:`check_reference` validates the model the
study's ``[mnist_c] reference`` normalises the corruption errors by. :mod:`robust_mnist.study`
calls these and reports their ``ValueError`` as a one-line study error naming the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import perturbations
from .perturbations import mnistc

#: MNIST-C's severity levels.
SEVERITY_LEVELS = (1, 2, 3, 4, 5)


def published() -> dict[str, str]:
    """``{MNIST-C's name: our family}`` of the 15 published corruptions, in MNIST-C's order."""
    return dict(mnistc.PUBLISHED)


def mnist_c_name(family_name: str) -> str | None:
    """MNIST-C's name of a family that is one of its 15 published corruptions, else None.

    ``mnistc_shear`` is MNIST-C's ``shear`` (the prefix keeps our own shear family apart); see
    :data:`robust_mnist.perturbations.mnistc.PUBLISHED`.
    """
    return {family: name for name, family in published().items()}.get(family_name)


def has_severities(family_name: str) -> bool:
    """Whether a family has MNIST-C's 5-level severity table (``SEVERITIES``)."""
    return bool(getattr(perturbations.family(family_name), "SEVERITIES", None))


def severity_grid(family_name: str, levels: Any) -> dict[float, int]:
    """A spec's ``severities`` as ``{magnitude: level}``, MNIST-C's value of each level.

    Raises
    ------
    ValueError
        Saying what is wrong (levels outside 1..5, duplicates, a family without a table).
    """
    allowed = ", ".join(str(level) for level in SEVERITY_LEVELS)
    if not isinstance(levels, list) or not levels or not all(
        isinstance(s, int) and not isinstance(s, bool) and s in SEVERITY_LEVELS for s in levels
    ):
        raise ValueError(f"must be a non-empty list of severity levels from {allowed}; got {levels!r}")
    if len(set(levels)) != len(levels):
        raise ValueError(f"has duplicates: {levels}")
    if not has_severities(family_name):
        tabled = [name for name in perturbations.available() if has_severities(name)]
        raise ValueError(f"family {family_name!r} has no severity table; give magnitudes (families with "
                         f"severities: {', '.join(tabled) or 'none'})")
    grid: dict[float, int] = {}
    for level in levels:
        magnitude = float(mnistc.severity_magnitude(family_name, level))
        if magnitude in grid:
            raise ValueError(f"severities {grid[magnitude]} and {level} of {family_name!r} are the same magnitude {magnitude:g}")
        grid[magnitude] = int(level)
    return grid


def check_reference(reference: str, models: Sequence[str], families: Sequence[str]) -> None:
    """Refuse a reference that is not a model of the study, or a study without MNIST-C corruptions.

    Raises
    ------
    ValueError
    """
    if reference not in models:
        raise ValueError(f"{reference!r} is not a model of the study; models: {', '.join(models)}")
    if not any(mnist_c_name(family) for family in families):
        raise ValueError("the study has no MNIST-C corruption to normalise (families: "
                         f"{', '.join(published().values()) or 'none registered'})")
