"""Shared fixtures. Keep this small: fixtures used by one test file belong in that file."""

from __future__ import annotations

import pytest

from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import Mnist, arrays_checksum, load_mnist, to_float


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    """The bundled MNIST (checksum-verified)."""
    return load_mnist()


@pytest.fixture(scope="session")
def template_classifier(mnist) -> TemplateClassifier:
    """The numpy stand-in model, fitted on 10,000 training digits (no TensorFlow)."""
    return TemplateClassifier.fit(to_float(mnist.x_train[:10_000]), mnist.y_train[:10_000])


@pytest.fixture(scope="session")
def tiny_mnist(mnist) -> Mnist:
    """The first 2,000 training and 1,000 test digits, for fast training runs."""
    arrays = {
        "x_train": mnist.x_train[:2000],
        "y_train": mnist.y_train[:2000],
        "x_test": mnist.x_test[:1000],
        "y_test": mnist.y_test[:1000],
    }
    return Mnist(**arrays, checksum=arrays_checksum(arrays), path="tiny-mnist")


@pytest.fixture(scope="session")
def tiny_model(tiny_mnist, tmp_path_factory):
    """``(path, record)`` of the article model trained for one epoch on ``tiny_mnist``.

    Only tests marked ``tf`` should use it: it imports TensorFlow.
    """
    from robust_mnist.models import train

    path = tmp_path_factory.mktemp("models") / "article-tiny.keras"
    record = train("article", 0, path, data=tiny_mnist, epochs=1, verbose=0)
    return path, record



@pytest.fixture(autouse=True)
def _isolated_workdir(tmp_path, monkeypatch):
    """Run every test in its own folder with its own model cache, so that nothing a test
    writes (runs/, reports/, trained models) lands in the repository or the user's cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUST_MNIST_HOME", str(tmp_path / "home"))
