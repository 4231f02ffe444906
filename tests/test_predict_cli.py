"""``robust-mnist predict`` on generated picture files.

Most tests replace the Keras model with the numpy TemplateClassifier (no TensorFlow); one test
marked ``tf`` runs a tiny real model through ``--model``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from robust_mnist import cli, models
from robust_mnist.data import to_float
from robust_mnist.preprocess import load_digit


@pytest.fixture
def pictures(tmp_path, mnist):
    """Four MNIST test digits as photo-like files (dark on light, enlarged, off-centre),
    two PNG and two JPEG, plus their labels keyed by file name."""
    folder = tmp_path / "digits"
    folder.mkdir()
    labels = {}
    for index in range(4):
        canvas = np.full((300, 360), 255, np.uint8)
        top, left = 10 + 20 * index, 15 + 30 * index
        canvas[top : top + 168, left : left + 168] = np.kron(255 - mnist.x_test[index], np.ones((6, 6), np.uint8))
        name = f"digit{index}.{'png' if index % 2 else 'jpg'}"
        Image.fromarray(canvas).save(folder / name, **({} if index % 2 else {"quality": 92}))
        labels[str(folder / name)] = int(mnist.y_test[index])
    return folder, labels


@pytest.fixture
def template_model(monkeypatch, template_classifier):
    """Serve the TemplateClassifier whatever model is asked for; record what was asked."""
    asked = []

    def ensure_model(arch="article", seed=0, data=None):
        asked.append(("ensure", arch, seed))
        return "cached-article.keras"

    def load_classifier(path):
        asked.append(("load", str(path)))
        return template_classifier

    monkeypatch.setattr(models, "ensure_model", ensure_model)
    monkeypatch.setattr(models, "load_classifier", load_classifier)
    monkeypatch.setattr(models, "check_trusted", lambda path, trust=False: None)  # no file to check
    return asked


def corrupt_file(folder):
    path = folder / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return path


def test_one_line_per_picture_with_prediction_and_probabilities(pictures, template_model,
                                                                 template_classifier, mnist, capsys):
    folder, labels = pictures
    assert cli.main(["predict", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == sorted(labels)
    # Same prediction as the model gives on the original, centred MNIST digits.
    expected = template_classifier.predict_proba(to_float(mnist.x_test[:4])).argmax(axis=1)
    for line, digit in zip(lines, expected):
        assert line.split(":")[1].split()[0] == str(digit)
        values = [float(v) for v in line[line.index("[") + 1 : line.index("]")].split()]
        assert len(values) == 10 and abs(sum(values) - 1) < 0.01
        assert int(np.argmax(values)) == digit
    # Without --model the article model (seed 0) is used.
    assert template_model == [("ensure", "article", 0), ("load", "cached-article.keras")]


def test_json_mode_prints_only_json_lines(pictures, template_model, capsys):
    folder, labels = pictures
    assert cli.main(["predict", str(folder), "--json", "--model", "my.keras"]) == 0
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(labels)
    for record in records:
        assert set(record) == {"file", "prediction", "probabilities"}
        assert record["file"] in labels
        assert len(record["probabilities"]) == 10
        assert abs(sum(record["probabilities"]) - 1) < 1e-4
        assert record["prediction"] == int(np.argmax(record["probabilities"]))
    assert template_model == [("load", "my.keras")]


def test_a_bad_file_is_reported_and_the_others_still_processed(pictures, template_model, capsys):
    folder, labels = pictures
    broken = corrupt_file(folder)
    status = cli.main(["predict", str(folder), "--json"])
    captured = capsys.readouterr()
    assert status == 1
    assert {json.loads(line)["file"] for line in captured.out.splitlines()} == set(labels)
    errors = [line for line in captured.err.splitlines() if "robust-mnist: error" in line]
    assert len(errors) == 1 and str(broken) in errors[0]


def test_files_and_folders_mix_and_missing_files_fail(pictures, template_model, tmp_path, capsys):
    folder, labels = pictures
    first = sorted(labels)[0]
    (tmp_path / "empty").mkdir()
    status = cli.main(["predict", first, str(tmp_path / "nope.png"), str(tmp_path / "empty")])
    captured = capsys.readouterr()
    assert status == 1
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [first]
    assert str(tmp_path / "nope.png") in captured.err and str(tmp_path / "empty") in captured.err


def test_nothing_readable_fails_without_loading_a_model(tmp_path, template_model, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().out == ""
    assert template_model == []


def test_save_preprocessed_writes_what_the_model_saw(pictures, template_model, tmp_path, capsys):
    folder, labels = pictures
    out = tmp_path / "seen"
    assert cli.main(["predict", str(folder), "--save-preprocessed", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["digit0.png", "digit1.png", "digit2.png", "digit3.png"]
    for source in labels:
        saved = np.asarray(Image.open(out / (source.rsplit("/", 1)[1].rsplit(".", 1)[0] + ".png")))
        assert saved.shape == (28, 28) and saved.dtype == np.uint8
        np.testing.assert_array_equal(saved, np.round(load_digit(source) * 255).astype(np.uint8))


def test_human_output_marks_the_predicted_digit_with_a_full_bar(tmp_path, monkeypatch, capsys):
    class Certain:
        def predict_proba(self, images):
            return np.tile(np.eye(10, dtype=np.float32)[3], (len(images), 1))

    monkeypatch.setattr(models, "load_classifier", lambda path: Certain())
    monkeypatch.setattr(models, "check_trusted", lambda path, trust=False: None)
    picture = np.full((100, 100), 255, np.uint8)
    picture[20:80, 45:55] = 0
    Image.fromarray(picture).save(tmp_path / "one.png")
    assert cli.main(["predict", str(tmp_path / "one.png"), "--model", "x.keras"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'one.png'}: 3 ")
    assert "3█" in line and "[0.000 0.000 0.000 1.000 0.000" in line


@pytest.mark.tf
def test_predict_with_a_real_keras_model(pictures, tiny_model, capsys):
    folder, labels = pictures
    assert cli.main(["predict", str(folder), "--json", "--model", str(tiny_model[0])]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["file"] for record in records] == sorted(labels)
    for record in records:
        assert abs(sum(record["probabilities"]) - 1) < 1e-4


@pytest.mark.tf
def test_tensorflow_start_up_noise_stays_off_the_terminal(pictures, tiny_model, tmp_path):
    """The CUDA-stub, cpu_feature_guard and cuInit lines TensorFlow's C++ writes to file
    descriptor 2 on start-up are hidden, unless -v asks for everything."""
    folder, labels = pictures
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    env["ROBUST_MNIST_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "robust_mnist", "predict", str(folder), "--model", str(tiny_model[0])],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(labels)
    assert result.stderr == ""
