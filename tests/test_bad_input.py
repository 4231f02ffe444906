"""Bad input through the command line: one clear line on stderr, a non-zero exit, nothing lost.

Each row of the bad-input matrix is a test calling ``cli.main(argv)`` in-process. Studies run
with the numpy TemplateClassifier in place of the Keras model (``robust_mnist.runner.run.load_model`` is
replaced), except the tests marked ``tf`` that need real Keras files.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robust_mnist import cli
from robust_mnist.runner import run as runner_run
from study_fakes import fake_loader, template_classifier


def error_line(capsys) -> str:
    """The single error line the command printed (stdout must hold no error)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("robust-mnist: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def digit_png(path: Path, index: int = 0, mnist=None) -> Path:
    """An MNIST test digit as a dark-on-light 84 px PNG."""
    image = 255 - np.kron(mnist.x_test[index], np.ones((3, 3), np.uint8))
    Image.fromarray(image).save(path)
    return path


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose IHDR claims ``width`` x ``height`` pixels (CRC fixed up)."""
    Image.new("L", (1, 1), 255).save(path)
    data = bytearray(path.read_bytes())
    # Signature (8) + IHDR length (4) + b"IHDR" (4), then width, height, 5 more bytes, CRC.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_tensorflow(monkeypatch, tmp_path):
    """Studies and predict use the numpy model; any attempt to load Keras fails the test.

    Runs in tmp_path: `study` writes its report under ./reports/.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner_run, "load_model", fake_loader())

    def refuse(*args, **kwargs):
        raise AssertionError("this test must not load a Keras model")

    from robust_mnist import models

    monkeypatch.setattr(models, "load_classifier", refuse)
    monkeypatch.setattr(models, "ensure_model", refuse)


def write_study(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


GOOD_STUDY = """
name = "bad-input"
seed = 1
[[models]]
arch = "article"
seed = 0
[data]
source = "mnist-test"
n = 30
[[perturbations]]
family = "rotate"
magnitudes = [-10, 10]
"""


# ------------------------------------------------------------------ the user's digits


def test_truncated_file_among_the_digits_is_named_and_the_others_still_predicted(
    tmp_path, mnist, capsys, monkeypatch
):
    from robust_mnist import models

    monkeypatch.setattr(models, "ensure_model", lambda *a, **k: "cached.keras")
    monkeypatch.setattr(models, "load_classifier", lambda path: template_classifier())
    digit_png(tmp_path / "7_good.png", 0, mnist)
    whole = digit_png(tmp_path / "2_cut.png", 1, mnist).read_bytes()
    (tmp_path / "2_cut.png").write_bytes(whole[: len(whole) // 2])
    assert cli.main(["predict", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{tmp_path / '7_good.png'}: ")  # the good digit is not lost
    (line,) = [x for x in err.splitlines() if x.startswith("robust-mnist: error:")]
    assert "2_cut.png" in line and "truncated" in line


def test_non_image_file_in_a_study_folder_is_one_line_naming_it(tmp_path, mnist, capsys, no_tensorflow):
    folder = tmp_path / "digits"
    folder.mkdir()
    digit_png(folder / "7_a.png", 0, mnist)
    (folder / "3_b.png").write_text("this is not a picture\n")
    study = write_study(tmp_path, GOOD_STUDY.replace('source = "mnist-test"\nn = 30', 'source = "folder"\npath = "digits"'))
    assert cli.main(["study", str(study), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    line = error_line(capsys)
    assert "3_b.png" in line and "not an image" in line
    assert not (tmp_path / "run" / "run.json").exists()  # nothing half-made to trust later


def test_zero_byte_image_is_an_error(tmp_path, capsys):
    (tmp_path / "1_empty.png").write_bytes(b"")
    assert cli.main(["predict", str(tmp_path / "1_empty.png")]) == 1
    line = error_line(capsys)
    assert "1_empty.png" in line and "empty" in line


def test_image_of_zero_pixels_is_an_error(tmp_path, capsys):
    png_with_size(tmp_path / "zero.png", 0, 0)
    assert cli.main(["predict", str(tmp_path / "zero.png")]) == 1
    line = error_line(capsys)
    assert "zero.png" in line and "not an image" in line


def test_decompression_bomb_is_refused_without_decoding_it(tmp_path, capsys):
    import resource

    bomb = png_with_size(tmp_path / "bomb.png", 100_000, 100_000)  # 10^10 pixels, 70 bytes
    assert bomb.stat().st_size < 100
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert cli.main(["predict", str(bomb)]) == 1
    line = error_line(capsys)
    assert "bomb.png" in line and "too large" in line
    # Decoding 10^10 grey pixels would need ~10 GB; the peak grows by far less than 100 MB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def test_empty_image_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    assert cli.main(["predict", str(tmp_path / "empty")]) == 1
    line = error_line(capsys)
    assert "empty" in line and "no PNG or JPEG" in line


def test_study_on_an_empty_folder_is_an_error(tmp_path, capsys, no_tensorflow):
    (tmp_path / "digits").mkdir()
    study = write_study(tmp_path, GOOD_STUDY.replace('source = "mnist-test"\nn = 30', 'source = "folder"\npath = "digits"'))
    assert cli.main(["study", str(study), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    line = error_line(capsys)
    assert "digits" in line and "no PNG or JPEG" in line


# ------------------------------------------------------------------ data files


def test_truncated_data_file_is_an_error(tmp_path, capsys, monkeypatch):
    from robust_mnist import models
    from robust_mnist.data import bundled_path

    monkeypatch.setattr(models, "tensorflow_and_keras", lambda: pytest.fail("must not start training"))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(Path(bundled_path()).read_bytes()[:50_000])
    assert cli.main(["train", "--data", str(cut), "--out", str(tmp_path / "m.keras")]) == 1
    line = error_line(capsys)
    assert "cut.npz" in line and "cannot read data file" in line


def test_data_file_in_another_layout_is_an_error(tmp_path, capsys, monkeypatch):
    from robust_mnist import models

    monkeypatch.setattr(models, "tensorflow_and_keras", lambda: pytest.fail("must not start training"))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((5, 28, 28), np.uint8), labels=np.zeros(5, np.uint8))
    assert cli.main(["train", "--data", str(wrong), "--out", str(tmp_path / "m.keras")]) == 1
    line = error_line(capsys)
    assert "wrong.npz" in line and "missing keys" in line
    shape = tmp_path / "shape.npz"
    np.savez(shape, x_train=np.zeros((5, 32, 32), np.uint8), y_train=np.zeros(5, np.uint8),
             x_test=np.zeros((5, 28, 28), np.uint8), y_test=np.zeros(5, np.uint8))
    assert cli.main(["train", "--data", str(shape), "--out", str(tmp_path / "m.keras")]) == 1
    line = error_line(capsys)
    assert "shape.npz" in line and "x_train has shape (5, 32, 32)" in line


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seed", "-1"], "seed must be a non-negative integer"),
        (["--out", "model.h5"], "must end in .keras"),
        (["--epochs", "0"], "epochs must be a positive integer"),
    ],
)
def test_bad_training_options_are_one_line_before_tensorflow_starts(flags, message, capsys, monkeypatch):
    from robust_mnist import models

    monkeypatch.setattr(models, "tensorflow_and_keras", lambda: pytest.fail("must not start training"))
    argv = ["train", *flags] if "--out" in flags else ["train", *flags, "--out", "m.keras"]
    assert cli.main(argv) == 1
    assert message in error_line(capsys)


# ------------------------------------------------------------------ model files


def test_zero_byte_model_file_is_an_error(tmp_path, mnist, capsys):
    digit_png(tmp_path / "7.png", 0, mnist)
    (tmp_path / "empty.keras").write_bytes(b"")
    assert cli.main(["predict", str(tmp_path / "7.png"), "--model", str(tmp_path / "empty.keras"),
                     "--trust-model"]) == 1
    line = error_line(capsys)
    assert "empty.keras" in line and "empty (0 bytes)" in line


def test_missing_model_file_is_an_error(tmp_path, mnist, capsys):
    digit_png(tmp_path / "7.png", 0, mnist)
    assert cli.main(["predict", str(tmp_path / "7.png"), "--model", str(tmp_path / "nope.keras")]) == 1
    line = error_line(capsys)
    assert "nope.keras" in line and "not found" in line


def test_foreign_model_file_is_refused_without_trust_model(tmp_path, mnist, capsys):
    digit_png(tmp_path / "7.png", 0, mnist)
    (tmp_path / "downloaded.keras").write_bytes(b"PK\x03\x04 whatever")
    assert cli.main(["predict", str(tmp_path / "7.png"), "--model", str(tmp_path / "downloaded.keras")]) == 1
    line = error_line(capsys)
    assert "downloaded.keras" in line and "--trust-model" in line


def test_model_with_a_matching_training_record_is_trusted(tmp_path):
    from robust_mnist import models

    model = tmp_path / "mine.keras"
    model.write_bytes(b"weights")
    record = {"model_sha256": hashlib.sha256(b"weights").hexdigest()}
    models.record_path(model).write_text(json.dumps(record))
    assert models.trained_here(model)
    models.check_trusted(model)  # no error
    model.write_bytes(b"weights, swapped after training")
    assert not models.trained_here(model)
    with pytest.raises(ValueError, match="mine.keras: model file not trained by robust-mnist.*--trust-model"):
        models.check_trusted(model)
    models.check_trusted(model, trust=True)  # the user's explicit choice


@pytest.mark.tf
def test_corrupt_model_file_is_an_error(tmp_path, mnist, capsys):
    digit_png(tmp_path / "7.png", 0, mnist)
    (tmp_path / "corrupt.keras").write_bytes(b"PK\x03\x04" + b"\x00garbage" * 100)
    assert cli.main(["predict", str(tmp_path / "7.png"), "--model", str(tmp_path / "corrupt.keras"),
                     "--trust-model"]) == 1
    line = error_line(capsys)
    assert "corrupt.keras" in line and "cannot load Keras model" in line


@pytest.mark.tf
def test_model_whose_output_is_not_ten_probabilities_is_an_error(tmp_path, mnist, capsys):
    import keras

    five = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(5, activation="softmax")])
    five.save(tmp_path / "five.keras")
    digit_png(tmp_path / "7.png", 0, mnist)
    assert cli.main(["predict", str(tmp_path / "7.png"), "--model", str(tmp_path / "five.keras"),
                     "--trust-model"]) == 1
    line = error_line(capsys)
    assert "five.keras" in line and "output shape (5,) is not (10,)" in line


# ------------------------------------------------------------------ study files


STUDY_MISTAKES = {
    "syntax-error": ("name = \"x\n", "study.toml"),
    "unknown-key": (GOOD_STUDY + "colour = 'red'\n", "colour"),
    "unknown-family": (GOOD_STUDY.replace('"rotate"', '"twirl"'), "twirl"),
    "negative-magnitude": (GOOD_STUDY.replace('"rotate"', '"gaussian_noise"').replace("[-10, 10]", "[-0.1, 0.2]"), "-0.1"),
    "out-of-range-magnitude": (GOOD_STUDY.replace("[-10, 10]", "[-10, 500]"), "500"),
    "missing-model-path": (GOOD_STUDY.replace('arch = "article"\nseed = 0', 'path = "missing.keras"'), "missing.keras"),
}


@pytest.mark.parametrize("case", sorted(STUDY_MISTAKES))
def test_study_file_mistake_is_one_line_and_nothing_runs(case, tmp_path, capsys, no_tensorflow):
    text, expected = STUDY_MISTAKES[case]
    study = write_study(tmp_path, text)
    assert cli.main(["study", str(study), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    line = error_line(capsys)
    assert "study.toml" in line and expected in line
    assert not (tmp_path / "run").exists()


def test_resume_into_a_run_of_another_study_refuses_and_keeps_it(tmp_path, capsys, no_tensorflow):
    first = write_study(tmp_path, GOOD_STUDY, "first.toml")
    run_dir = tmp_path / "run"
    assert cli.main(["study", str(first), "--out", str(run_dir), "--quiet"]) == 0
    before = {path.name: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    other = write_study(tmp_path, GOOD_STUDY.replace('"bad-input"', '"other"'), "other.toml")
    capsys.readouterr()
    for flags in (["--resume"], []):
        assert cli.main(["study", str(other), "--out", str(run_dir), "--quiet", *flags]) == 1
        line = error_line(capsys)
        assert str(run_dir) in line and "another study ('bad-input')" in line and "--force" in line
    after = {path.name: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert after == before  # nothing computed is lost


# ------------------------------------------------------------------ hostile names in the report


def test_hostile_study_and_file_names_are_escaped_in_the_report(tmp_path, mnist, capsys, no_tensorflow):
    folder = tmp_path / "digits"
    folder.mkdir()
    hostile = 'a"onerror=x.png'
    for index, name in enumerate([hostile, "b.png", "c.png"]):
        digit_png(folder / name, index, mnist)
    (folder / "labels.csv").write_text(
        f'file,label\n"{hostile.replace(chr(34), chr(34) * 2)}",{mnist.y_test[0]}\n'
        f"b.png,{mnist.y_test[1]}\nc.png,{mnist.y_test[2]}\n"
    )
    study = write_study(tmp_path, GOOD_STUDY.replace('"bad-input"', '"<script>alert(1)</script>"').replace(
        'source = "mnist-test"\nn = 30', 'source = "folder"\npath = "digits"\nlabels = "digits/labels.csv"'))
    run_dir = tmp_path / "run"
    assert cli.main(["study", str(study), "--out", str(run_dir), "--quiet"]) == 0
    assert hostile in set(np.load(run_dir / "digits.npz")["ids"])
    report = tmp_path / "report.html"
    assert cli.main(["report", str(run_dir), "--out", str(report)]) == 0
    html = report.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the name is shown, escaped
    assert "<script>alert(1)" not in html
    assert 'a"onerror' not in html  # the quote is escaped wherever the file name appears
    assert "Content-Security-Policy" in html


def test_study_with_a_foreign_model_file_needs_trust_model(tmp_path, capsys, no_tensorflow, caplog):
    (tmp_path / "downloaded.keras").write_bytes(b"PK\x03\x04 not ours")
    study = write_study(tmp_path, GOOD_STUDY.replace('arch = "article"\nseed = 0', 'path = "downloaded.keras"'))
    assert cli.main(["study", str(study), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    line = error_line(capsys)
    assert "downloaded.keras" in line and "--trust-model" in line
    assert not (tmp_path / "run").exists()  # refused before any work
    assert cli.main(["study", str(study), "--out", str(tmp_path / "run"), "--quiet", "--trust-model"]) == 0
    assert "not trained by robust-mnist (--trust-model)" in caplog.text
