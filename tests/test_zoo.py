"""The model zoo: article-aug, mlp and lenet build as documented, train, save and load.

TensorFlow tests (marked ``tf``): each trains for one epoch on a few hundred digits.
"""

from __future__ import annotations

import numpy as np
import pytest

from robust_mnist import models
from robust_mnist.data import to_float

pytestmark = pytest.mark.tf

ZOO = ("article-aug", "mlp", "lenet")

#: Weights counted by hand from each docstring's layer list: (inputs * outputs + outputs) per
#: dense layer, (kernel area * input channels * filters + filters) per convolution.
ARTICLE_WEIGHTS = 10 * (3 * 3 * 1 + 1) + (13 * 13 * 10 * 128 + 128) + (128 * 10 + 10)
EXPECTED_WEIGHTS = {
    "article-aug": ARTICLE_WEIGHTS,  # augmentation layers have no weights
    "mlp": (784 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10),
    # 28x28 -conv 5x5 same-> 28x28x6 -pool-> 14x14x6 -conv 5x5 valid-> 10x10x16 -pool-> 5x5x16 = 400
    "lenet": (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10),
}
EXPECTED_LAYERS = {
    "article-aug": ["RandomTranslation", "RandomRotation", "Conv2D", "MaxPooling2D", "Dropout",
                    "Flatten", "Dense", "Dropout", "Dense"],
    "mlp": ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"],
    "lenet": ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense", "Dense"],
}


def test_the_zoo_is_registered():
    assert set(ZOO) | {"article"} <= set(models.architectures())


@pytest.mark.parametrize("arch", ZOO)
def test_architecture_has_the_documented_layers_and_weights(arch):
    model, settings = models.get_architecture(arch)()
    assert [type(layer).__name__ for layer in model.layers] == EXPECTED_LAYERS[arch]
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert model.count_params() == EXPECTED_WEIGHTS[arch]
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.loss == "categorical_crossentropy"
    assert settings.validation_split == 0.2 and settings.batch_size == 128


def test_lenet_and_mlp_details():
    import keras

    lenet, _ = models.build_lenet()
    conv1, _, conv2, *_ = lenet.layers
    assert (conv1.filters, conv1.kernel_size, conv1.padding) == (6, (5, 5), "same")
    assert (conv2.filters, conv2.kernel_size, conv2.padding) == (16, (5, 5), "valid")
    assert [layer.units for layer in lenet.layers if hasattr(layer, "units")] == [120, 84, 10]
    assert isinstance(lenet.optimizer, keras.optimizers.Adam)
    mlp, _ = models.build_mlp()
    assert [layer.units for layer in mlp.layers if hasattr(layer, "units")] == [512, 512, 10]
    assert [layer.rate for layer in mlp.layers if hasattr(layer, "rate")] == [0.2, 0.2]
    for build in (models.build_lenet, models.build_mlp):
        settings = build()[1]
        assert (settings.patience, settings.restore_best_weights) == (3, True)


def test_article_aug_augments_within_the_documented_bounds():
    import keras

    model, settings = models.build_article_aug()
    shift, rotate = model.layers[:2]
    assert shift.height_factor == shift.width_factor == pytest.approx(2 / 28)  # +-2 px
    assert tuple(rotate.factor) == pytest.approx((-15 / 360, 15 / 360))  # +-15 degrees, in turns
    assert shift.fill_mode == rotate.fill_mode == "constant"  # black enters, not a reflection
    assert isinstance(model.optimizer, keras.optimizers.Adadelta)
    assert float(model.optimizer.learning_rate) == pytest.approx(1.0)
    assert (settings.patience, settings.restore_best_weights) == (4, True)


@pytest.mark.parametrize("arch", ZOO)
def test_trains_one_epoch_and_round_trips_through_a_file(arch, tiny_mnist, tmp_path):
    record = models.train(arch, 0, tmp_path / f"{arch}.keras", data=tiny_mnist, epochs=1, subset=600, verbose=0)
    assert (record["arch"], record["stopped_epoch"], record["parameters"]) == (arch, 1, EXPECTED_WEIGHTS[arch])
    assert record["test_accuracy"] > 0.3  # one epoch on 480 digits: well above chance (0.1)

    loaded = models.load_classifier(tmp_path / f"{arch}.keras")
    # The file holds the model that train() evaluated: same test accuracy.
    predicted = loaded.predict_proba(to_float(tiny_mnist.x_test)).argmax(axis=1)
    assert np.mean(predicted == tiny_mnist.y_test) == pytest.approx(record["test_accuracy"], abs=1e-6)

    images = to_float(tiny_mnist.x_test[:100])
    in_memory = models.KerasClassifier(loaded.model).predict_proba(images)
    loaded.model.save(tmp_path / "again.keras")
    reloaded = models.load_classifier(tmp_path / "again.keras").predict_proba(images)
    np.testing.assert_array_equal(reloaded, in_memory)
    accuracy = np.mean(in_memory.argmax(axis=1) == tiny_mnist.y_test[:100])
    assert accuracy > 0.3


def test_augmentation_changes_training_inputs_but_not_inference(tiny_mnist, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    augmented, _ = models.build_article_aug()
    x = to_float(tiny_mnist.x_train[:256])[..., None]
    y = keras.utils.to_categorical(tiny_mnist.y_train[:256], 10)
    augmented.fit(x, y, epochs=1, batch_size=128, verbose=0)
    images = to_float(tiny_mnist.x_test[:64])

    # In training mode the first two layers move the digits; at inference they do nothing.
    shift, rotate = augmented.layers[:2]
    moved = np.asarray(rotate(shift(images[..., None], training=True), training=True))
    assert np.mean(np.abs(moved - images[..., None]).reshape(64, -1).max(axis=1) > 0.1) > 0.5
    np.testing.assert_array_equal(np.asarray(rotate(shift(images[..., None], training=False), training=False)),
                                  images[..., None])

    classifier = models.KerasClassifier(augmented)
    first, second = classifier.predict_proba(images), classifier.predict_proba(images)
    np.testing.assert_array_equal(first, second)
    # The same weights without the augmentation layers: the article's network.
    plain, _ = models.build_article()
    plain.set_weights(augmented.get_weights())
    np.testing.assert_array_equal(models.KerasClassifier(plain).predict_proba(images), first)
    # And after a save and a safe_mode load.
    augmented.save(tmp_path / "aug.keras")
    np.testing.assert_array_equal(models.load_classifier(tmp_path / "aug.keras").predict_proba(images), first)


def test_augmented_training_is_deterministic_with_the_seed(tiny_mnist, tmp_path):
    images = to_float(tiny_mnist.x_test[:50])
    predictions = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        models.train("article-aug", seed, tmp_path / f"{name}.keras", data=tiny_mnist, epochs=1, subset=300, verbose=0)
        predictions.append(models.load_classifier(tmp_path / f"{name}.keras").predict_proba(images))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    assert not np.array_equal(predictions[0], predictions[2])
