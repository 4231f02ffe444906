"""The architecture registry, the article's model, training, the cache and the Keras adapter.

Tests that import TensorFlow are marked ``tf`` and train on tiny subsets for one epoch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from robust_mnist import cli, models
from robust_mnist.data import to_float

RECORD_KEYS = {
    "arch", "seed", "history", "stopped_epoch", "best_epoch", "val_loss", "val_accuracy",
    "test_loss", "test_accuracy", "versions", "data", "wall_time_s", "model_sha256",
}


# --------------------------------------------------------------------------- no TensorFlow


def test_registry_lists_article_and_rejects_unknown_names():
    assert "article" in models.architectures()
    with pytest.raises(ValueError, match="unknown architecture 'resnet'.*article"):
        models.get_architecture("resnet")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        models.architecture("article")(lambda: None)


def test_model_cache_follows_robust_mnist_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_MNIST_HOME", str(tmp_path))
    assert models.model_path("article", 3) == tmp_path / "models" / "article-seed3.keras"
    assert models.record_path(models.model_path("article", 3)).name == "article-seed3.json"
    with pytest.raises(ValueError, match="seed"):
        models.model_path("article", -1)


def test_ensure_model_reuses_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_MNIST_HOME", str(tmp_path))
    path = models.model_path("article", 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"already trained")
    monkeypatch.setattr(models, "train", lambda *a, **k: pytest.fail("must not retrain"))
    assert models.ensure_model("article", 0) == path


def test_ensure_model_trains_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_MNIST_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(models, "train", lambda *args, **kwargs: calls.append(args))
    path = models.ensure_model("article", 2)
    assert calls == [("article", 2, tmp_path / "models" / "article-seed2.keras")]
    assert path == tmp_path / "models" / "article-seed2.keras"


def test_file_checksum_is_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    # SHA-256("abc") from FIPS 180-2, appendix B.1.
    assert models.file_checksum(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_train_rejects_a_wrong_suffix_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"\.keras"):
        models.train("article", 0, tmp_path / "model.h5")


@pytest.mark.parametrize("content", [None, b""], ids=["missing", "zero-byte"])
def test_load_classifier_names_a_missing_or_empty_file(tmp_path, content):
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        models.load_classifier(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- TensorFlow


@pytest.mark.tf
def test_article_network_matches_the_article():
    import keras

    model, settings = models.build_article()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense",
    ]
    conv, pool, drop1, _, dense, drop2, out = model.layers
    assert model.input_shape == (None, 28, 28, 1)
    assert (conv.filters, conv.kernel_size, conv.padding) == (10, (3, 3), "valid")
    assert conv.activation.__name__ == "relu" and dense.activation.__name__ == "relu"
    assert pool.pool_size == (2, 2)
    assert drop1.rate == drop2.rate == 0.2
    assert dense.units == 128 and out.units == 10 and out.activation.__name__ == "softmax"
    # 28x28 -> conv 3x3 valid -> 26x26x10 -> pool 2 -> 13x13x10 = 1690 features.
    expected = 10 * (3 * 3 * 1 + 1) + (13 * 13 * 10 * 128 + 128) + (128 * 10 + 10)
    assert expected == 217_838
    assert model.count_params() == expected
    assert isinstance(model.optimizer, keras.optimizers.Adadelta)
    assert float(model.optimizer.learning_rate) == pytest.approx(1.0)  # not Keras 3's 0.001
    assert model.optimizer.rho == pytest.approx(0.95)
    assert model.loss == "categorical_crossentropy"
    assert settings == models.TrainingSettings(
        batch_size=128, max_epochs=50, patience=2, monitor="val_loss",
        validation_split=0.2, restore_best_weights=False,
    )


@pytest.mark.tf
def test_training_writes_the_model_and_its_record(tiny_model, tiny_mnist):
    path, record = tiny_model
    assert path.is_file() and path.stat().st_size > 0
    on_disk = json.loads(models.record_path(path).read_text())
    assert on_disk == record
    assert RECORD_KEYS <= set(record)
    assert (record["arch"], record["seed"], record["stopped_epoch"]) == ("article", 0, 1)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(record["history"][key]) == 1
    # validation_split=0.2 holds out the last 400 of the 2,000 images.
    assert (record["n_train"], record["n_val"]) == (1600, 400)
    assert record["data"]["checksum"] == tiny_mnist.checksum
    assert record["model_sha256"] == models.file_checksum(path)
    assert set(record["versions"]) == {"python", "numpy", "tensorflow", "keras", "robust_mnist"}
    assert record["settings"]["optimizer"]["learning_rate"] == pytest.approx(1.0)
    # No temporary files left behind by the atomic save.
    assert sorted(p.name for p in path.parent.iterdir()) == ["article-tiny.json", "article-tiny.keras"]


@pytest.mark.tf
def test_saved_model_is_the_one_that_was_evaluated(tiny_model, tiny_mnist):
    path, record = tiny_model
    classifier = models.load_classifier(path)
    probabilities = classifier.predict_proba(to_float(tiny_mnist.x_test))
    accuracy = np.mean(probabilities.argmax(axis=1) == tiny_mnist.y_test)
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-6)
    assert accuracy > 0.6  # one epoch on 1,600 digits already learns a lot (chance: 0.1)


@pytest.mark.tf
def test_save_and_load_round_trip_gives_identical_predictions(tmp_path, mnist):
    model, _ = models.build_article()
    images = to_float(mnist.x_test[:50])
    before = models.KerasClassifier(model).predict_proba(images)
    model.save(tmp_path / "fresh.keras")
    after = models.load_classifier(tmp_path / "fresh.keras").predict_proba(images)
    np.testing.assert_array_equal(after, before)
    assert before.shape == (50, 10)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.tf
def test_same_seed_gives_identical_weights(tmp_path, tiny_mnist):
    weights = []
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        models.train("article", seed, tmp_path / f"{name}.keras", data=tiny_mnist,
                     epochs=1, subset=500, verbose=0)
        weights.append(models.load_classifier(tmp_path / f"{name}.keras").model.get_weights())
    for first, second in zip(weights[0], weights[1]):
        np.testing.assert_array_equal(first, second)
    assert any(not np.array_equal(a, c) for a, c in zip(weights[0], weights[2]))


@pytest.mark.tf
def test_load_classifier_names_a_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.keras"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError) as caught:
        models.load_classifier(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.tf
def test_keras_classifier_checks_its_input(tiny_model):
    classifier = models.load_classifier(tiny_model[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier.predict_proba(np.full((2, 28, 28), 255.0))
    assert classifier.predict_proba(np.zeros((0, 28, 28))).shape == (0, 10)


@pytest.mark.tf
def test_train_command_prints_one_summary_line(tmp_path, tiny_mnist, capsys):
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=tiny_mnist.x_train[:500], y_train=tiny_mnist.y_train[:500],
             x_test=tiny_mnist.x_test[:200], y_test=tiny_mnist.y_test[:200])
    out = tmp_path / "cli.keras"
    status = cli.main(["train", "--arch", "article", "--seed", "1", "--out", str(out),
                       "--epochs", "1", "--data", str(data)])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "val_accuracy" in lines[0] and str(out) in lines[0]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["stopped_epoch"] == 1 and record["n_train"] + record["n_val"] == 500
    assert record["data"]["path"] == str(data)
