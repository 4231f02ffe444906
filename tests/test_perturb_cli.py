"""``robust-mnist perturbations`` and ``robust-mnist perturb``, with the numpy classifier."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robust_mnist import cli, sheet
from robust_mnist.data import to_float
from robust_mnist.perturbations import available, family, perturb


@pytest.fixture
def template_model(monkeypatch, template_classifier):
    """Route the command's model loading to the numpy classifier (no TensorFlow)."""
    requested = []

    def fake(model, contract=None):
        requested.append(model)
        return template_classifier, "template"

    monkeypatch.setattr(sheet, "classifier_for", fake)
    return requested


def test_perturbations_lists_every_family_with_unit_and_grid(capsys):
    assert cli.main(["perturbations"]) == 0
    out = capsys.readouterr().out
    for name in available():
        cls = family(name)
        assert name in out
        assert cls.unit in out
    assert "-60 -45 -30 -15 0 15 30 45 60" in out  # rotate's grid, on one line


def test_perturb_writes_a_sheet_and_prints_each_prediction(
    tmp_path, capsys, template_model, template_classifier, mnist
):
    sheet = tmp_path / "sheets" / "rotate.png"
    status = cli.main(
        ["perturb", "0", "--family", "rotate", "--magnitudes", "-45", "0", "45", "--out", str(sheet)]
    )
    assert status == 0
    assert template_model == [None]  # no --model: the default model was asked for
    out = capsys.readouterr().out
    assert str(sheet) in out
    with Image.open(sheet) as png:
        assert png.format == "PNG"
        assert png.width > 3 * 28 and png.height > 28

    digit = to_float(mnist.x_test[:1])
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 3
    for row, magnitude in zip(rows, (-45.0, 0.0, 45.0)):
        rotated, _ = perturb("rotate", digit, magnitude)
        probabilities = template_classifier.predict_proba(rotated)[0]
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert float(cells[0]) == magnitude
        assert int(cells[1]) == probabilities.argmax()
        assert float(cells[2]) == pytest.approx(probabilities.max(), abs=6e-4)
        label = int(mnist.y_test[0])
        assert float(cells[3]) == pytest.approx(probabilities[label], abs=6e-4)


def test_perturb_defaults_to_the_family_grid_and_passes_the_model_path(
    tmp_path, capsys, template_model, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.keras").write_bytes(b"not read: the loader is replaced")
    assert cli.main(["perturb", "12", "--family", "blur", "--model", "my.keras", "--trust-model"]) == 0
    assert template_model == ["my.keras"]
    out = capsys.readouterr().out
    assert (tmp_path / "perturb-blur-mnist-test-12.png").is_file()
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == len(family("blur").default_magnitudes)


def test_perturb_accepts_a_picture_of_a_digit_and_family_options(tmp_path, capsys, template_model, mnist):
    # Dark ink on light paper, larger than 28x28, as a user's scan would be.
    ink = np.kron(mnist.x_test[3], np.ones((4, 4), np.uint8))
    picture = tmp_path / "my digit.png"
    Image.fromarray(255 - ink).save(picture)
    sheet = tmp_path / "occluded.png"
    status = cli.main(
        ["perturb", str(picture), "--family", "occlude", "--magnitudes", "0", "4",
         "--options", '{"shape": "patch"}', "--out", str(sheet), "--seed", "3"]
    )
    assert status == 0
    assert sheet.is_file()
    out = capsys.readouterr().out
    assert "my digit" in out


def test_perturb_runs_a_composition_from_json_options(tmp_path, capsys, template_model):
    steps = '{"steps": [{"family": "rotate", "magnitude": 30}, {"family": "gaussian_noise", "magnitude": 0.2}]}'
    status = cli.main(
        ["perturb", "5", "--family", "compose", "--magnitudes", "0", "1", "--options", steps,
         "--out", str(tmp_path / "c.png")]
    )
    assert status == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["perturb", "0", "--family", "rotate", "--magnitudes", "500"], "outside its range"),
        (["perturb", "10000", "--family", "rotate"], "out of range"),
        (["perturb", "no-such-file.png", "--family", "rotate"], "no-such-file.png"),
        (["perturb", "0", "--family", "occlude", "--options", "{shape"], "--options"),
        (["perturb", "0", "--family", "occlude", "--options", '{"shape": "circle"}'], "circle"),
        (["perturb", "0", "--family", "compose"], "compose needs steps"),
        (["perturb", "0", "--family", "occlude", "--options", '{"colour": 1}'], "colour"),
        (["perturb", "0", "--family", "rotate", "--options", '{"fill": 1}'], "rotate takes no options"),
        (["perturb", "0", "--family", "rotate", "--options", "[1]"], "JSON object"),
    ],
)
def test_perturb_reports_user_errors_in_one_line(tmp_path, capsys, template_model, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("robust-mnist: error:")
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_an_unknown_family_is_a_usage_error_listing_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["perturb", "0", "--family", "rotat"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "rotat" in err and "translate_x" in err


def test_perturb_refuses_a_model_file_it_did_not_train_without_trust_model(
    tmp_path, capsys, template_model
):
    foreign = tmp_path / "foreign.keras"
    foreign.write_bytes(b"a model file from elsewhere")
    assert cli.main(["perturb", "12", "--family", "blur", "--model", str(foreign)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "foreign.keras" in error[0] and "--trust-model" in error[0]
    assert template_model == []  # refused before loading anything


def test_the_library_returns_what_the_sheet_shows(tmp_path, template_model, template_classifier, mnist):
    result = sheet.write_contact_sheet(
        "7", "rotate", [0, 90], out=tmp_path / "deeper" / "sheet.png"
    )
    assert result.path == tmp_path / "deeper" / "sheet.png" and result.path.is_file()
    assert result.label == result.reference == int(mnist.y_test[7])
    assert result.source_name == "mnist-test-7" and result.unit == "degrees"
    np.testing.assert_array_equal(result.magnitudes, [0.0, 90.0])
    expected, _ = perturb("rotate", to_float(mnist.x_test[7:8]), 90.0)
    np.testing.assert_array_equal(result.images[1], expected[0])
    np.testing.assert_array_equal(result.probabilities, template_classifier.predict_proba(result.images))
    assert result.truth == f"label {int(mnist.y_test[7])}"
