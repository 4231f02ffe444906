"""Perturbation families: controlled, seeded, batched distortions in physical units."""

from .base import Perturbation, available, family, get, perturb, register
from . import geometric, noise, compose  # noqa: F401  (registers the families)
from . import morphology, morph  # noqa: F401 (registers the families)
from . import mnistc_noise, mnistc_blur, mnistc_weather, mnistc_geometric  # noqa: F401 (MNIST-C)
from . import mnistc_digital, mnistc_edges, mnistc_lines  # noqa: F401 (MNIST-C)
from .mnistc import published_magnitude, severity_magnitude

__all__ = [
    "Perturbation",
    "available",
    "family",
    "get",
    "perturb",
    "published_magnitude",
    "register",
    "severity_magnitude",
]
