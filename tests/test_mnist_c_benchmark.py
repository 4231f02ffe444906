"""MNIST-C as a study: severities in study files, the benchmark's scores in the summary, the
report and the comparison. No TensorFlow: two small fake MNIST-C families stand in for the
published corruptions, and numpy template classifiers for the models."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robust_mnist import benchmark_metrics, cli, rundir
from robust_mnist.compare import compare_runs
from robust_mnist.errors import StudyError
from robust_mnist.html.compare_report import write_comparison_report
from robust_mnist.html.study_report import write_report
from robust_mnist.perturbations import base, mnistc
from robust_mnist.runner.run import run_study
from robust_mnist.study import load_study, parse_study
from robust_mnist.summary import summary_frame, write_ranking, write_summary
from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import load_mnist, to_float
from study_fakes import FakeNoise, FakeShift, fake_loader, register_fakes

STUDIES = Path(__file__).resolve().parent.parent / "studies"


class FakeShot(FakeNoise, mnistc.MnistcFamily):
    """Random, with a severity table (Gaussian noise of these sds), published at severity 4."""

    name = "fake_shot"
    mnistc_name = "shot_noise"
    SEVERITIES = (0.1, 0.2, 0.3, 0.45, 0.6)
    default_severity = 4


class FakeStripe(FakeShift, mnistc.MnistcFamily):
    """Deterministic, without severities (as MNIST-C's stripe), published at a 3 px shift."""

    name = "fake_stripe"
    mnistc_name = "stripe"
    published_magnitude = 3.0


@pytest.fixture
def fakes(monkeypatch):
    register_fakes(monkeypatch)
    for cls in (FakeShot, FakeStripe):
        monkeypatch.setitem(base._REGISTRY, cls.name, cls)
    monkeypatch.setattr(mnistc, "PUBLISHED", (("shot_noise", "fake_shot"), ("stripe", "fake_stripe")))


MODELS = [{"arch": "article", "seed": 0}, {"arch": "mlp", "seed": 0}]


def study(perturbations, **extra):
    return {"name": "bench", "seed": 2, "models": MODELS, "data": {"source": "mnist-test", "n": 40},
            "perturbations": perturbations, **extra}


PROTOCOL = [{"family": "fake_shot", "severities": [4], "draws": 1},
            {"family": "fake_stripe", "magnitudes": [3]},
            {"family": "fake_shift", "magnitudes": [1, 2]}]
SWEEP = [{"family": "fake_shot", "severities": [1, 2, 3, 4, 5], "draws": 1},
         {"family": "fake_stripe", "magnitudes": [3]}]


_WEAK: list[TemplateClassifier] = []


def loader():
    """The template model as the article CNN; one fitted on 30 digits as the weaker mlp."""
    if not _WEAK:
        mnist = load_mnist()
        _WEAK.append(TemplateClassifier.fit(to_float(mnist.x_train[:30]), mnist.y_train[:30]))
    return fake_loader({"mlp-seed0": _WEAK[0]})


def run(tmp_path, perturbations, **extra) -> Path:
    out = tmp_path / "run"
    run_study(parse_study(study(perturbations, **extra)), out, model_loader=loader())
    return out


# ------------------------------------------------------------------------------- study files


def test_severities_become_the_familys_magnitudes_and_stay_visible(fakes):
    spec = parse_study(study([{"family": "fake_shot", "severities": [5, 2]}, {"family": "fake_shift"}]))
    shot, shift = spec.perturbations
    assert shot.magnitudes == (0.2, 0.6) and shot.severities == (2, 5)  # aligned with the sorted grid
    assert shot.to_dict()["severities"] == [2, 5] and shot.to_dict()["mnist_c"] == "shot_noise"
    assert "severities" not in shift.to_dict() and "mnist_c" not in shift.to_dict()
    # Labels for the reports only: the same grid given as magnitudes is the same computation.
    same = parse_study(study([{"family": "fake_shot", "magnitudes": [0.2, 0.6]}, {"family": "fake_shift"}]))
    assert same.perturbations[0].severities == () and same.perturbations[0].mnist_c == "shot_noise"
    assert same.spec_hash() == spec.spec_hash()
    named = parse_study(study(PROTOCOL, mnist_c={"reference": "mlp-seed0"}))
    assert named.mnist_c_reference == "mlp-seed0" and named.to_dict()["mnist_c"] == {"reference": "mlp-seed0"}
    assert named.spec_hash() == parse_study(study(PROTOCOL)).spec_hash()


@pytest.mark.parametrize("perturbations, extra, message", [
    ([{"family": "fake_shot", "severities": [0, 6]}], {}, r"perturbations\[0\]\.severities: must be a non-empty list of severity levels from 1, 2, 3, 4, 5; got \[0, 6\]"),
    ([{"family": "fake_shot", "severities": [2, 2]}], {}, r"severities: has duplicates"),
    ([{"family": "fake_shot", "severities": ["1"]}], {}, r"severities: must be a non-empty list"),
    ([{"family": "fake_stripe", "severities": [1]}], {}, r"family 'fake_stripe' has no severity table; give magnitudes \(families with severities: .*fake_shot"),
    ([{"family": "fake_shot", "severities": [1], "magnitudes": [0.1]}], {}, r"give magnitudes or severities, not both"),
    (PROTOCOL, {"mnist_c": {"reference": "lenet"}}, r"mnist_c\.reference: 'lenet' is not a model of the study; models: article-seed0, mlp-seed0"),
    (PROTOCOL, {"mnist_c": {"refrence": "mlp-seed0"}}, r"mnist_c\.refrence: unknown key; did you mean 'reference'"),
    (PROTOCOL, {"mnist_c": "mlp-seed0"}, r"mnist_c: must be a table"),
    ([{"family": "fake_shift"}], {"mnist_c": {"reference": "mlp-seed0"}}, r"mnist_c\.reference: the study has no MNIST-C corruption"),
])
def test_mistakes_are_one_line_errors_naming_the_key(fakes, perturbations, extra, message):
    with pytest.raises(StudyError, match=message):
        parse_study(study(perturbations, **extra))


@pytest.mark.parametrize("name, levels", [("mnist_c.toml", "published"), ("mnist_c_sweep.toml", "all")])
def test_the_shipped_mnist_c_studies_hold_the_15_published_corruptions(name, levels):
    spec = load_study(STUDIES / name)
    published = dict(mnistc.PUBLISHED)
    assert [p.mnist_c for p in spec.perturbations] == list(published)
    assert [p.family for p in spec.perturbations] == list(published.values())
    assert spec.data.n is None and all(p.n is None and p.draws == 1 for p in spec.perturbations)
    assert [(m.arch, m.seed) for m in spec.models] == [("article", 0)]
    for p in spec.perturbations:
        cls = base.family(p.family)
        if cls.SEVERITIES is None:
            assert p.magnitudes == (cls.published_magnitude,) and p.severities == ()
        elif levels == "published":
            assert p.severities == (cls.default_severity,) and p.magnitudes == (cls.published_magnitude,)
        else:
            assert p.severities == (1, 2, 3, 4, 5) and p.magnitudes == tuple(cls.SEVERITIES)


# ----------------------------------------------------------------------------- the scores


def test_the_run_records_severities_and_the_summary_scores_them(fakes, tmp_path):
    run_dir = run(tmp_path, PROTOCOL)
    info = rundir.read_run_info(run_dir)
    assert info["families"]["fake_shot"]["severities"] == [4] and info["families"]["fake_shot"]["mnist_c"] == "shot_noise"
    assert "mnist_c" not in info["families"]["fake_shift"]
    table = summary_frame(run_dir)
    rows = table.loc[table["metric"].str.startswith("mnist_c")]
    assert set(rows["family"]) == {"fake_shot", "fake_stripe", benchmark_metrics.BENCHMARK}
    # The same numbers as the metrics module's, with the article CNN of seed 0 as the reference.
    scores = benchmark_metrics.benchmark_scores(rundir.load_results(run_dir), ["fake_shot", "fake_stripe"],
                                                "article-seed0", seed=2)
    mce = rows.loc[rows["metric"] == "mnist_c_mce"].set_index("model")
    assert mce.loc["article-seed0", "value"] == 1.0
    assert mce.loc["mlp-seed0", "value"] == pytest.approx(scores.models.set_index("model").loc["mlp-seed0", "mce"])
    assert mce.loc["mlp-seed0", "low"] == pytest.approx(scores.models.set_index("model").loc["mlp-seed0", "mce_low"])
    error = rows.loc[(rows["metric"] == "mnist_c_error") & (rows["family"] == "fake_stripe")].set_index("model")
    results = rundir.load_results(run_dir, families=["fake_stripe"])
    wrong = results.loc[results["model"] == "mlp-seed0"]
    assert error.loc["mlp-seed0", "value"] == pytest.approx((wrong["pred"] != wrong["label"]).mean())

    text = io.StringIO()
    write_summary(run_dir, "table", text)
    shown = text.getvalue()
    assert "bench: MNIST-C, model mlp-seed0" in shown and "reference model article-seed0" in shown
    assert "severity 4" in shown and "mean / mCE" in shown
    exported = io.StringIO()
    write_summary(run_dir, "csv", exported)
    assert exported.getvalue().count("mnist_c_mce") == 2


def test_the_study_file_names_the_reference(fakes, tmp_path):
    run_dir = run(tmp_path, PROTOCOL, mnist_c={"reference": "mlp-seed0"})
    table = summary_frame(run_dir)
    ce = table.loc[table["metric"] == "mnist_c_ce"].set_index(["model", "family"])
    assert (ce.loc["mlp-seed0", "value"] == 1.0).all()


def test_the_report_has_an_mnist_c_section(fakes, tmp_path):
    run_dir = run(tmp_path, SWEEP)
    html = write_report(run_dir, tmp_path / "report.html").read_text()
    assert '<section id="mnist-c">' in html and 'href="#mnist-c"' in html
    assert "relative to the reference model article-seed0" in html
    assert 'id="mnist-c-severities"' in html and "Severity 5" in html and "Median critical severity" in html
    assert "severities 1-5" in html
    assert "<dt>Corruption error and CE</dt>" in html


def test_a_run_without_mnist_c_corruptions_shows_none(fakes, tmp_path):
    run_dir = run(tmp_path, [{"family": "fake_shift", "magnitudes": [1, 2]}])
    html = write_report(run_dir, tmp_path / "report.html").read_text()
    assert "mnist-c" not in html and "MNIST-C" not in html
    assert not summary_frame(run_dir)["metric"].str.startswith("mnist_c").any()
    exported = io.StringIO()
    write_ranking(compare_runs([run_dir]), "csv", exported)
    assert "mce" not in exported.getvalue().splitlines()[0]


def test_compare_ranks_the_models_by_mce(fakes, tmp_path, capsys):
    run_dir = run(tmp_path, PROTOCOL)
    comparison = compare_runs([run_dir])
    ranking = comparison.mnist_c_ranking
    assert list(ranking["model"]) == ["article-seed0", "mlp-seed0"]  # the templates of 30 digits err more
    assert ranking.iloc[1]["mce"] > 1 and ranking.iloc[0]["mce"] == 1.0
    assert comparison.mnist_c.reference == "article-seed0"

    text = io.StringIO()
    write_ranking(comparison, "table", text)
    assert "MNIST-C, models ranked by mCE" in text.getvalue()
    exported = io.StringIO()
    write_ranking(comparison, "csv", exported)
    table = pd.read_csv(io.StringIO(exported.getvalue()))
    by_mce = table.loc[table["family"] == benchmark_metrics.BENCHMARK]
    assert list(by_mce["model"]) == ["article-seed0", "mlp-seed0"] and by_mce["mce_low"].notna().all()
    assert table.loc[table["family"] != benchmark_metrics.BENCHMARK, "mce"].isna().all()
    records = io.StringIO()
    write_ranking(comparison, "json", records)
    assert [r["model"] for r in json.loads(records.getvalue()) if r["family"] == "MNIST-C"] == list(ranking["model"])

    html = write_comparison_report(comparison, tmp_path / "compare.html").read_text()
    assert '<section id="mnist-c">' in html and 'id="mnist-c-ranking"' in html

    assert cli.main(["compare", str(run_dir), "--no-report"]) == 0
    assert "ranked by mCE" in capsys.readouterr().out


def test_the_summary_command_prints_the_block(fakes, tmp_path, capsys, monkeypatch):
    run_dir = run(tmp_path, SWEEP)
    assert cli.main(["summary", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "MNIST-C, model article-seed0" in out and "severities 1-5" in out


def test_the_shipped_studies_parse_as_toml():
    for name in ("mnist_c.toml", "mnist_c_sweep.toml"):
        document = tomllib.loads((STUDIES / name).read_text())
        assert document["models"] == [{"arch": "article", "seed": 0}]
        assert np.all([entry.get("draws", 1) == 1 for entry in document["perturbations"]])
