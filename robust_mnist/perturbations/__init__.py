"""Perturbation families: controlled, seeded, batched distortions in physical units."""

from .base import Perturbation, available, family, get, perturb, register
from . import geometric, noise, compose  # noqa: F401  (registers the families)
from . import morphology, morph  # noqa: F401 (registers the families)

__all__ = ["Perturbation", "available", "family", "get", "perturb", "register"]
