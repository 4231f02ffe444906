"""The study engine: a Keras model run on ONNX Runtime through its cached export (``--engine onnx``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from robust_mnist import cli, models, rundir
from robust_mnist.errors import InvalidArgumentError, RunDirError
from robust_mnist.runner.run import run_study
from robust_mnist.study import parse_study

pytestmark = pytest.mark.tf


@pytest.fixture
def keras_model(tiny_model, tmp_path):
    """A copy of the 1-epoch article model (with its training record) in a fresh folder."""
    path, _ = tiny_model
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    shutil.copy(models.record_path(path), models.record_path(folder / path.name))
    return folder / path.name


def study(keras_path):
    return parse_study({
        "name": "engines", "seed": 4,
        "models": [{"path": str(keras_path), "name": "article"}],
        "data": {"source": "mnist-test", "n": 150},
        "perturbations": [{"family": "rotate", "magnitudes": [-20, 20]},
                          {"family": "salt_pepper", "magnitudes": [0.05], "draws": 2}],
    })


def test_onnx_engine_predicts_what_keras_does_and_records_itself(keras_model, tmp_path):
    keras_run = run_study(study(keras_model), tmp_path / "keras", engine="keras").run_dir
    onnx_run = run_study(study(keras_model), tmp_path / "onnx", engine="onnx").run_dir
    a, b = rundir.load_results(keras_run), rundir.load_results(onnx_run)
    assert len(a) == len(b) == 150 * 5
    assert (a["pred"].to_numpy() == b["pred"].to_numpy()).all()
    columns = [f"p{k}" for k in range(10)]
    assert np.abs(a[columns].to_numpy() - b[columns].to_numpy()).max() <= 1e-5

    export = keras_model.with_suffix(".onnx")
    entry = rundir.read_run_info(onnx_run)["models"]["article"]
    assert entry["engine"] == "onnx" and entry["onnxruntime"]
    assert entry["path"] == str(export) and entry["checksum"] == models.file_checksum(export)
    assert entry["exported_from"] == {"path": str(keras_model), "checksum": models.file_checksum(keras_model)}
    assert entry["training"]["arch"] == "article"  # the Keras model's record, for the report
    assert rundir.read_run_info(keras_run)["models"]["article"]["engine"] == "keras"


def test_a_run_resumes_only_on_the_engine_it_started_with(keras_model, tmp_path):
    spec = study(keras_model)
    run_dir = tmp_path / "run"
    run_study(spec, run_dir, engine="keras")
    info = rundir.read_run_info(run_dir)
    info["status"] = "interrupted"
    rundir.write_run_info(run_dir, info)
    with pytest.raises(RunDirError, match="keras engine when the run started"):
        run_study(spec, run_dir, engine="onnx", resume=True)


def test_the_engine_flag(keras_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study_file = tmp_path / "engines.toml"
    study_file.write_text(
        f'name = "engines"\n[[models]]\npath = "{keras_model}"\n[data]\nn = 50\n'
        '[[perturbations]]\nfamily = "rotate"\nmagnitudes = [30]\n'
    )
    assert cli.main(["study", str(study_file), "--engine", "onnx", "--quiet", "--out", str(tmp_path / "run")]) == 0
    entry = next(iter(rundir.read_run_info(tmp_path / "run")["models"].values()))
    assert entry["engine"] == "onnx"
    with pytest.raises(InvalidArgumentError, match="unknown engine 'tflite'"):
        run_study(parse_study({"name": "x", "models": [{"path": str(keras_model)}],
                               "perturbations": [{"family": "rotate", "magnitudes": [5]}]}),
                  tmp_path / "nothing", engine="tflite")
    assert not (tmp_path / "nothing").exists()
