"""MNIST-C as perturbation families: the catalogue, the severity tables and their API.

MNIST-C (Mu and Gilmer 2019, google-research/mnist-c, ``corruptions.py``) corrupts the MNIST
test digits; its published test set applies 15 corruptions (:data:`PUBLISHED`), each at the
severity its code uses by default, and its code has about 30 (:data:`CORRUPTIONS`). Each is a
family here (modules ``mnistc_*``), rewritten batched and seeded; the facts carry over (the
severity tables, the random ranges, the order of the steps, where MNIST-C rounds to 8 bits),
the code does not. Every family derives from :class:`MnistcFamily`, whose class attributes
say how MNIST-C's five severity levels read in the family's own unit: ``SEVERITIES[k - 1]``
is the magnitude that reproduces MNIST-C's level ``k`` exactly, and ``default_severity`` the
level of the published set. A study sweeps either magnitudes in the unit or severities,
through :func:`severity_magnitude`; :func:`published_magnitude` gives the one setting of the
published set, also for the corruptions that have no severity table (stripe, dotted_line,
zigzag, canny_edges, line, inverse), where magnitude 1 (or stripe's 7 px) is MNIST-C's own.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import InvalidArgumentError
from .base import Perturbation, available, family

#: The 15 corruptions of MNIST-C's published test set, in its order: (MNIST-C name, family).
PUBLISHED: tuple[tuple[str, str], ...] = (
    ("shot_noise", "shot_noise"),
    ("impulse_noise", "impulse_noise"),
    ("glass_blur", "glass_blur"),
    ("motion_blur", "motion_blur"),
    ("shear", "mnistc_shear"),
    ("scale", "mnistc_scale"),
    ("rotate", "mnistc_rotate"),
    ("brightness", "brightness"),
    ("translate", "mnistc_translate"),
    ("stripe", "stripe"),
    ("fog", "fog"),
    ("spatter", "spatter"),
    ("dotted_line", "dotted_line"),
    ("zigzag", "zigzag"),
    ("canny_edges", "canny_edges"),
)

#: Every corruption of MNIST-C's code that has a family here: MNIST-C name -> family name.
CORRUPTIONS: dict[str, str] = dict(PUBLISHED) | {
    "gaussian_noise": "mnistc_gaussian_noise",
    "speckle_noise": "speckle_noise",
    "gaussian_blur": "gaussian_blur",
    "defocus_blur": "defocus_blur",
    "zoom_blur": "zoom_blur",
    "snow": "snow",
    "contrast": "contrast",
    "saturate": "saturate",
    "jpeg_compression": "jpeg_compression",
    "pixelate": "pixelate",
    "elastic_transform": "elastic_transform",
    "quantize": "quantize",
    "line": "line",
    "inverse": "inverse",
}

#: The corruptions of MNIST-C's code left out, and why.
LEFT_OUT: dict[str, str] = {
    "identity": "the clean digits: every study already predicts them (family 'clean')",
    "pessimal_noise": "needs MNIST-C's fitted 196x196 'pessimal_noise_matrix' file, which is not available offline",
    "frost": "needs MNIST-C's six frost photographs (frost/*.png, *.jpg), which are not available offline",
}


class MnistcFamily(Perturbation):
    """Base class of the MNIST-C families: their severity table and published setting.

    Class attributes
    ----------------
    mnistc_name : str
        The function of MNIST-C's ``corruptions.py`` this family implements.
    SEVERITIES : tuple of 5 floats, or None
        ``SEVERITIES[k - 1]`` is the magnitude, in the family's unit, of MNIST-C's severity
        level ``k``; None for corruptions MNIST-C defines without levels.
    default_severity : int or None
        The level MNIST-C's code uses by default, which its published data set uses.
    published_magnitude : float
        The magnitude of MNIST-C's own corruption as published: ``SEVERITIES[default_severity
        - 1]``, or set by a family without a table.
    default_magnitudes : tuple of float
        For a family with a table, ``(0.0, *SEVERITIES)`` unless it sets its own.
    """

    mnistc_name: ClassVar[str]
    SEVERITIES: ClassVar[tuple[float, ...] | None] = None
    default_severity: ClassVar[int | None] = None
    published_magnitude: ClassVar[float]
    needs_images = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.SEVERITIES
        if table is None:
            return
        # A wrong table would silently misreport MNIST-C: check its shape once, at import.
        if len(table) != 5 or list(table) != sorted(set(table)):
            raise TypeError(f"{cls.__name__}: SEVERITIES must be 5 increasing magnitudes")
        if cls.default_severity not in (1, 2, 3, 4, 5):
            raise TypeError(f"{cls.__name__}: default_severity must be a level 1..5")
        cls.published_magnitude = table[cls.default_severity - 1]
        if "default_magnitudes" not in cls.__dict__:  # a sweep of MNIST-C's levels, from the clean digit
            cls.default_magnitudes = (0.0, *table)


def _mnistc_class(name: str) -> type[MnistcFamily]:
    cls = family(name)
    if not issubclass(cls, MnistcFamily):
        versions = [other for other in available() if other == f"mnistc_{name}"]
        hint = f"; MNIST-C's version is {versions[0]!r}" if versions else ""
        raise InvalidArgumentError(f"{name!r} is not an MNIST-C family{hint}")
    return cls


def severity_magnitude(name: str, level: int) -> float:
    """The magnitude of family ``name`` that is MNIST-C's severity ``level``.

    Parameters
    ----------
    name : str
        A registered MNIST-C family (see :data:`CORRUPTIONS` for the names).
    level : int
        1 to 5, as in MNIST-C's code.

    Returns
    -------
    float
        In the family's unit (``family(name).unit``).

    Raises
    ------
    InvalidArgumentError
        For a family that is not an MNIST-C family, one MNIST-C defines without levels (use
        :func:`published_magnitude`), or a level outside 1..5.
    """
    cls = _mnistc_class(name)
    if cls.SEVERITIES is None:
        raise InvalidArgumentError(
            f"{name}: MNIST-C defines no severity levels for {cls.mnistc_name}; its setting is"
            f" magnitude {cls.published_magnitude:g} ({cls.unit})"
        )
    if isinstance(level, bool) or level not in (1, 2, 3, 4, 5):
        raise InvalidArgumentError(f"{name}: severity {level!r} not in 1, 2, 3, 4, 5")
    return float(cls.SEVERITIES[int(level) - 1])


def published_magnitude(name: str) -> float:
    """The magnitude of family ``name`` that MNIST-C's published data set uses."""
    return float(_mnistc_class(name).published_magnitude)
