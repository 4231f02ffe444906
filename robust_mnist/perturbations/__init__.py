"""Perturbation families: controlled, seeded, batched distortions in physical units."""

from .base import Perturbation, available, family, get, perturb, register

__all__ = ["Perturbation", "available", "family", "get", "perturb", "register"]
