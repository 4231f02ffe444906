"""ONNX exports of Keras models (``robust_mnist.export`` and ``robust-mnist export``).

Tests marked ``tf`` export conftest's one-epoch article model (each export takes a second or
two); the argument checks run before TensorFlow is imported.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from robust_mnist import cli, export, models
from robust_mnist.data import load_mnist, to_float
from robust_mnist.errors import InvalidArgumentError, ModelError


def onnx_probabilities(path, images):
    """ONNX Runtime on an export, independently of robust_mnist.export."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images[..., None]})[0]


def uniform_onnx_model(path):
    """A (N, 28, 28, 1) -> (N, 10) model that predicts 0.1 for every class."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.zeros(7840, np.float32))
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "uniform",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 10])],
        initializer=[weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


@pytest.mark.tf
def test_export_predicts_what_the_keras_model_does(tiny_model, tmp_path):
    out = tmp_path / "exports" / "tiny.onnx"
    check = export.export_onnx(tiny_model[0], out, n_digits=1000)

    images = to_float(load_mnist().x_test[:1000])
    expected = models.load_classifier(tiny_model[0]).predict_proba(images)
    actual = onnx_probabilities(out, images)
    assert np.abs(expected - actual).max() <= 1e-5
    assert (expected.argmax(axis=1) == actual.argmax(axis=1)).all()
    assert check.passed and check.onnx_path == out and check.n_digits == 1000
    assert check.argmax_agreements == 1000 and check.argmax_share == 1.0
    assert check.max_abs_diff == pytest.approx(np.abs(expected - actual).max(), abs=1e-6)
    assert [path.name for path in out.parent.iterdir()] == ["tiny.onnx"]  # no temporary left


@pytest.mark.tf
def test_augmentation_layers_export_as_the_identity_they_are_at_inference(tmp_path):
    # Keras exports each layer's default `training`, True for random augmentation layers.
    model, _ = models.get_architecture("article-aug")()  # untrained: the graph is the point
    model.save(tmp_path / "aug.keras")
    check = export.export_onnx(tmp_path / "aug.keras", tmp_path / "aug.onnx", trust_model=True, n_digits=200)
    assert check.passed
    assert not any("Random" in node.op_type for node in onnx.load(tmp_path / "aug.onnx").graph.node)


@pytest.mark.tf
def test_cli_prints_the_check_on_the_test_digits(tiny_model, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert cli.main(["export", str(tiny_model[0]), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0] == f"{out}: exported from {tiny_model[0]}"
    assert "same argmax on 10,000 of 10,000 test digits (100.00%)" in printed.out
    assert "max |Δp|" in printed.out and out.is_file()
    assert "tf2onnx" not in printed.err and "Saved artifact" not in printed.out + printed.err
    # The record beside the export makes it reusable as the model's cached export.
    record = json.loads(export.sidecar_path(out).read_text())
    assert record["check"]["argmax_agreements"] == 10_000 and record["check"]["max_abs_diff"] <= 1e-5
    assert record["keras_sha256"] == models.file_checksum(tiny_model[0])
    assert record["onnx_sha256"] == models.file_checksum(out)


@pytest.mark.tf
def test_a_failed_check_is_one_line_and_writes_nothing(tiny_model, tmp_path):
    out = tmp_path / "tiny.onnx"
    with pytest.raises(ModelError, match="does not predict the same") as raised:
        export.export_onnx(tiny_model[0], out, n_digits=1000, tolerance=0.0)
    assert "\n" not in str(raised.value) and list(tmp_path.iterdir()) == []

    wrong = uniform_onnx_model(tmp_path / "uniform.onnx")
    with pytest.raises(ModelError, match="uniform.onnx: does not predict what") as raised:
        export.check_equivalence(tiny_model[0], wrong, n=100)
    assert "\n" not in str(raised.value)


@pytest.mark.tf
def test_cached_export_is_made_again_only_when_a_file_changes(tiny_model, tmp_path, monkeypatch):
    keras_path = tmp_path / "article-tiny.keras"
    shutil.copy(tiny_model[0], keras_path)
    shutil.copy(models.record_path(tiny_model[0]), models.record_path(keras_path))
    exports = []
    real_export = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: exports.append(a) or real_export(*a, **k))

    onnx_path = export.cached_onnx_export(keras_path)
    assert onnx_path == tmp_path / "article-tiny.onnx" and len(exports) == 1
    sidecar = json.loads(export.sidecar_path(onnx_path).read_text())
    assert sidecar["keras_sha256"] == models.file_checksum(keras_path)
    assert sidecar["check"]["n_digits"] == 1000 and sidecar["check"]["max_abs_diff"] <= 1e-5
    assert export.cached_onnx_export(keras_path) == onnx_path and len(exports) == 1

    # Saved again, the model's file changes (Keras records when it was saved): export again.
    model = models.load_classifier(keras_path).model
    model.save(keras_path)
    export.cached_onnx_export(keras_path, trust_model=True)
    assert len(exports) == 2
    assert json.loads(export.sidecar_path(onnx_path).read_text())["keras_sha256"] == models.file_checksum(keras_path)

    onnx_path.write_bytes(b"damaged")  # an export that is not the one recorded: export again
    export.cached_onnx_export(keras_path, trust_model=True)
    assert len(exports) == 3 and onnx.load(onnx_path) is not None


@pytest.mark.parametrize(
    ("model", "out", "message"),
    [
        ("missing.keras", "out.onnx", "missing.keras: model file not found"),
        ("model.h5", "out.onnx", "model.h5: only .keras models can be exported to ONNX"),
        ("model.keras", "out.pb", "out.pb: the export's file name must end in .onnx"),
        ("model.keras", "out.onnx", "model.keras: model file not trained by robust-mnist"),
    ],
)
def test_bad_arguments_give_one_line(tmp_path, capsys, model, out, message):
    (tmp_path / "model.keras").write_bytes(b"not a model")  # foreign: refused before loading
    (tmp_path / "model.h5").write_bytes(b"not a model")
    assert cli.main(["export", str(tmp_path / model), "--out", str(tmp_path / out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"robust-mnist: error: {tmp_path / message.split(':')[0]}:")
    assert message.split(": ", 1)[1] in err and err.count("\n") == 1
    assert not (tmp_path / out).exists()


def test_the_check_needs_a_valid_number_of_digits(tmp_path):
    with pytest.raises(InvalidArgumentError, match="from 1 to 10,000"):
        export.check_equivalence(tmp_path / "m.keras", tmp_path / "m.onnx", n=0)
