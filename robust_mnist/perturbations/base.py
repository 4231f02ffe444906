"""The perturbation contract and its registry.

Every family is a subclass of :class:`Perturbation` registered with :func:`register`:

- ``sample_params(n, magnitude, rng, *, images=None, labels=None, draw=0)`` draws the
  realised per-image parameters (a dict of 1-D arrays of length ``n``: the angle, the shift,
  a noise seed, a morph target index...). All randomness comes from ``rng``. ``images`` and
  ``labels`` are the clean source digits, for families whose parameters depend on them
  (morph picks a target digit); ``draw`` numbers repeated draws of the same cell.
- ``apply(images, params)`` is deterministic given ``params``: float32 (N, 28, 28) in [0, 1]
  in and out, the input never mutated; magnitude 0 is the identity.

Because ``apply`` is a pure function of the stored parameters, any perturbed digit can be
regenerated exactly from a results table row.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import numpy as np

from ..errors import InvalidArgumentError
from ..images import check_images

_REGISTRY: dict[str, type["Perturbation"]] = {}


class Perturbation:
    """Base class of a perturbation family.

    Class attributes
    ----------------
    name : str
        Registry name.
    unit : str
        Physical unit of the magnitude ("px", "degrees", "intensity sd", "t"...).
    description : str
        One line on what the magnitude means.
    default_magnitudes : tuple of float
        A sensible grid, starting at 0.
    magnitude_range : (float, float)
        Allowed magnitudes, inclusive.
    random : bool
        Whether the realised parameters are random (so several draws per magnitude help).
    needs_images : bool
        Whether ``sample_params`` looks at the images (occlude aims at ink, morph picks a
        target): a composition then samples such a step on the digit as earlier steps left it.
    """

    name: ClassVar[str]
    unit: ClassVar[str]
    description: ClassVar[str]
    default_magnitudes: ClassVar[tuple[float, ...]]
    magnitude_range: ClassVar[tuple[float, float]]
    random: ClassVar[bool] = False
    needs_images: ClassVar[bool] = True

    def __init__(self, **options) -> None:
        if options:
            raise InvalidArgumentError(f"{self.name} takes no options; got {sorted(options)}")
        self.options: dict = {}

    def check_magnitude(self, magnitude: float) -> float:
        low, high = self.magnitude_range
        magnitude = float(magnitude)
        if not (low <= magnitude <= high):
            raise InvalidArgumentError(
                f"{self.name}: magnitude {magnitude:g} outside its range [{low:g}, {high:g}] {self.unit}"
            )
        return magnitude

    def sample_params(
        self,
        n: int,
        magnitude: float,
        rng: np.random.Generator,
        *,
        images: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        draw: int = 0,
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def apply(self, images: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({options})"


def register(cls: type[Perturbation]) -> type[Perturbation]:
    """Class decorator adding a family to the registry under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"perturbation family {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """Names of the registered perturbation families, sorted."""
    return sorted(_REGISTRY)


def family(name: str) -> type[Perturbation]:
    """The class registered under ``name``; unknown names list the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown perturbation family {name!r}; known: {', '.join(available())}"
        ) from None


def get(name: str, **options) -> Perturbation:
    """An instance of family ``name`` configured with ``options``.

    Raises
    ------
    InvalidArgumentError
        A ValueError, for an unknown family, an option the family does not take, or an
        option value outside its allowed set.
    """
    cls = family(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as error:  # an unknown or missing option, said by Python's own words
        raise InvalidArgumentError(f"{name}: {error}") from None
    return cls(**options)


def perturb(
    name: str,
    images: np.ndarray,
    magnitude: float,
    seed: int | np.random.Generator = 0,
    labels: np.ndarray | None = None,
    **options,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Perturb a batch in one call.

    Parameters
    ----------
    name : str
        A registered family (see :func:`available`).
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    magnitude : float
        In the family's physical unit.
    seed : int or numpy.random.Generator
    labels : (N,) ndarray of int, optional
        The digits' classes, for families that use them (morph).
    **options
        Family options (for example ``method="flow"`` for morph).

    Returns
    -------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    params : dict of str to (N,) ndarray
        The realised per-image parameters.
    """
    perturbation = get(name, **options)
    images = check_images(images)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    params = perturbation.sample_params(
        len(images), perturbation.check_magnitude(magnitude), rng, images=images, labels=labels
    )
    return perturbation.apply(images, params), params
