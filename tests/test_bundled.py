"""The trained models bundled with the package (robust_mnist/zoo/): their records, how they are
found (the user's retrained copy first, then the bundled one, never training on first use),
their trust, and the ONNX exports they ship with (what a study runs by default).

Only the Keras accuracy check imports TensorFlow (marked ``tf``): it predicts the 10,000 MNIST
test digits with each bundled model; the exports are checked the same way on ONNX Runtime.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from robust_mnist import bundled, export, models
from robust_mnist.data import to_float

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def zoo_models() -> set[tuple[str, int]]:
    """The (arch, seed) pairs of studies/compare_zoo.toml: what the package must ship."""
    study = tomllib.loads((STUDIES / "compare_zoo.toml").read_text())
    pairs = set()
    for entry in study["models"]:
        for seed in entry.get("seeds", [entry.get("seed", 0)]):
            pairs.add((entry["arch"], seed))
    return pairs


BUNDLED = bundled.bundled_models()


def test_the_package_ships_the_zoo_of_the_comparison_study():
    shipped = {(path.stem.rsplit("-seed", 1)[0], int(path.stem.rsplit("-seed", 1)[1])) for path in BUNDLED}
    assert shipped == zoo_models()
    for arch, seed in shipped:
        assert bundled.bundled_path(arch, seed) == bundled.ZOO_DIR / f"{arch}-seed{seed}.keras"
    assert bundled.bundled_path("article", 99) is None


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.stem)
def test_each_bundled_model_matches_its_training_record(path):
    record = json.loads(models.record_path(path).read_text())
    arch, seed = path.stem.rsplit("-seed", 1)
    assert (record["arch"], record["seed"]) == (arch, int(seed))
    assert record["model_file"] == path.name
    assert record["model_sha256"] == models.file_checksum(path)
    assert record["n_test"] == 10_000 and record["max_epochs"] == 50  # full training, not a quick run
    assert models.trained_here(path)
    models.check_trusted(path)  # no --trust-model needed


def test_a_study_finds_the_bundled_model_without_training(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "train", lambda *a, **k: pytest.fail("must not train"))
    assert not (tmp_path / "home" / "models").exists()  # conftest: an empty cache per test
    assert models.ensure_model("article", 0) == bundled.ZOO_DIR / "article-seed0.keras"
    assert models.ensure_model("lenet", 0) == bundled.ZOO_DIR / "lenet-seed0.keras"


def test_the_users_retrained_model_wins_and_retrain_writes_the_cache_only(monkeypatch):
    calls = []

    def fake_train(arch, seed, out, data=None):
        calls.append((arch, seed, Path(out)))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(b"retrained")

    monkeypatch.setattr(models, "train", fake_train)
    before = models.file_checksum(bundled.ZOO_DIR / "article-seed0.keras")
    cached = models.model_path("article", 0)
    assert models.ensure_model("article", 0, retrain=True) == cached
    assert calls == [("article", 0, cached)]
    assert models.ensure_model("article", 0) == cached  # the retrained copy, from now on
    assert len(calls) == 1
    assert models.file_checksum(bundled.ZOO_DIR / "article-seed0.keras") == before


def test_a_bundled_model_runs_on_the_onnx_export_it_ships_with(tmp_path):
    keras_path = bundled.ZOO_DIR / "article-seed0.keras"
    assert export.export_cache_path(keras_path) == bundled.ZOO_DIR / "article-seed0.onnx"
    # Reused as it is: nothing exported, nothing written into the user's cache.
    assert export.cached_onnx_export(keras_path) == bundled.ZOO_DIR / "article-seed0.onnx"
    assert not (tmp_path / "home").exists()
    elsewhere = tmp_path / "mine.keras"
    elsewhere.write_bytes(b"x")
    assert export.export_cache_path(elsewhere) == tmp_path / "mine.onnx"


def test_a_bundled_models_export_that_does_not_match_it_is_made_again_in_the_users_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_cache_is_current", lambda onnx_path, keras_sha256: False)
    keras_path = bundled.ZOO_DIR / "article-seed0.keras"
    assert export.export_cache_path(keras_path) == tmp_path / "home" / "bundled-exports" / "article-seed0.onnx"


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.stem)
def test_each_bundled_export_is_recorded_against_its_keras_file(path):
    onnx_path = path.with_suffix(".onnx")
    record = json.loads(export.sidecar_path(onnx_path).read_text())
    assert record["keras_sha256"] == models.file_checksum(path)
    assert record["onnx_sha256"] == models.file_checksum(onnx_path)
    assert record["check"]["n_digits"] == 10_000
    assert record["check"]["max_abs_diff"] <= 1e-5
    assert record["check"]["argmax_agreements"] == 10_000


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.stem)
def test_each_bundled_export_has_its_models_recorded_test_accuracy(path, mnist):
    record = json.loads(models.record_path(path).read_text())
    probabilities = models.load_classifier(path.with_suffix(".onnx")).predict_proba(to_float(mnist.x_test))
    correct = int(np.sum(probabilities.argmax(axis=1) == mnist.y_test))
    assert correct == round(record["test_accuracy"] * len(mnist.y_test))


@pytest.mark.tf
@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.stem)
def test_each_bundled_model_has_its_recorded_test_accuracy(path, mnist):
    record = json.loads(models.record_path(path).read_text())
    probabilities = models.load_classifier(path).predict_proba(to_float(mnist.x_test))
    correct = int(np.sum(probabilities.argmax(axis=1) == mnist.y_test))
    # Keras's evaluate recorded the accuracy as a float32 fraction of the 10,000 digits.
    assert correct == round(record["test_accuracy"] * len(mnist.y_test))


def test_study_retrain_flag_reaches_the_loader_and_the_recorded_command(monkeypatch):
    from robust_mnist import cli
    from robust_mnist.runner import run as run_module

    seen = {}

    class Stop(Exception):
        pass

    def fake_run_study_file(study, out, **options):
        seen.update(options)
        raise Stop

    monkeypatch.setattr(run_module, "run_study_file", fake_run_study_file)
    with pytest.raises(Stop):
        cli.main(["study", str(STUDIES / "quick.toml"), "--retrain", "--quiet"])
    assert seen["retrain"] is True
    assert "--retrain" in seen["command"]
    with pytest.raises(Stop):
        cli.main(["study", str(STUDIES / "quick.toml"), "--quiet"])
    assert seen["retrain"] is False and "--retrain" not in seen["command"]


def test_the_package_stays_under_the_wheels_40_mb():
    # Everything under robust_mnist/ (the wheel holds no more, and compresses some of it).
    package = bundled.ZOO_DIR.parent
    size = sum(path.stat().st_size for path in package.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    assert size < 40e6, f"the package's files add up to {size / 1e6:.1f} MB"
