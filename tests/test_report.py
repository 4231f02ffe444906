"""The HTML report: one self-contained, escaped, deterministic file with every section."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from robust_mnist import perturbations, rundir
from robust_mnist.runner.inputs import LoadedModel
from robust_mnist.runner.run import run_study
from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import load_mnist, to_float
from robust_mnist.study import parse_study

#: A training record as robust_mnist.models writes it (the fields the report reads).
TRAINING = {
    "val_accuracy": 0.9871, "val_loss": 0.0481, "stopped_epoch": 18, "test_accuracy": 0.9889,
    "history": {"val_accuracy": [0.972, 0.979, 0.983, 0.985, 0.986, 0.9871],
                "val_loss": [0.092, 0.068, 0.058, 0.052, 0.049, 0.0481]},
}


def study_document(name: str = "tiny", model: str = "template", n: int = 40) -> dict:
    families = [
        {"family": "rotate", "magnitudes": [-45.0, -30.0, -15.0, 15.0, 30.0, 45.0]},
        {"family": "gaussian_noise", "magnitudes": [0.2, 0.4, 0.6], "draws": 2},
    ]
    if "morph" in perturbations.available():
        families.append({"family": "morph", "magnitudes": [0.2, 0.4, 0.6, 0.8, 1.0]})
    return {
        "name": name,
        "description": "A tiny study for the report tests.",
        "seed": 3,
        "models": [{"arch": "article", "seed": 0, "name": model}],
        "data": {"source": "mnist-test", "n": n},
        "perturbations": families,
    }


def template_loader(model_spec) -> LoadedModel:
    """Serve the numpy template model (no TensorFlow), with a training record."""
    mnist = load_mnist()
    classifier = TemplateClassifier.fit(to_float(mnist.x_train[:3000]), mnist.y_train[:3000])
    return LoadedModel(classifier, {"arch": "article", "seed": 0, "path": None,
                                           "checksum": "ab" * 32, "training": dict(TRAINING)})


def make_run(run_dir: Path, **options) -> Path:
    """A small run directory written by the real runner, with the template model."""
    spec = parse_study(study_document(**options))
    run_study(spec, run_dir, model_loader=template_loader,
                     command=["robust-mnist", "study", "tiny.toml"])
    return run_dir


HOSTILE_STUDY = "<script>alert(1)</script>"
HOSTILE_MODEL = '<b onmouseover="alert(2)">cnn</b>'


def hostile_ids(run_dir: Path) -> None:
    """Give every digit a file name with markup, as a user's folder of images might."""
    with np.load(run_dir / "digits.npz") as npz:
        arrays = dict(npz)
    arrays["ids"] = np.array([f"<img src=x onerror=alert({i})>.png" for i in range(len(arrays["ids"]))])
    np.savez_compressed(run_dir / "digits.npz", **arrays)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("report") / "run", name=HOSTILE_STUDY, model=HOSTILE_MODEL)
    hostile_ids(run)
    return run


@pytest.fixture(scope="module")
def report(run_dir) -> tuple[Path, str]:
    from robust_mnist.html.study_report import write_report

    path = write_report(run_dir, run_dir.parent / "report.html")
    return path, path.read_text(encoding="utf-8")


def test_report_is_one_self_contained_file(report):
    path, html = report
    assert path.is_file() and html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"<(iframe|object|embed|base|form)\b", html, re.I)
    # Every src and href points into the page: data: URIs and #anchors only.
    references = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html, re.I)
    assert references and all(r.startswith(("data:", "#")) for r in references)
    # Inside the embedded SVGs too (their xmlns URIs are names, never fetched).
    from urllib.parse import unquote

    for svg in (unquote(r) for r in references if r.startswith("data:image/svg+xml")):
        inner = re.findall(r'(?:href|src)\s*=\s*["\']([^"\']*)', svg)
        assert all(r.startswith(("data:", "#")) for r in inner)
    assert not re.search(r"url\(|@import", re.sub(r'data:[^"]*', "", html))  # no CSS fetch either
    scripts = re.findall(r"<script\b([^>]*)>", html, re.I)
    assert scripts == [""]  # one inline script, no src


def test_content_security_policy_allows_no_request(report):
    import base64
    import hashlib

    _, html = report
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert meta, "no CSP meta tag"
    policy = dict(part.strip().split(" ", 1) for part in meta.group(1).replace("&#39;", "'").split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["img-src"] == "data:"
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    # The policy comes before anything that could load.
    assert html.index("Content-Security-Policy") < html.index("<style>")


def test_names_from_files_and_studies_render_as_text(report):
    _, html = report
    assert HOSTILE_STUDY not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "onmouseover" not in html.replace("onmouseover=&#34;", "")  # only as escaped text
    assert "<b onmouseover" not in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(" in html
    assert len(re.findall(r"<script\b", html)) == 1


def test_default_path_is_reports_slug_of_study_name(run_dir, tmp_path, monkeypatch):
    from robust_mnist.html.study_report import default_report_path

    monkeypatch.chdir(tmp_path)
    assert default_report_path(run_dir) == Path("reports") / "script-alert-1-script.html"


def test_sections_present(report):
    _, html = report
    for anchor in ("reproduction", "findings", "overview", "families", "ambiguity", "classes", "methods"):
        assert f'id="{anchor}"' in html, anchor
    for label in ("rotate", "gaussian_noise"):
        assert re.search(rf'<section id="family-\d+-{label}"', html), label
    if "morph" in perturbations.available():
        assert 'id="morphs"' in html
    # Reproduction panel: the article's figures beside the training record's.
    assert "98.40%" in html and "0.0537" in html and ">30<" in html
    assert "98.71%" in html and "0.0481" in html and ">18<" in html and "98.89%" in html
    # Header: seed, data checksum, versions, run date from run.json.
    assert "Seed</dt><dd>3<" in html
    assert "numpy " in html and "robust_mnist " in html
    # Galleries: digits with their bars, drawn pixel-exact.
    assert html.count('class="pixels"') >= 6
    assert "image-rendering: pixelated" in html
    # Tables are sortable.
    assert html.count('class="sortable') >= 3 and 'data-type="number"' in html


def test_headline_sentence_matches_the_results(report, run_dir):
    """The rotate sentence quotes the smallest |angle| flipping >= 10% of predictions."""
    _, html = report
    results = rundir.load_results(run_dir)
    rotate = results.loc[results["family"] == "rotate"]
    flips = (rotate["pred"] != rotate["clean_pred"]).groupby(rotate["magnitude"]).mean()
    hits = flips[flips >= 0.10]
    size = hits.index.to_series().abs().min()
    angle = max((m for m in hits.index if abs(m) == size), key=lambda m: hits[m])
    text = f"{angle:g}".replace("-", "−")
    assert f"Rotating by {text}° flips <span class=\"num\"><b>{100 * flips[angle]:.1f}%</b></span>" in html


def test_size_is_bounded(report):
    from robust_mnist.html.study_sections import GALLERY_SIZE

    path, html = report
    assert path.stat().st_size < 2_000_000
    families = len(re.findall(r'<section id="family-', html))
    # Three galleries per family and one highlight, each of at most GALLERY_SIZE digits.
    assert html.count('class="pixels"') <= (families * 3 + 1) * GALLERY_SIZE


def test_strip_draws_digits_pixel_exact():
    from robust_mnist import plots, strips

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    probabilities = rng.dirichlet(np.ones(10), size=3)
    scale = 3
    canvas = strips.digit_strip(images, probabilities, true_class=4, scale=scale)
    geometry = strips.strip_geometry(scale)
    side, cell = 28 * scale, geometry["cell"]
    offset = (cell - side) // 2
    palette = np.array(strips.strip_palette()).reshape(256, 3)
    for k in range(3):
        block = canvas[1:side - 1, k * cell + offset + 1: k * cell + offset + side - 1]
        grey = palette[block][..., 0].astype(float)
        # Nearest-neighbour: every scale x scale block is one pixel of the digit, dark ink on white.
        expected = np.kron(255 - images[k].astype(float), np.ones((scale, scale)))[1:-1, 1:-1]
        assert np.abs(grey - expected).max() <= 255 / (strips.GRAY_LEVELS - 1) / 2 + 1
    # The true class's bar is blue and as tall as its probability allows.
    bars = canvas[side + geometry["spacing"]:, :cell]
    rgb = np.round(np.array(plots.matplotlib.colors.to_rgb(plots.TRUE_COLOUR)) * 255)
    blue = np.all(palette[bars] == rgb, axis=-1).sum()
    expected = probabilities[0, 4] * geometry["bars_height"] * geometry["bar"]
    assert abs(blue - expected) <= geometry["bar"]


def test_the_report_uses_the_thickness_and_slant_stored_by_the_run(run_dir):
    from robust_mnist.morphometrics import measure
    from robust_mnist.report_data import load_report_data

    data = load_report_data(run_dir)
    expected = measure(to_float(data.images))[["thickness", "slant"]]
    assert list(data.morphometrics.columns) == ["thickness", "slant"]
    assert np.array_equal(data.morphometrics.to_numpy(), expected.to_numpy(), equal_nan=True)


def test_a_run_without_morphometrics_is_reported_without_the_shape_strata(report, run_dir, tmp_path):
    """Runs made before digits.npz stored thickness and slant: the page leaves them out and says
    so, rather than measuring the digits itself."""
    import shutil

    from robust_mnist.html.study_report import write_report
    from robust_mnist.html.study_sections import NO_MORPHOMETRICS

    _, html = report
    assert "Swing and stroke thickness" in html and NO_MORPHOMETRICS not in html
    older = tmp_path / "older"
    shutil.copytree(run_dir, older)
    with np.load(older / "digits.npz") as npz:
        arrays = {key: npz[key] for key in npz.files if key not in ("thickness", "slant")}
    np.savez(older / "digits.npz", **arrays)
    page = write_report(older, tmp_path / "older.html").read_text()
    assert NO_MORPHOMETRICS in page
    assert "Swing and stroke thickness" not in page and "Swing and slant" not in page
    assert 'alt="Mean swing against ambiguity"' in page and 'id="ambiguity"' in page


def test_unfinished_run_is_reported_as_far_as_it_got(run_dir, tmp_path):
    import json
    import shutil

    from robust_mnist.html.study_report import write_report

    partial = tmp_path / "partial"
    shutil.copytree(run_dir, partial)
    (partial / "results.parquet").unlink()
    (partial / "exemplars.npz").unlink()
    info = json.loads((partial / "run.json").read_text())
    info.update(status="interrupted", finished=None)
    (partial / "run.json").write_text(json.dumps(info))
    cells = sorted((partial / "cells").glob("*.parquet"))
    for cell in cells[len(cells) // 2:]:
        if cell.stem != "clean":
            cell.unlink()
    html = write_report(partial, tmp_path / "partial.html").read_text()
    assert "interrupted" in html and 'id="families"' in html


def test_cli_writes_the_same_bytes_again_and_prints_the_path(report, run_dir, tmp_path, capsys):
    from robust_mnist.cli import main

    path, _ = report
    out = tmp_path / "cli.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    # Deterministic: the same run directory gives the same bytes (dates come from run.json).
    assert out.read_bytes() == path.read_bytes()
    assert main(["report", str(tmp_path / "missing")]) == 1
    error = capsys.readouterr().err
    assert "error" in error and "missing" in error and "Traceback" not in error


def test_critical_plot_counts_a_digit_at_the_first_grid_size_that_sees_its_flip():
    from robust_mnist import plots

    # 5 flips by 10; 12 (refined between 10 and 20) and 20 flip by 20; one digit never flips.
    figure = plots.critical_magnitude_plot(np.array([5.0, 12.0, 20.0, np.inf]), np.array([-20.0, -10.0, 10.0, 20.0]))
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert heights == [0.25, 0.5, 0.25]


def test_the_header_names_the_engine_that_ran_each_model(report, run_dir, tmp_path):
    import json
    import shutil

    from robust_mnist.html.study_report import write_report

    _, html = report
    assert "on ONNX Runtime" not in html and "on TensorFlow" not in html  # a numpy model: no engine
    onnx = tmp_path / "onnx"
    shutil.copytree(run_dir, onnx)
    info = json.loads((onnx / "run.json").read_text())
    for model in info["models"].values():
        model.update(engine="onnx", onnxruntime="1.23.2")
    (onnx / "run.json").write_text(json.dumps(info))
    assert "on ONNX Runtime 1.23.2" in write_report(onnx, tmp_path / "onnx.html").read_text()
