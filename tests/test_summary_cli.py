"""`robust-mnist study` and `robust-mnist summary` from the command line (no TensorFlow)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robust_mnist import cli
from robust_mnist.runner import run as runner_run
from study_fakes import fake_loader, register_fakes, template_classifier

STUDY = """
name = "cli demo"
seed = 1

[[models]]
arch = "article"

[data]
n = 100

[[perturbations]]
family = "fake_shift"
magnitudes = [-2, 2, 3]

[[perturbations]]
family = "fake_noise"
magnitudes = [0.5]
draws = 2
"""


@pytest.fixture
def study_file(tmp_path, monkeypatch):
    register_fakes(monkeypatch)
    monkeypatch.setattr(runner_run, "load_model", fake_loader())
    path = tmp_path / "demo.toml"
    path.write_text(textwrap.dedent(STUDY))
    return path


@pytest.fixture
def finished(study_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    return run_dir


def test_study_prints_the_summary_and_a_rerun_is_a_no_op(study_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "cells computed" in err and str(run_dir) in err
    assert "fake_shift" in out and "fake_noise" in out and "clean" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert json.loads((run_dir / "run.json").read_text())["command"] == [
        "robust-mnist", "study", str(study_file), "--out", str(run_dir), "--quiet"]

    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "already complete" in err and str(run_dir) in err
    assert "fake_shift" in out

    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet", "--force"]) == 0
    assert "6 cells computed" in capsys.readouterr().err


def test_study_without_out_writes_runs_slug_of_the_name(study_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["study", str(study_file), "--quiet"]) == 0
    assert (tmp_path / "runs" / "cli-demo" / "results.parquet").is_file()


def test_progress_bar_goes_to_stderr_and_quiet_silences_it(study_file, tmp_path, capsys):
    assert cli.main(["study", str(study_file), "--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "digits/s" in err and "digits/s" not in out
    assert cli.main(["study", str(study_file), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "digits/s" not in capsys.readouterr().err


def test_interrupted_study_tells_how_to_resume(study_file, tmp_path, monkeypatch, capsys):
    class InterruptAfter:
        calls = 0

        def predict_proba(self, images):
            InterruptAfter.calls += 1
            if InterruptAfter.calls == 3:
                raise KeyboardInterrupt
            return template_classifier().predict_proba(images)

    monkeypatch.setattr(runner_run, "load_model", fake_loader({"article-seed0": InterruptAfter()}))
    run_dir = tmp_path / "run"
    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "2 completed cells are saved" in err
    assert f"resume with: robust-mnist study {study_file} --out {run_dir} --resume" in err

    monkeypatch.setattr(runner_run, "load_model", fake_loader())
    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet"]) == 1
    assert "add --resume" in capsys.readouterr().err
    assert cli.main(["study", str(study_file), "--out", str(run_dir), "--quiet", "--resume"]) == 0
    assert "4 cells computed, 2 reused" in capsys.readouterr().err


def test_resume_and_force_together_is_a_usage_error(study_file, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["study", str(study_file), "--resume", "--force"])
    assert caught.value.code == 2


def test_bad_study_file_is_one_line_on_stderr(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[[models]]\narch = "article"\n[[perturbations]]\nfamily = "nope"\n')
    assert cli.main(["study", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "perturbations[0].family" in err and str(path) in err


def test_summary_table_again(finished, capsys):
    assert cli.main(["summary", str(finished)]) == 0
    out = capsys.readouterr().out
    assert out.index("fake_shift") < out.index("fake_noise")
    assert "model article-seed0" in out and "intensity sd" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def expected_accuracies(run_dir: Path) -> dict:
    """Accuracies computed by hand from the results table."""
    results = pd.read_parquet(run_dir / "results.parquet")
    correct = results["pred"] == results["label"]
    clean = correct[results["family"] == "clean"].mean()
    shift = results["family"] == "fake_shift"
    return {
        "clean": clean,
        **{m: correct[shift & (results["magnitude"] == m)].mean() for m in (-2.0, 2.0, 3.0)},
    }


def test_summary_csv_and_json_export_the_same_aggregates(finished, capsys):
    assert cli.main(["summary", str(finished), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == ["model", "family", "metric", "magnitude", "n_digits", "value", "low", "high"]
    assert list(dict.fromkeys(table["family"])) == ["fake_shift", "fake_noise"]
    expected = expected_accuracies(finished)
    shift = table[table["family"] == "fake_shift"].set_index("metric")
    assert shift.loc["clean_accuracy", "value"] == pytest.approx(expected["clean"])
    at = table[(table["family"] == "fake_shift") & (table["metric"] == "accuracy")].set_index("magnitude")
    for magnitude in (-2.0, 2.0, 3.0):
        assert at.loc[magnitude, "value"] == pytest.approx(expected[magnitude])
        assert at.loc[magnitude, "low"] <= at.loc[magnitude, "value"] <= at.loc[magnitude, "high"]

    assert cli.main(["summary", str(finished), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == len(table)
    assert [r["metric"] for r in records] == list(table["metric"])
    values = np.array([np.nan if r["value"] is None else r["value"] for r in records], dtype=float)
    finite = np.isfinite(table["value"].to_numpy())
    np.testing.assert_allclose(values[finite], table["value"].to_numpy()[finite])


def test_summary_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["summary", str(tmp_path)]) == 1
    assert "not a run directory" in capsys.readouterr().err
