"""The run directory read back through robust_mnist.rundir: what a run holds, and a damaged or
foreign directory reported as one line naming the file at fault (by the library and the CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robust_mnist import cli, rundir
from robust_mnist.errors import RunDirError
from robust_mnist.runner.run import run_study
from robust_mnist.study import parse_study
from study_fakes import fake_loader

STUDY = {
    "name": "tiny",
    "seed": 1,
    "models": [{"arch": "article", "seed": 0}],
    "data": {"source": "mnist-test", "n": 30},
    "perturbations": [{"family": "translate_x", "magnitudes": [-2.0, 2.0]}],
}


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    run_study(parse_study(STUDY), run_dir, model_loader=fake_loader())
    return run_dir


@pytest.fixture
def run_copy(complete_run, tmp_path):
    """A fresh copy of the complete run, free to damage."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in complete_run.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    return copy


def test_load_run_holds_the_whole_run(complete_run):
    run = rundir.load_run(complete_run)
    assert run.complete and run.info["study"]["name"] == "tiny"
    # 30 clean rows and 30 per magnitude, one model.
    assert len(run.results) == 3 * 30
    assert list(run.results.columns[: len(rundir.BASE_COLUMNS)]) == list(rundir.BASE_COLUMNS)
    assert set(run.results["family"]) == {rundir.CLEAN, "translate_x"}
    assert run.digits.images.shape == (30, 28, 28) and run.digits.images.dtype == np.uint8
    assert run.digits.info["checksum"] == rundir.digits_checksum(run.digits.images, run.digits.labels)
    assert "translate_x/strips" in run.exemplars
    assert run.refined is None  # the study refines nothing


def test_the_clean_digits_morphometrics_are_stored_with_them(complete_run):
    morphometrics = rundir.load_morphometrics(complete_run)
    assert list(morphometrics.columns) == ["thickness", "slant"] and len(morphometrics) == 30
    # MNIST strokes are 1.5 to 4 px thick at 28x28, and digits lean at most about 45 degrees.
    assert morphometrics["thickness"].between(1.0, 6.0).all()
    assert morphometrics["slant"].abs().lt(60).all()


def test_a_run_made_before_morphometrics_were_stored_reads_as_none(run_copy):
    with np.load(run_copy / "digits.npz") as npz:
        arrays = {key: npz[key] for key in ("images", "labels", "ids")}
    np.savez(run_copy / "digits.npz", **arrays)
    assert rundir.load_morphometrics(run_copy) is None
    assert rundir.load_run(run_copy).morphometrics is None


def test_column_and_family_selection(complete_run):
    table = rundir.load_results(complete_run, columns=["model", "family", "p_true", "no_such"],
                                families=["translate_x"])
    assert list(table.columns) == ["model", "family", "p_true"]
    assert set(table["family"]) == {"translate_x"} and len(table) == 60


def test_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        rundir.load_run(tmp_path)
    assert rundir.try_read_run_info(tmp_path) is None


def test_run_json_that_is_not_json_is_named(run_copy):
    (run_copy / "run.json").write_text("{ not json")
    with pytest.raises(RunDirError, match=r"run\.json: not valid JSON"):
        rundir.read_run_info(run_copy)


@pytest.mark.parametrize("name, command", [
    ("results.parquet", "report"),
    ("results.parquet", "summary"),
    ("digits.npz", "report"),
    ("exemplars.npz", "report"),
])
def test_a_truncated_file_is_one_line_naming_it(run_copy, name, command, capsys):
    path = run_copy / name
    path.write_bytes(path.read_bytes()[:300])
    assert cli.main([command, str(run_copy), *(["--out", str(run_copy / "r.html")] if command == "report" else [])]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("robust-mnist: error: ")
    assert str(path) in err


def test_a_cell_from_another_study_is_not_read_as_this_one(run_copy, complete_run):
    info = json.loads((complete_run / "run.json").read_text())
    entry = info["cells"][1]
    table = rundir.read_cell(complete_run, entry["key"], info["spec_hash"], entry["rows"])
    assert table is not None and table.num_rows == entry["rows"]
    assert rundir.read_cell(complete_run, entry["key"], "another-study", entry["rows"]) is None
    assert rundir.read_cell(complete_run, entry["key"], info["spec_hash"], entry["rows"] + 1) is None
