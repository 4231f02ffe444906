"""Small numpy stand-ins shared by the study tests: two perturbation families and models.

The families are registered only inside a test (``register_fakes(monkeypatch)``), so the
global registry that other test modules parametrise over never sees them.
"""

from __future__ import annotations

import numpy as np

from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import load_mnist, to_float
from robust_mnist.perturbations import base
from robust_mnist.runner.inputs import LoadedModel


class FakeShift(base.Perturbation):
    """Deterministic: shift right by ``magnitude`` whole pixels (zeros enter on the left)."""

    name = "fake_shift"
    unit = "px"
    description = "integer horizontal shift"
    default_magnitudes = (0.0, 1.0, 2.0)
    magnitude_range = (-4.0, 4.0)
    random = False

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"shift": np.full(n, int(magnitude), dtype=np.int64)}

    def apply(self, images, params):
        out = np.zeros_like(images)
        for i, shift in enumerate(params["shift"].astype(int)):
            if shift >= 0:
                out[i, :, shift:] = images[i, :, : 28 - shift]
            else:
                out[i, :, :shift] = images[i, :, -shift:]
        return out


class FakeNoise(base.Perturbation):
    """Random: Gaussian noise of sd ``magnitude`` from a per-image seed, clipped to [0, 1]."""

    name = "fake_noise"
    unit = "intensity sd"
    description = "additive Gaussian noise"
    default_magnitudes = (0.0, 0.2, 0.4)
    magnitude_range = (0.0, 1.0)
    random = True

    def __init__(self, clip: bool = True) -> None:
        self.options = {"clip": clip}

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"sd": np.full(n, magnitude), "seed": rng.integers(0, 2**31, size=n)}

    def apply(self, images, params):
        out = np.empty_like(images)
        for i, (sd, seed) in enumerate(zip(params["sd"], params["seed"])):
            noise = np.random.default_rng(int(seed)).normal(0.0, sd, size=(28, 28))
            out[i] = np.clip(images[i] + noise, 0.0, 1.0)
        return out


def register_fakes(monkeypatch) -> None:
    for cls in (FakeShift, FakeNoise):
        monkeypatch.setitem(base._REGISTRY, cls.name, cls)


_TEMPLATE: list[TemplateClassifier] = []


def template_classifier() -> TemplateClassifier:
    """The numpy template model, fitted once on 2,000 training digits."""
    if not _TEMPLATE:
        mnist = load_mnist()
        _TEMPLATE.append(TemplateClassifier.fit(to_float(mnist.x_train[:2000]), mnist.y_train[:2000]))
    return _TEMPLATE[0]


class Recording:
    """Wraps a classifier and keeps every batch it was asked to predict."""

    def __init__(self, inner, sharpness_scale: float = 1.0) -> None:
        self.inner = inner
        self.batches: list[np.ndarray] = []
        self.scale = sharpness_scale

    def predict_proba(self, images):
        self.batches.append(np.array(images, copy=True))
        if self.scale == 1.0:
            return self.inner.predict_proba(images)
        return TemplateClassifier(self.inner.templates, self.inner.sharpness * self.scale).predict_proba(images)


def fake_loader(classifiers: dict | None = None):
    """A model loader that serves TemplateClassifiers (or the given ones) by model name."""

    def load(model, engine="keras", retrain=None):  # robust_mnist.runner.inputs.load_model's signature
        classifier = (classifiers or {}).get(model.name) or template_classifier()
        return LoadedModel(classifier, {"arch": model.arch, "seed": model.seed, "path": None,
                                        "checksum": f"fake-{model.name}", "training": None})

    return load
