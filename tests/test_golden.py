"""A small study whose outputs are pinned: reorganising the code must not change a bit of them.

The expected files in ``fixtures/golden/`` were written by the code as it stood before the
package was split into ``rundir``, ``runner/`` and ``html/`` (numpy template models stand in
for the CNN, so no TensorFlow). The results table, the exemplars and the refined critical
magnitudes must be identical to the last bit; the study and comparison reports identical
apart from the run's date, duration, directory and library versions.
"""

from __future__ import annotations

import gzip
import re
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import robust_mnist
from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import load_mnist, to_float
from robust_mnist.html.compare_report import write_comparison_report
from robust_mnist.runner.inputs import LoadedModel
from robust_mnist.study import parse_study

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory) -> Path:
    mnist = load_mnist()
    sharp = TemplateClassifier.fit(to_float(mnist.x_train[:2000]), mnist.y_train[:2000])
    models = {"sharp": sharp, "soft": TemplateClassifier(sharp.templates, sharp.sharpness * 0.5)}

    def loader(model):
        return LoadedModel(models[model.name], {"arch": model.arch, "seed": model.seed, "path": None,
                                                "checksum": f"fake-{model.name}", "training": None})

    out = tmp_path_factory.mktemp("golden")
    spec = parse_study(tomllib.loads((GOLDEN / "study.toml").read_text()))
    robust_mnist.run_study(spec, out / "run", model_loader=loader)
    robust_mnist.write_report(out / "run", out / "report.html")
    write_comparison_report(robust_mnist.compare_runs([out / "run"]), out / "compare.html")
    return out


@pytest.mark.parametrize("name", ["results.parquet", "refined.parquet"])
def test_tables_are_bit_identical(golden_run, name):
    expected, actual = pq.read_table(GOLDEN / name), pq.read_table(golden_run / "run" / name)
    assert actual.schema.equals(expected.schema, check_metadata=True)
    assert actual.equals(expected)
    assert actual.num_rows > 0


def test_exemplars_are_bit_identical(golden_run):
    with np.load(GOLDEN / "exemplars.npz") as expected, np.load(golden_run / "run" / "exemplars.npz") as actual:
        assert sorted(actual.files) == sorted(expected.files)
        for key in expected.files:
            assert actual[key].dtype == expected[key].dtype, key
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def _normalised(html: str, run_dir: Path) -> str:
    html = html.replace(str(run_dir), "RUN_DIR")
    html = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d · [0-9.]+ (s|min)( \d+ s)?", "DATE · DURATION", html)
    return re.sub(r'<dd class="small">python [^<]*</dd>', "VERSIONS", html)


@pytest.mark.parametrize("name", ["report.html", "compare.html"])
def test_reports_are_identical_apart_from_dates_durations_and_versions(golden_run, name):
    expected = gzip.decompress((GOLDEN / f"{name}.gz").read_bytes()).decode()
    actual = (golden_run / name).read_text(encoding="utf-8")
    expected = _normalised(expected, Path("/tmp/golden/base/run"))
    actual = _normalised(actual, golden_run / "run")
    assert "DATE · DURATION" in actual and "VERSIONS" in actual
    assert actual == expected
