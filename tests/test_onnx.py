"""ONNX model files as models: hand-built graphs (onnx.helper) with closed-form probabilities,
the input contract (layout, scale, output), and bad files refused in one line with nothing
written. No TensorFlow, except the tests marked ``tf`` (a Keras export of the article model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from robust_mnist import cli, models, rundir
from robust_mnist.compare import compare_runs
from robust_mnist.commands import contract_flags
from robust_mnist.data import to_float
from robust_mnist.errors import ModelError, StudyError
from robust_mnist.onnx_model import LAYOUTS, OUTPUTS, SCALES, ModelContract, load_onnx_classifier
from robust_mnist.runner.executors import ModelRef, _classifier, make_executor
from robust_mnist.runner.run import run_study
from robust_mnist.study import load_study, parse_study
from study_fakes import FakeShift, register_fakes

#: The logistic model's weights: small, so the logits stay within a few units.
RNG = np.random.default_rng(12)
WEIGHTS = RNG.normal(0.0, 0.05, (784, 10)).astype(np.float32)
BIAS = RNG.normal(0.0, 0.5, 10).astype(np.float32)
#: float32 arithmetic (ONNX Runtime's) against the float64 closed form.
TOLERANCE = 1e-6


# ------------------------------------------------------------------ building models


def save_model(path: Path, nodes, inputs, outputs, initializers=(), domains=()) -> Path:
    graph = helper.make_graph(nodes, "model", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    return path


def image_input(shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def scores_output(shape=("N", 10)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))


def logistic(path: Path, input_shape=("N", 784), last: str | None = "Softmax", output_shape=("N", 10),
             weights=WEIGHTS, bias=BIAS) -> Path:
    """``last(reshape(x, (N, 784)) @ W + b)``: ``last`` Softmax (probabilities), LogSoftmax or
    None (logits)."""
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits" if last else "y"]),
    ]
    if last:
        nodes.append(helper.make_node(last, ["logits"], ["y"], axis=1))
    initializers = [
        numpy_helper.from_array(np.array([-1, weights.shape[0]], np.int64), "flat_shape"),
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(bias, "b"),
    ]
    return save_model(path, nodes, [image_input(input_shape)], [scores_output(output_shape)], initializers)


def closed_form(images: np.ndarray, scale=lambda x: x) -> np.ndarray:
    """softmax(scale(x) @ W + b) in float64: (N, 28, 28) -> (N, 10)."""
    logits = scale(images.astype(np.float64)).reshape(len(images), 784) @ WEIGHTS.astype(np.float64) + BIAS
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def mnist_scale(x):
    return (x - 0.1307) / 0.3081


@pytest.fixture
def digits(mnist):
    return to_float(mnist.x_test[:50])


# ------------------------------------------------------------------ the contract, detected or declared


def test_a_softmax_model_gives_its_closed_form_probabilities(tmp_path, digits):
    classifier = load_onnx_classifier(logistic(tmp_path / "logistic.onnx"))
    assert classifier.contract == ModelContract("flat", "unit", "probabilities")
    assert classifier.detected == ("input_layout", "input_scale", "output")
    probabilities = classifier.predict_proba(digits)
    assert probabilities.dtype == np.float32 and probabilities.shape == (50, 10)
    np.testing.assert_allclose(probabilities, closed_form(digits), rtol=0, atol=TOLERANCE)
    assert classifier.predict_proba(digits[:0]).shape == (0, 10)


@pytest.mark.parametrize("last", [None, "LogSoftmax"])
def test_logits_and_log_probabilities_are_detected_and_softmaxed(tmp_path, digits, last):
    classifier = load_onnx_classifier(logistic(tmp_path / "scores.onnx", last=last))
    assert classifier.contract.output == "logits"
    np.testing.assert_allclose(classifier.predict_proba(digits), closed_form(digits), rtol=0, atol=TOLERANCE)


def test_probabilities_without_a_softmax_node_are_detected_by_the_probe(tmp_path, digits):
    # exp(z) / sum(exp(z)) spelled out: a softmax applied to it would flatten it silently.
    path = tmp_path / "manual.onnx"
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Exp", ["z"], ["e"]),
        helper.make_node("ReduceSum", ["e", "axes"], ["total"], keepdims=1),
        helper.make_node("Div", ["e", "total"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "b"),
                    numpy_helper.from_array(np.array([1], np.int64), "axes")]
    save_model(path, nodes, [image_input(("N", 784))], [scores_output()], initializers)
    classifier = load_onnx_classifier(path)
    assert classifier.contract.output == "probabilities"
    np.testing.assert_allclose(classifier.predict_proba(digits), closed_form(digits), rtol=0, atol=TOLERANCE)


def test_nchw_is_detected_and_the_mnist_scale_declared(tmp_path, digits):
    path = logistic(tmp_path / "nchw.onnx", input_shape=("N", 1, 28, 28), last=None)
    classifier = load_onnx_classifier(path, {"input_scale": "mnist"})
    assert classifier.contract == ModelContract("nchw", "mnist", "logits")
    assert classifier.detected == ("input_layout", "output")
    np.testing.assert_allclose(classifier.predict_proba(digits), closed_form(digits, mnist_scale), rtol=0, atol=TOLERANCE)
    # An explicit (mean, std) and the 255 scale.
    explicit = load_onnx_classifier(path, {"input_scale": {"mean": 0.5, "std": 0.25}})
    np.testing.assert_allclose(explicit.predict_proba(digits), closed_form(digits, lambda x: (x - 0.5) / 0.25),
                               rtol=0, atol=TOLERANCE)
    small = logistic(tmp_path / "255.onnx", input_shape=("N", 28, 28), weights=WEIGHTS / 255)
    classifier = load_onnx_classifier(small, ModelContract(input_scale="255"))
    assert classifier.contract.input_layout == "nhw"
    np.testing.assert_allclose(classifier.predict_proba(digits), closed_form(digits), rtol=0, atol=TOLERANCE)


def test_a_fully_dynamic_image_input_needs_its_layout_declared(tmp_path, digits):
    path = logistic(tmp_path / "dynamic.onnx", input_shape=("N", "C", "H", "W"))
    with pytest.raises(ModelError, match=r"dynamic.onnx: input 'x' has shape \(N, C, H, W\), which could be "
                                         r"nhwc or nchw: declare input_layout"):
        load_onnx_classifier(path)
    classifier = load_onnx_classifier(path, {"input_layout": "nchw"})
    np.testing.assert_allclose(classifier.predict_proba(digits), closed_form(digits), rtol=0, atol=TOLERANCE)
    with pytest.raises(ModelError, match=r"input 'x' has shape \(N, 784\), which does not fit input_layout 'nchw'"):
        load_onnx_classifier(logistic(tmp_path / "flat.onnx"), {"input_layout": "nchw"})


def test_a_fixed_batch_size_runs_in_blocks_of_it(tmp_path, digits):
    classifier = load_onnx_classifier(logistic(tmp_path / "batch1.onnx", input_shape=(1, 784), output_shape=(1, 10)))
    np.testing.assert_allclose(classifier.predict_proba(digits[:7]), closed_form(digits[:7]), rtol=0, atol=TOLERANCE)


def test_declared_probabilities_that_are_logits_are_an_error_with_the_fix(tmp_path):
    with pytest.raises(ModelError, match=r"logits.onnx: output is not probabilities .*declare output = \"logits\""):
        load_onnx_classifier(logistic(tmp_path / "logits.onnx", last=None), {"output": "probabilities"})


@pytest.mark.parametrize("values, message", [
    ({"input_layout": "NCHW"}, "input_layout must be one of nhwc, nchw, nhw, flat; got 'NCHW'"),
    ({"input_scale": 255}, "input_scale must be one of 'unit', '255', 'mnist' or a table"),
    ({"input_scale": {"mean": 0.1, "std": 0}}, "input_scale must be one of"),
    ({"output": "softmax"}, "output must be one of probabilities, logits; got 'softmax'"),
    ({"layout": "nhwc"}, r"unknown model contract keys \['layout'\]"),
])
def test_contract_values_are_validated_with_the_allowed_ones(values, message):
    with pytest.raises(ValueError, match=message):
        ModelContract.from_dict(values)


def test_the_command_line_flags_offer_the_contract_values():
    assert contract_flags.LAYOUTS == tuple(LAYOUTS) and contract_flags.SCALES == SCALES
    assert contract_flags.OUTPUTS == OUTPUTS
    assert contract_flags.input_scale("0.5,0.25") == {"mean": 0.5, "std": 0.25}


# ------------------------------------------------------------------ bad files


def truncated(folder: Path) -> Path:
    whole = logistic(folder / "whole.onnx").read_bytes()
    path = folder / "truncated.onnx"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def wrong_rank(folder: Path) -> Path:
    return logistic(folder / "rank5.onnx", input_shape=("N", 28, 28, 1, 1))


def eleven_classes(folder: Path) -> Path:
    weights = np.zeros((784, 11), np.float32)
    return logistic(folder / "eleven.onnx", output_shape=("N", 11), weights=weights, bias=np.zeros(11, np.float32))


def eleven_at_run_time(folder: Path) -> Path:
    weights = np.zeros((784, 11), np.float32)
    return logistic(folder / "eleven-dynamic.onnx", output_shape=("N", "K"), weights=weights,
                    bias=np.zeros(11, np.float32))


def custom_op(folder: Path) -> Path:
    nodes = [helper.make_node("Classify", ["x"], ["y"], domain="com.example.ops")]
    return save_model(folder / "custom.onnx", nodes, [image_input(("N", 784))], [scores_output()],
                      domains=["com.example.ops"])


def with_external_data(folder: Path, location: str, name: str = "external.onnx") -> Path:
    """The logistic model with its weights in an external file at ``location``."""
    path = logistic(folder / name)
    model = onnx.load(str(path))
    (weights,) = [t for t in model.graph.initializer if t.name == "W"]
    target = Path(location) if os.path.isabs(location) else folder / location
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(weights.raw_data)
    onnx.external_data_helper.set_external_data(weights, location=location, offset=0,
                                                length=len(weights.raw_data))
    weights.data_location = TensorProto.EXTERNAL
    weights.ClearField("raw_data")
    onnx.save(model, str(path))
    return path


def external_parent(folder: Path) -> Path:
    model_folder = folder / "model"
    model_folder.mkdir()
    return with_external_data(model_folder, "../weights.bin")


def external_absolute(folder: Path) -> Path:
    return with_external_data(folder, str(folder.parent / "elsewhere" / "weights.bin"))


def external_symlink(folder: Path) -> Path:
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    path = with_external_data(folder, "weights.bin")
    (outside / "weights.bin").write_bytes((folder / "weights.bin").read_bytes())
    (folder / "weights.bin").unlink()
    (folder / "weights.bin").symlink_to(outside / "weights.bin")
    return path


BAD_MODELS = {
    "truncated": (truncated, r"truncated.onnx: cannot read ONNX model: truncated or not an ONNX file"),
    "wrong-rank": (wrong_rank, r"rank5.onnx: input 'x' has shape \(N, 28, 28, 1, 1\) \(rank 5\); expected "
                               r"\(N, 28, 28, 1\) nhwc, \(N, 1, 28, 28\) nchw, \(N, 28, 28\) nhw or \(N, 784\) flat"),
    "11-classes": (eleven_classes, r"eleven.onnx: output 'y' has shape \(N, 11\); expected \(N, 10\)"),
    "11-at-run-time": (eleven_at_run_time, r"eleven-dynamic.onnx: output 'y' has shape \(4, 11\) for 4 digits; "
                                           r"expected \(4, 10\)"),
    "custom-op": (custom_op, r"custom.onnx: node 'Classify' uses the custom operator com.example.ops.Classify"),
    "external-parent": (external_parent, r"external.onnx: tensor 'W' stores its data in external file "
                                         r"'../weights.bin', which leads outside the model file's folder"),
    "external-absolute": (external_absolute, r"external.onnx: tensor 'W' stores its data in external file "
                                             r"'/.*weights.bin', an absolute path"),
    "external-symlink": (external_symlink, r"external.onnx: tensor 'W' stores its data in external file "
                                           r"'weights.bin', which leads outside the model file's folder"),
}


@pytest.fixture(params=sorted(BAD_MODELS))
def bad_model(request, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    make, message = BAD_MODELS[request.param]
    return make(folder), message


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("robust-mnist: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_bad_model_file_is_refused_by_the_loader(bad_model):
    path, message = bad_model
    with pytest.raises(ModelError, match=message):
        load_onnx_classifier(path)


def test_a_bad_model_in_a_study_is_one_line_and_writes_nothing(bad_model, tmp_path, capsys, monkeypatch):
    path, message = bad_model
    study = tmp_path / "study.toml"
    study.write_text(STUDY_TOML.format(path=path))
    assert cli.main(["study", str(study), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    assert re_search(message, error_line(capsys))
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "reports").exists()


def test_a_bad_model_for_predict_is_one_line_and_writes_nothing(bad_model, tmp_path, capsys, mnist):
    path, message = bad_model
    picture = tmp_path / "7.png"
    Image.fromarray(255 - np.kron(mnist.x_test[0], np.ones((3, 3), np.uint8))).save(picture)
    argv = ["predict", str(picture), "--model", str(path), "--save-preprocessed", str(tmp_path / "seen")]
    assert cli.main(argv) == 1
    assert re_search(message, error_line(capsys))
    assert capsys.readouterr().out == "" and not (tmp_path / "seen").exists()


def re_search(pattern: str, text: str) -> bool:
    import re

    assert re.search(pattern, text), (pattern, text)
    return True


def test_external_data_inside_the_folder_is_read(tmp_path, digits):
    path = with_external_data(tmp_path, "data/weights.bin")
    np.testing.assert_allclose(load_onnx_classifier(path).predict_proba(digits), closed_form(digits),
                               rtol=0, atol=TOLERANCE)


def test_onnx_files_need_no_trust_but_must_exist(tmp_path):
    models.check_trusted(logistic(tmp_path / "foreign.onnx"))  # no --trust-model: no code inside
    with pytest.raises(ModelError, match="missing.onnx: model file not found"):
        models.check_trusted(tmp_path / "missing.onnx")


def test_a_contract_for_a_keras_model_is_refused(tmp_path, capsys, mnist):
    picture = tmp_path / "7.png"
    Image.fromarray(255 - np.kron(mnist.x_test[0], np.ones((3, 3), np.uint8))).save(picture)
    assert cli.main(["predict", str(picture), "--input-layout", "nchw"]) == 1
    assert "describe an ONNX model: give it with --model MODEL.onnx" in error_line(capsys)
    (tmp_path / "m.keras").write_bytes(b"never loaded")
    assert cli.main(["predict", str(picture), "--model", str(tmp_path / "m.keras"), "--trust-model",
                     "--output", "logits"]) == 1
    assert "output can be declared for ONNX models (.onnx) only" in error_line(capsys)
    with pytest.raises(SystemExit):
        cli.main(["predict", str(picture), "--input-scale", "0.1"])
    assert "--input-scale: must be one of unit, 255, mnist or MEAN,STD" in capsys.readouterr().err


# ------------------------------------------------------------------ studies

STUDY_TOML = """
name = "onnx"
seed = 3
[[models]]
path = "{path}"
[data]
source = "mnist-test"
n = 20
[[perturbations]]
family = "rotate"
magnitudes = [10]
"""


def study_document(**models_and_keys) -> dict:
    return {
        "name": "onnx-study",
        "seed": 5,
        "models": [],
        "data": {"source": "mnist-test", "n": 40},
        "perturbations": [{"family": "rotate", "magnitudes": [10]}],
        **models_and_keys,
    }


@pytest.fixture
def onnx_study(tmp_path, monkeypatch):
    """A study of three ONNX files: probabilities, logits, and NCHW with the MNIST scale."""
    register_fakes(monkeypatch)
    logistic(tmp_path / "probabilities.onnx")
    logistic(tmp_path / "logits.onnx", last=None)
    logistic(tmp_path / "nchw.onnx", input_shape=("N", "C", "H", "W"), last="LogSoftmax")
    document = study_document(models=[
        {"path": "probabilities.onnx"},
        {"path": "logits.onnx"},
        {"path": "nchw.onnx", "input_layout": "nchw", "input_scale": "mnist"},
    ], perturbations=[{"family": "fake_shift", "magnitudes": [-2, 3]}])
    return parse_study(document, tmp_path / "study.toml")


def test_a_study_gives_each_model_its_closed_form_probabilities(onnx_study, tmp_path):
    outcome = run_study(onnx_study, tmp_path / "run")
    run = rundir.load_run(outcome.run_dir)
    images = to_float(run.digits.images)
    expected = {"probabilities": closed_form(images), "logits": closed_form(images),
                "nchw": closed_form(images, mnist_scale)}
    shift = FakeShift()
    for (model, family, magnitude), rows in run.results.groupby(["model", "family", "magnitude"]):
        rows = rows.sort_values("image")
        seen = images[rows["image"].to_numpy()]
        if family == "fake_shift":
            params = shift.sample_params(len(seen), magnitude, None)
            seen = shift.apply(seen, params)
            scale = mnist_scale if model == "nchw" else (lambda x: x)
            truth = closed_form(seen, scale)
        else:
            truth = expected[model][rows["image"].to_numpy()]
        probabilities = rows[list(rundir.PROBABILITY_COLUMNS)].to_numpy()
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities, truth, rtol=0, atol=TOLERANCE)
        assert (rows["pred"].to_numpy() == truth.argmax(axis=1)).all()
    info = run.info["models"]
    assert info["nchw"]["framework"] == "onnx" and info["nchw"]["onnxruntime"]
    assert info["nchw"]["contract"] == {"input_layout": "nchw", "input_scale": "mnist", "output": "logits"}
    assert info["nchw"]["detected"] == ["output"]
    assert info["probabilities"]["contract"]["output"] == "probabilities"
    assert info["logits"]["checksum"] == models.file_checksum(tmp_path / "logits.onnx")


@pytest.mark.parametrize("executor", ["process", "dask"])
def test_workers_and_chunk_sizes_give_the_same_bits(onnx_study, tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    reference = pd.read_parquet(run_study(onnx_study, tmp_path / "serial").run_dir / "results.parquet")
    # Spawned workers reload each file by path, with its contract, after checking its sha256.
    pooled = run_study(onnx_study, tmp_path / executor, executor=make_executor(executor, workers=2), chunk_size=7)
    pd.testing.assert_frame_equal(pd.read_parquet(pooled.run_dir / "results.parquet"), reference, check_exact=True)


def test_a_worker_refuses_an_onnx_file_that_differs_from_the_clients(tmp_path):
    path = logistic(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="m.onnx: model file on worker .* differs from the client's"):
        _classifier(ModelRef("m", str(path), "0" * 64, contract={"output": "probabilities"}))
    ref = ModelRef("m", str(path), models.file_checksum(path), contract={"input_layout": "flat"})
    assert _classifier(ref).contract.input_layout == "flat"


def test_the_contract_is_part_of_the_spec_hash(tmp_path):
    logistic(tmp_path / "m.onnx")
    (tmp_path / "m.keras").write_bytes(b"keras")
    plain = parse_study(study_document(models=[{"path": "m.onnx"}]), tmp_path / "s.toml")
    declared = parse_study(study_document(models=[{"path": "m.onnx", "output": "probabilities"}]),
                           tmp_path / "s.toml")
    assert plain.models[0].to_dict() == {"name": "m", "path": "m.onnx"}  # as before ONNX models
    assert declared.models[0].to_dict()["output"] == "probabilities"
    assert plain.spec_hash() != declared.spec_hash()


@pytest.mark.parametrize("entry, message", [
    ({"path": "m.onnx", "input_layout": "chw"}, r"models\[0\]: input_layout must be one of nhwc, nchw, nhw, flat"),
    ({"path": "m.onnx", "input_scale": {"mean": 0.1}}, r"models\[0\]: input_scale must be one of"),
    ({"path": "m.keras", "output": "logits"}, r"models\[0\]\.output: applies to ONNX model files only"),
    ({"arch": "article", "input_scale": "mnist"}, r"models\[0\]\.input_scale: applies to ONNX model files only"),
    ({"path": "m.pt"}, r"models\[0\]\.path: must be a \.keras or \.onnx file"),
])
def test_study_file_contract_mistakes_are_one_line(tmp_path, entry, message):
    logistic(tmp_path / "m.onnx")
    (tmp_path / "m.keras").write_bytes(b"keras")
    (tmp_path / "m.pt").write_bytes(b"torch")
    with pytest.raises(StudyError, match=message):
        parse_study(study_document(models=[entry]), tmp_path / "s.toml")


def test_predict_and_perturb_run_an_onnx_model_with_declared_flags(tmp_path, capsys, mnist, digits):
    path = logistic(tmp_path / "nchw.onnx", input_shape=("N", "C", "H", "W"), last=None)
    picture = tmp_path / "7.png"
    Image.fromarray(255 - np.kron(mnist.x_test[0], np.ones((3, 3), np.uint8))).save(picture)
    argv = ["predict", str(picture), "--json", "--model", str(path), "--input-layout", "nchw",
            "--input-scale", "0.1307,0.3081", "--output", "logits"]
    assert cli.main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    from robust_mnist.preprocess import load_digit

    truth = closed_form(load_digit(picture)[None], mnist_scale)[0]
    np.testing.assert_allclose(record["probabilities"], truth, rtol=0, atol=TOLERANCE)

    sheet = tmp_path / "sheet.png"
    assert cli.main(["perturb", "0", "--family", "rotate", "--magnitudes", "0", "20", "--model", str(path),
                     "--input-layout", "nchw", "--input-scale", "mnist", "--out", str(sheet)]) == 0
    assert sheet.is_file() and str(sheet) in capsys.readouterr().out


def test_load_study_keeps_a_table_scale(tmp_path):
    logistic(tmp_path / "m.onnx")
    study = tmp_path / "s.toml"
    study.write_text(STUDY_TOML.format(path="m.onnx").replace(
        'path = "m.onnx"', 'path = "m.onnx"\ninput_scale = { mean = 0.5, std = 0.5 }'))
    spec = load_study(study)
    assert spec.models[0].contract.input_scale == (0.5, 0.5)
    assert spec.models[0].to_dict()["input_scale"] == {"mean": 0.5, "std": 0.5}


# ------------------------------------------------------------------ Keras exports (TensorFlow)


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """The one-epoch article model and its ONNX export (Keras 3's model.export)."""
    keras_path = tiny_model[0]
    classifier = models.load_classifier(keras_path)
    classifier.predict_proba(np.zeros((1, 28, 28), np.float32))  # a model is exported once called
    onnx_path = tmp_path_factory.mktemp("export") / "article-tiny.onnx"
    classifier.model.export(str(onnx_path), format="onnx", verbose=False)
    return keras_path, onnx_path, classifier


@pytest.mark.tf
def test_a_keras_export_predicts_what_the_keras_model_does(exported, mnist):
    keras_path, onnx_path, keras_classifier = exported
    onnx_classifier = models.load_classifier(onnx_path)
    assert onnx_classifier.contract == ModelContract("nhwc", "unit", "probabilities")
    images = to_float(mnist.x_test[:1000])
    expected, actual = keras_classifier.predict_proba(images), onnx_classifier.predict_proba(images)
    assert np.abs(expected - actual).max() <= 1e-5
    assert (expected.argmax(axis=1) == actual.argmax(axis=1)).all()


@pytest.mark.tf
def test_a_study_of_a_keras_model_and_its_export_predicts_the_same(exported, tmp_path):
    keras_path, onnx_path, _ = exported
    document = {
        "name": "same-model", "seed": 2,
        "models": [{"path": str(keras_path), "name": "keras"}, {"path": str(onnx_path), "name": "onnx"}],
        "data": {"source": "mnist-test", "n": 200},
        "perturbations": [{"family": "rotate", "magnitudes": [15, 30]},
                          {"family": "gaussian_noise", "magnitudes": [0.3], "draws": 1}],
    }
    outcome = run_study(parse_study(document, tmp_path / "study.toml"), tmp_path / "run")
    results = rundir.load_results(outcome.run_dir)
    key = ["family", "magnitude", "draw", "image"]
    keras_rows = results[results["model"] == "keras"].sort_values(key).reset_index(drop=True)
    onnx_rows = results[results["model"] == "onnx"].sort_values(key).reset_index(drop=True)
    assert len(keras_rows) == len(onnx_rows) == 200 * 4
    assert (keras_rows["pred"] == onnx_rows["pred"]).all()
    columns = list(rundir.PROBABILITY_COLUMNS)
    assert np.abs(keras_rows[columns].to_numpy() - onnx_rows[columns].to_numpy()).max() <= 1e-5
    # compare sees two models like any others, and finds nothing between them.
    comparison = compare_runs([outcome.run_dir], n_boot=200)
    pairs = comparison.pairwise
    assert set(pairs["family"]) == {"clean", "rotate", "gaussian_noise"}
    assert (pairs["a_only"] == 0).all() and (pairs["b_only"] == 0).all()
    assert (pairs["p_value"] == 1).all() and not pairs["significant"].any()
    assert set(comparison.ranking["model"]) == {"keras", "onnx"}
