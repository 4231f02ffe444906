"""Comparing models: paired tests, error consistency, seed spread, ranking, merging runs, the CLI
and the comparison report. No TensorFlow: the models are numpy template classifiers fitted on
different digits, run through the real runner on two small fake perturbation families.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import study_fakes
from robust_mnist import cli, compare, digit_metrics, metrics, paired_stats, rundir, stats
from robust_mnist.runner.inputs import LoadedModel
from robust_mnist.runner.run import run_study
from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import load_mnist, to_float
from robust_mnist.html import compare_report
from robust_mnist.html.compare_report import write_comparison_report
from robust_mnist.ranking import RANKING_COLUMNS, architecture_differences, rank_models, seed_spread
from robust_mnist.study import parse_study

HERE = Path(__file__).parent
FAMILIES = [
    {"family": "fake_shift", "magnitudes": [-2.0, -1.0, 1.0, 2.0]},
    {"family": "fake_noise", "magnitudes": [0.3, 0.6], "draws": 2},
]
MODELS = [{"arch": "article", "seeds": [0, 1], "name": "tmpl"}, {"arch": "article", "seed": 0, "name": "weak"}]

_CLASSIFIERS: dict[str, TemplateClassifier] = {}


def classifiers() -> dict[str, TemplateClassifier]:
    """Two 'seeds' of a template model (fitted on different digits) and a weak one (20 digits)."""
    if not _CLASSIFIERS:
        mnist = load_mnist()
        x, y = to_float(mnist.x_train[:4000]), mnist.y_train[:4000]
        _CLASSIFIERS.update({
            "tmpl-seed0": TemplateClassifier.fit(x[:2000], y[:2000]),
            "tmpl-seed1": TemplateClassifier.fit(x[2000:4000], y[2000:4000]),
            "weak": TemplateClassifier.fit(x[:20], y[:20], sharpness=100.0),
        })
    return _CLASSIFIERS


def loader(checksums: dict[str, str] | None = None):
    """A model loader serving the template models by name, with arch and seed for run.json."""

    def load(spec) -> LoadedModel:
        classifier = classifiers().get(spec.name) or classifiers()["tmpl-seed0"]
        arch = spec.name.split("-seed")[0]
        checksum = (checksums or {}).get(spec.name, f"fake-{spec.name}")
        return LoadedModel(classifier, {"arch": arch, "seed": spec.seed, "path": None,
                                               "checksum": checksum, "training": None})

    return load


def make_run(run_dir: Path, *, name: str = "zoo", models=MODELS, families=FAMILIES, seed: int = 3,
             data: dict | None = None, checksums: dict | None = None) -> Path:
    """A complete run directory written by the real runner (fake families must be registered)."""
    document = {"name": name, "seed": seed, "models": models,
                "data": data or {"source": "mnist-test", "n": 60}, "perturbations": families}
    run_study(parse_study(document), run_dir, model_loader=loader(checksums))
    return run_dir


@pytest.fixture
def fakes(monkeypatch):
    study_fakes.register_fakes(monkeypatch)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        study_fakes.register_fakes(patch)
        return make_run(tmp_path_factory.mktemp("compare") / "run")


@pytest.fixture(scope="module")
def comparison(run_dir) -> compare.Comparison:
    return compare.compare_runs([run_dir], n_boot=300)


@pytest.fixture(scope="module")
def report(comparison, tmp_path_factory) -> Path:
    """The comparison report of the fake zoo, written once for the tests that read it."""
    return write_comparison_report(comparison, tmp_path_factory.mktemp("report") / "compare.html")


# -------------------------------------------------------------- tables of paired outcomes


def results_table(outcomes: dict[tuple[str, str, float], list[int]], labels: list[int]) -> pd.DataFrame:
    """A results table from per-digit correctness: a wrong digit predicts (label + 1) % 10."""
    rows = []
    for (model, family, magnitude), correct in outcomes.items():
        for image, (ok, label) in enumerate(zip(correct, labels)):
            pred = label if ok else (label + 1) % 10
            p = np.full(10, 0.02, np.float32)
            p[pred] = 0.82
            rows.append({"model": model, "family": family, "magnitude": magnitude, "image": image, "draw": 0,
                         "label": label, "clean_pred": label, "pred": pred, "p_true": p[label], "p_pred": p[pred],
                         **{f"p{k}": p[k] for k in range(10)}})
    return pd.DataFrame(rows)


def test_pairwise_accuracy_counts_discordant_pairs_and_adjusts_per_family():
    labels = list(range(10))
    table = results_table({
        ("A", "clean", 0.0): [1] * 10, ("B", "clean", 0.0): [1] * 10,
        ("A", "blur", 1.0): [1] * 10, ("B", "blur", 1.0): [1, 1, 1] + [0] * 7,
        ("A", "blur", 2.0): [1] * 5 + [0] * 5, ("B", "blur", 2.0): [1] * 5 + [0] * 5,
    }, labels)
    pairwise = compare.pairwise_accuracy(table, n_boot=200).set_index(["family", "magnitude"])
    at_one = pairwise.loc[("blur", 1.0)]
    assert (at_one["a_only"], at_one["b_only"]) == (7, 0)
    assert at_one["difference"] == pytest.approx(0.7)
    assert at_one["p_value"] == pytest.approx(2 / 2**7)
    # Holm over the family's two magnitudes: min(1, 2 * 2/128) and max(that, 1 * 1.0).
    assert at_one["p_holm"] == pytest.approx(4 / 128)
    assert bool(at_one["significant"])
    at_two = pairwise.loc[("blur", 2.0)]
    assert (at_two["a_only"], at_two["b_only"], at_two["p_value"], at_two["p_holm"]) == (0, 0, 1.0, 1.0)
    # The clean row is a family of its own: no correction.
    assert pairwise.loc[("clean", 0.0), "p_holm"] == 1.0


def test_repeating_identical_draws_does_not_make_a_difference_significant():
    # Two models that differ on 5 of 12 digits (4 to 1): not significant, however many
    # identical draws each digit has. Counting draws as independent trials would give
    # 20 to 5 discordant trials with 5 draws, p = 0.004.
    labels = list(range(10)) + [0, 1]
    a = [1] * 4 + [0] + [1] * 7
    b = [0] * 4 + [1] + [1] * 7
    one = results_table({("A", "noise", 1.0): a, ("B", "noise", 1.0): b}, labels)
    five = pd.concat([one.assign(draw=d) for d in range(5)], ignore_index=True)
    p_one = compare.pairwise_accuracy(one, n_boot=50)["p_value"].iloc[0]
    p_five = compare.pairwise_accuracy(five, n_boot=50)["p_value"].iloc[0]
    assert p_one == pytest.approx(paired_stats.mcnemar_exact(4, 1)) and p_one > 0.3
    assert p_five == pytest.approx(p_one)
    assert paired_stats.mcnemar_exact(20, 5) < 0.01


def test_models_on_different_digits_are_not_paired():
    table = results_table({("A", "clean", 0.0): [1, 1, 0], ("B", "clean", 0.0): [1, 0, 0]}, [1, 2, 3])
    table = table.drop(index=table.index[-1])
    with pytest.raises(ValueError, match="same digits"):
        compare.paired_outcomes(table)


def test_paired_bootstrap_interval_matches_a_naive_resampling(comparison):
    seed, n_boot = comparison.seed, comparison.n_boot
    row = comparison.pairwise.query("family == 'fake_noise' and magnitude == 0.6").iloc[0]
    results = comparison.results
    cell = results[(results["family"] == "fake_noise") & (results["magnitude"] == 0.6)]
    correct = cell.assign(ok=(cell["pred"] == cell["label"]).astype(float))
    # Each digit's draws averaged, then digits resampled with the stats module's convention.
    per_digit = correct.pivot_table(index="image", columns="model", values="ok", aggfunc="mean")
    difference = (per_digit[row["model_a"]] - per_digit[row["model_b"]]).sort_index().to_numpy()
    indices = np.random.default_rng(seed).integers(0, len(difference), size=(n_boot, len(difference)))
    low, high = np.percentile(difference[indices].mean(axis=1), [2.5, 97.5])
    assert row["difference"] == pytest.approx(difference.mean())
    assert (row["difference_low"], row["difference_high"]) == pytest.approx((low, high), abs=1e-12)
    # Trials: every (digit, draw) of the cell.
    assert row["n"] == len(cell) // 3 and row["n_digits"] == 60


def test_paired_differences_agree_with_the_metrics(comparison):
    swing = digit_metrics.swing(comparison.results).set_index(["model", "family", "image"])["swing"]
    critical = digit_metrics.critical_magnitudes(comparison.results).set_index(["model", "family", "image"])
    row = comparison.differences.query("family == 'fake_shift' and model_a == 'tmpl-seed0' and model_b == 'weak'").iloc[0]
    a, b = swing.loc["tmpl-seed0", "fake_shift"], swing.loc["weak", "fake_shift"]
    assert row["swing"] == pytest.approx((a - b).mean())
    assert row["swing_low"] <= row["swing"] <= row["swing_high"]
    medians = [np.median(critical.loc[(m, "fake_shift"), "critical_magnitude"]) for m in ("tmpl-seed0", "weak")]
    assert row["critical_magnitude"] == pytest.approx(medians[0] - medians[1])
    # The same intervals as the stats module's paired bootstrap, pair by pair.
    digits = comparison.digits.query("family == 'fake_shift'")
    for metric, statistic in paired_stats.DIFFERENCE_METRICS:
        x, y = (digits[digits["model"] == m].sort_values("image")[metric].to_numpy() for m in ("tmpl-seed0", "weak"))
        expected = stats.paired_bootstrap_diff(x, y, statistic, comparison.n_boot, seed=comparison.seed)
        assert (row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_kappa_matrix_is_the_mean_of_the_cell_kappas(comparison):
    matrix = comparison.kappa_matrix()
    assert np.allclose(np.diag(matrix), 1) and np.allclose(matrix, matrix.T, equal_nan=True)
    cells = comparison.results.loc[comparison.results["family"] != "clean"]
    for (i, a), (j, b) in combinations(enumerate(comparison.models), 2):
        kappas = []
        for _, cell in cells.groupby(["family", "magnitude"]):
            x = cell[cell["model"] == a].sort_values(["image", "draw"])
            y = cell[cell["model"] == b].sort_values(["image", "draw"])
            kappas.append(paired_stats.error_consistency((x["pred"] == x["label"]).to_numpy(),
                                                    (y["pred"] == y["label"]).to_numpy())[0])
        assert matrix[i, j] == pytest.approx(np.nanmean(kappas))
    families = comparison.consistency_families
    assert (families["kappa_low"] <= families["kappa"] + 1e-12).all()
    assert (families["kappa"] <= families["kappa_high"] + 1e-12).all()


def significance(rows: list[tuple[str, str, float, bool]], family: str = "f") -> pd.DataFrame:
    """A pairwise table: (model_a, model_b, difference at one magnitude, significant)."""
    return pd.DataFrame([{"family": family, "magnitude": float(i), "model_a": a, "model_b": b,
                          "difference": d, "significant": sig} for i, (a, b, d, sig) in enumerate(rows)])


def scores(accuracy: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"model": list(accuracy), "family": "f", "n_digits": 10, "accuracy": list(accuracy.values())})


def test_rank_models_shares_ranks_where_tests_cannot_separate():
    # A significantly beats C; B is separated from neither.
    pairwise = significance([("A", "B", 0.02, False), ("A", "C", 0.10, True), ("B", "C", 0.08, False)])
    ranking = rank_models(pairwise, scores({"A": 0.9, "B": 0.88, "C": 0.8}), ["A", "B", "C"])
    assert ranking["model"].tolist() == ["A", "B", "C"]
    # C cannot join {A, B}: A beats it. Competition ranking: 1, 1, 3.
    assert ranking.set_index("model")["rank"].to_dict() == {"A": 1, "B": 1, "C": 3}
    ranked = ranking.set_index("model")
    assert ranked.loc["A", "beats"] == ["C"] and ranked.loc["C", "beaten_by"] == ["A"]
    assert ranked.loc["A", "tied_with"] == ["B"] and not ranked.loc["C", "tied"]


def test_rank_models_orders_by_accuracy_whatever_the_model_order():
    pairwise = significance([("C", "A", -0.1, True), ("C", "B", -0.05, True), ("A", "B", 0.05, True)])
    ranking = rank_models(pairwise, scores({"C": 0.7, "A": 0.9, "B": 0.8}), ["C", "A", "B"])
    assert ranking["model"].tolist() == ["A", "B", "C"] and ranking["rank"].tolist() == [1, 2, 3]
    assert not ranking["tied"].any()


def test_rank_models_a_crossing_separates_but_is_no_win():
    pairwise = significance([("A", "B", 0.1, True), ("A", "B", -0.1, True)])
    ranking = rank_models(pairwise, scores({"A": 0.72, "B": 0.70}), ["A", "B"]).set_index("model")
    assert ranking["rank"].to_dict() == {"A": 1, "B": 2}
    assert ranking.loc["A", "crossing"] == ["B"] and ranking.loc["A", "beats"] == []
    assert ranking.loc["B", "beaten_by"] == []


def _has_cycle(edges: list[tuple[str, str]]) -> bool:
    nodes = {n for edge in edges for n in edge}
    remaining = set(edges)
    while nodes:
        sources = [n for n in nodes if not any(b == n for _, b in remaining)]
        if not sources:
            return True
        nodes -= set(sources)
        remaining = {(a, b) for a, b in remaining if a not in sources}
    return False


def test_rank_models_lists_a_significant_winner_above_a_higher_mean():
    # B has the lower mean accuracy but the only significant difference favours it.
    pairwise = significance([("A", "B", 0.05, False), ("A", "B", -0.03, True)])
    ranking = rank_models(pairwise, scores({"A": 0.80, "B": 0.79}), ["A", "B"])
    assert ranking["model"].tolist() == ["B", "A"] and ranking["rank"].tolist() == [1, 2]


def test_rank_models_matches_a_naive_grouping_on_random_tables():
    """Every tie group is pairwise unseparated, and each new rank is separated from its group above."""
    rng = np.random.default_rng(1)
    names = ["m0", "m1", "m2", "m3", "m4"]
    for _ in range(50):
        rows = [(a, b, float(rng.normal()), bool(rng.random() < 0.4))
                for a, b in combinations(names, 2) for _ in range(2)]
        accuracy = dict(zip(names, rng.uniform(0.5, 1.0, size=len(names))))
        ranking = rank_models(significance(rows), scores(accuracy), names)
        assert ranking["rank"].is_monotonic_increasing
        separated = {frozenset((a, b)) for a, b, _, sig in rows if sig}
        order = ranking["model"].tolist()
        edges = [(m, b) for m, beaten in zip(ranking["model"], ranking["beats"]) for b in beaten]
        if not _has_cycle(edges):  # a model never sits below one it beats
            assert all(order.index(a) < order.index(b) for a, b in edges)
        if not edges:  # then the order is by accuracy
            assert ranking["accuracy"].is_monotonic_decreasing
        for _, group in ranking.groupby("rank"):
            members = group["model"].tolist()
            assert all(frozenset(p) not in separated for p in combinations(members, 2))
            position = ranking.index[ranking["model"] == members[0]][0]
            assert group["rank"].iloc[0] == position + 1
            if position > 0:  # the first of a new rank is separated from the group above
                above = ranking.loc[ranking["rank"] == ranking["rank"].iloc[position - 1], "model"]
                assert any(frozenset((members[0], m)) in separated for m in above)


def test_ranking_of_the_fake_zoo(comparison):
    clean = comparison.ranking.query("family == 'clean'").set_index("model")
    # The weak model (20 training digits) is significantly worse than both template seeds,
    # which the tests cannot separate on 60 clean digits.
    assert clean["rank"].to_dict() == {"tmpl-seed0": 1, "tmpl-seed1": 1, "weak": 3}
    assert set(clean.loc["weak", "beaten_by"]) == {"tmpl-seed0", "tmpl-seed1"}


def test_seed_spread_beside_architecture_differences():
    summary = pd.DataFrame({
        "model": ["t0", "t1", "w"], "family": "f", "n_digits": 10,
        "accuracy": [0.80, 0.84, 0.60], "swing": [0.30, 0.20, 0.22], "flip_rate": [0.1, 0.1, 0.3],
        "critical_magnitude": [2.0, 2.0, 1.0],
    })
    info = {"t0": {"arch": "t", "seed": 0}, "t1": {"arch": "t", "seed": 1}, "w": {"arch": "w", "seed": 0}}
    spread = seed_spread(summary, info).set_index("metric")
    assert spread.loc["accuracy", "range"] == pytest.approx(0.04)
    assert spread.loc["accuracy", "sd"] == pytest.approx(np.std([0.80, 0.84], ddof=1))
    assert spread.loc["accuracy", "values"] == [0.80, 0.84] and spread.loc["accuracy", "seeds"] == [0, 1]
    versus = architecture_differences(summary, seed_spread(summary, info), info).set_index("metric")
    assert versus.loc["accuracy", "difference"] == pytest.approx(0.82 - 0.60)
    assert bool(versus.loc["accuracy", "beyond_seed_noise"])
    # Mean swing differs between architectures by 0.25 - 0.22 = 0.03, within the seeds' 0.10.
    assert versus.loc["swing", "difference"] == pytest.approx(0.03)
    assert not bool(versus.loc["swing", "beyond_seed_noise"])


def test_the_zoo_comparison_reports_seed_spread(comparison):
    assert set(comparison.seed_spread["arch"]) == {"tmpl"}
    assert set(zip(comparison.architecture_differences["arch_a"], comparison.architecture_differences["arch_b"])) == {("tmpl", "weak")}


# ------------------------------------------------------------------------ merging runs


def test_compare_runs_refuses_runs_on_other_digits(fakes, run_dir, tmp_path):
    other = make_run(tmp_path / "other", data={"source": "mnist-test", "n": 50})
    with pytest.raises(compare.ComparisonError, match="hold different digits") as error:
        compare.compare_runs([run_dir, other])
    assert "\n" not in str(error.value)


def test_compare_runs_refuses_other_magnitudes(fakes, run_dir, tmp_path):
    families = [{"family": "fake_shift", "magnitudes": [-2.0, 1.0, 2.0]}, FAMILIES[1]]
    other = make_run(tmp_path / "other", families=families)
    with pytest.raises(compare.ComparisonError, match=r"different perturbations \('fake_shift': magnitudes"):
        compare.compare_runs([run_dir, other])


def write_digit_folder(folder: Path, n: int = 12) -> Path:
    """MNIST test digits as PNG files named <label>_<index>.png (dark ink on white)."""
    mnist = load_mnist()
    folder.mkdir()
    for index in range(n):
        Image.fromarray(255 - mnist.x_test[index]).save(folder / f"{mnist.y_test[index]}_{index}.png")
    return folder


def test_compare_runs_refuses_other_realised_parameters(fakes, tmp_path):
    # Same digits (a folder: no seed-dependent subset), different study seeds: the noise
    # family's realised seeds differ, so the perturbed digits differ.
    folder = write_digit_folder(tmp_path / "digits")
    data = {"source": "folder", "path": str(folder)}
    first = make_run(tmp_path / "a", data=data, seed=1)
    second = make_run(tmp_path / "b", data=data, seed=2)
    with pytest.raises(compare.ComparisonError, match=r"param_seed of 'fake_noise'.*another study seed"):
        compare.compare_runs([first, second])


def test_compare_runs_refuses_an_unfinished_run(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    info = json.loads((copy / "run.json").read_text())
    info["status"] = "interrupted"
    (copy / "run.json").write_text(json.dumps(info))
    with pytest.raises(compare.ComparisonError, match="interrupted, not complete.*--resume"):
        compare.compare_runs([copy])


def test_compare_runs_merges_models_of_two_runs(fakes, tmp_path):
    first = make_run(tmp_path / "first", models=[{"arch": "article", "seed": 0, "name": "tmpl"},
                                                  {"arch": "article", "seed": 0, "name": "weak"}])
    second = make_run(tmp_path / "second", models=[{"arch": "article", "seed": 1, "name": "tmpl-seed1"},
                                                    {"arch": "article", "seed": 0, "name": "weak"}],
                      checksums={"weak": "another-weak-file"})
    merged = compare.compare_runs([first, second])
    # "weak" is in both runs as different files: prefixed with the run's name.
    assert merged.models == ["tmpl", "first/weak", "tmpl-seed1", "second/weak"]
    assert set(merged.results["model"]) == set(merged.models)
    assert any("called 'first/weak'" in note for note in merged.notes)
    # Merged results equal each run's own.
    own = rundir.load_results(second)
    mine = merged.results[merged.results["model"] == "tmpl-seed1"].reset_index(drop=True)
    np.testing.assert_array_equal(mine["p_true"], own.loc[own["model"] == "tmpl-seed1", "p_true"])


def test_compare_runs_counts_the_same_model_file_once(fakes, tmp_path):
    first = make_run(tmp_path / "first", models=[{"arch": "article", "seed": 0, "name": "weak"},
                                                  {"arch": "article", "seed": 0, "name": "tmpl-seed0"}])
    second = make_run(tmp_path / "second", models=[{"arch": "article", "seed": 0, "name": "weak"},
                                                    {"arch": "article", "seed": 1, "name": "tmpl-seed1"}])
    merged = compare.compare_runs([first, second])
    assert merged.models == ["weak", "tmpl-seed0", "tmpl-seed1"]
    assert len(merged.results) == 3 * len(rundir.load_results(first)) // 2


def test_a_single_model_is_ranked_alone_and_reported(fakes, tmp_path):
    alone = compare.compare_runs([make_run(tmp_path / "one", models=[{"arch": "article", "seed": 0, "name": "weak"}])],
                                 n_boot=100)
    assert alone.models == ["weak"] and alone.pairwise.empty and alone.differences.empty
    assert (alone.ranking["rank"] == 1).all() and not alone.ranking["tied"].any()
    assert alone.kappa_matrix().tolist() == [[1.0]]
    html = write_comparison_report(alone, tmp_path / "one.html").read_text()
    assert "Only one model" in html


def test_exemplars_of_the_run_are_the_gallery_source(comparison, run_dir):
    with np.load(run_dir / "exemplars.npz") as npz:
        images = npz["fake_shift/images"]
        strips = npz["fake_shift/strips"]
    stored = comparison.exemplars["fake_shift"]["strips"]
    assert sorted(stored) == sorted(images.tolist())
    np.testing.assert_array_equal(stored[int(images[0])], strips[0])


# ------------------------------------------------------------------------------- the CLI


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_prints_the_ranking_table_and_writes_the_report(run_dir, tmp_path, capsys):
    out = tmp_path / "reports" / "zoo.html"
    status, stdout, _ = run_cli(["compare", str(run_dir), "--out", str(out)], capsys)
    assert status == 0
    assert "tmpl-seed0" in stdout and "weak" in stdout and "fake_shift" in stdout
    assert f"report: {out}" in stdout
    assert out.is_file()


def test_cli_exports_csv_and_json(run_dir, capsys, comparison):
    status, stdout, stderr = run_cli(["compare", str(run_dir), "--format", "csv", "--no-report"], capsys)
    assert status == 0
    table = pd.read_csv(io.StringIO(stdout))
    assert list(table.columns) == RANKING_COLUMNS
    assert len(table) == 3 * len(comparison.models)  # clean and two families
    assert set(table["family"]) == {"clean", "fake_shift", "fake_noise"}

    status, stdout, _ = run_cli(["compare", str(run_dir), "--format", "json", "--no-report"], capsys)
    records = json.loads(stdout)
    assert {r["model"] for r in records} == set(comparison.models)
    assert all(isinstance(r["beats"], list) for r in records)


def test_cli_json_keeps_stdout_clean_when_writing_the_report(run_dir, tmp_path, capsys, monkeypatch):
    written = []
    monkeypatch.setattr(compare_report, "write_comparison_report", lambda c, out: written.append(out) or Path(out))
    status, stdout, stderr = run_cli(["compare", str(run_dir), "--format", "json", "--out", str(tmp_path / "r.html")], capsys)
    assert status == 0 and written == [tmp_path / "r.html"]
    json.loads(stdout)
    assert f"report: {tmp_path / 'r.html'}" in stderr


def test_cli_refusal_is_one_line(fakes, run_dir, tmp_path, capsys):
    other = make_run(tmp_path / "other", data={"source": "mnist-test", "n": 50})
    status, stdout, stderr = run_cli(["compare", str(run_dir), str(other), "--no-report"], capsys)
    assert status == 1 and stdout == ""
    assert stderr.startswith("robust-mnist: error: ") and stderr.count("\n") == 1
    assert "different digits" in stderr


# ------------------------------------------------------------------------------ the report

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    models = [{"arch": "article", "seed": 0, "name": "tmpl-seed0"},
              {"arch": "article", "seed": 0, "name": "<img src=x onerror=alert(2)>"}]
    with pytest.MonkeyPatch.context() as patch:
        study_fakes.register_fakes(patch)
        run = make_run(folder / "run", name=HOSTILE, models=models)
    report = write_comparison_report(compare.compare_runs([run]), folder / "report.html")
    return run, report


def test_report_escapes_study_and_model_names(hostile_report):
    _, report = hostile_report
    html = report.read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html


def test_report_is_self_contained(hostile_report):
    _, report = hostile_report
    html = report.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert sources and all(s.startswith("data:") for s in sources)
    assert len(re.findall(r"<script", html)) == 1  # only the inline sortable-table script
    # Outside the data: URIs (whose SVG metadata names namespaces: data, not requests), no URL.
    page = re.sub(r'"data:[^"]*"', '""', html)
    assert "http://" not in page and "https://" not in page and "url(" not in page


def test_report_shows_every_section(comparison, report):
    html = report.read_text()
    for anchor in ("findings", "overview", "clean", "families", "consistency", "seeds", "methods"):
        assert f'id="{anchor}"' in html
    for model in comparison.models:
        assert model in html
    assert "Where the models disagree most" in html
    assert html.count('class="pixels"') >= 2  # a gallery per family


def test_report_bytes_are_deterministic(comparison, report, tmp_path):
    again = write_comparison_report(comparison, tmp_path / "again.html")
    assert again.read_bytes() == report.read_bytes()


@pytest.mark.browser
def test_comparison_report_in_a_real_browser(report, tmp_path_factory):
    """The comparison report loads in headless Chromium: no console error, no request beyond the
    file, every image decodes, a sortable table sorts (reusing the report test's DevTools client)."""
    from test_report_browser import WIDTH, DevTools, chromium_path

    executable = chromium_path()
    if executable is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # as the report's browser test: CI must run it
        pytest.skip(message)
    pytest.importorskip("websocket")
    folder = tmp_path_factory.mktemp("browser-compare")
    browser = DevTools(executable, folder / "profile")
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable")
        browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
        url = report.resolve().as_uri()
        browser.call("Page.navigate", url=url)
        browser.wait_for("Page.loadEventFired")
        errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
        assert errors == []
        requested = [e["params"]["request"]["url"] for e in browser.events
                     if e.get("method") == "Network.requestWillBeSent"]
        assert [u for u in requested if u != url and not u.startswith("data:")] == []
        widths = browser.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().then(() => i.naturalWidth, () => 0)))")
        assert len(widths) >= 4 and min(widths) > 0
        # Sorting the overview by the clean-accuracy column orders its rows by value.
        table = "#overview-table"

        def column() -> list[float]:
            return browser.evaluate(f"Array.from(document.querySelectorAll('{table} tbody tr'))"
                                    ".map(r => parseFloat(r.cells[1].getAttribute('data-sort')))")

        before = column()
        browser.click(f"{table} thead th:nth-child(2)")
        assert column() == sorted(before)
        browser.click(f"{table} thead th:nth-child(2)")
        assert column() == sorted(before, reverse=True)
        browser.evaluate("window.scrollTo(0, 0)")
        browser.screenshot(folder / "compare.png")
        assert (folder / "compare.png").stat().st_size > 30_000
    finally:
        browser.close()


def test_the_run_stores_the_most_disputed_digits_for_the_gallery(comparison, run_dir):
    """robust_mnist.runner.exemplars.write_exemplars keeps, per family, the digits whose draw-0 sweep holds the input
    with the largest mean pairwise total-variation distance between the models."""
    results = comparison.results
    rows = results[(results["family"] == "fake_shift") & (results["draw"] == 0)]
    clean = results[results["family"] == "clean"]
    rows = pd.concat([rows, clean.assign(magnitude=0.0)])
    worst = {}
    for (image, magnitude), group in rows.groupby(["image", "magnitude"]):
        p = group.set_index("model").loc[comparison.models, metrics.PROBABILITY_COLUMNS].to_numpy(float)
        value = np.mean([0.5 * np.abs(p[i] - p[j]).sum() for i, j in combinations(range(len(p)), 2)])
        worst[image] = max(worst.get(image, 0.0), value)
    expected = sorted(worst, key=lambda image: (-worst[image], image))[:6]
    with np.load(run_dir / "exemplars.npz") as npz:
        stored = npz["fake_shift/disagree"]
        assert set(stored) <= set(npz["fake_shift/images"])
    assert stored.tolist() == expected


def test_refined_critical_magnitudes_reach_the_summary_the_report_and_the_comparison(tmp_path):
    from robust_mnist.html.study_report import write_report
    from robust_mnist.report_data import compute_aggregates, load_report_data
    from robust_mnist.summary import summary_frame

    rotate = {"family": "rotate", "magnitudes": [-40.0, -20.0, 20.0, 40.0]}
    refined_run = make_run(tmp_path / "refined", families=[{**rotate, "refine": 4}])
    table = rundir.load_refined(refined_run)
    assert len(table) > 5 and (table["high"].abs() % 20 != 0).any()  # off the grid

    # The per-digit critical magnitudes everywhere are the bisected ones.
    expected = table.set_index(["model", "family", "image"])["high"].abs()
    comparison = compare.compare_runs([refined_run], n_boot=50)
    digits = comparison.digits.set_index(["model", "family", "image"])["critical_magnitude"]
    np.testing.assert_array_equal(digits.loc[expected.index].to_numpy(), expected.to_numpy())
    aggregates = compute_aggregates(load_report_data(refined_run))
    report_critical = aggregates.critical.set_index(["model", "family", "image"])["critical_magnitude"]
    np.testing.assert_array_equal(report_critical.loc[expected.index].to_numpy(), expected.to_numpy())
    summary = summary_frame(refined_run)
    medians = summary.loc[summary["metric"] == "critical_magnitude"].set_index("model")["value"]
    for model, median in medians.items():
        assert median == np.median(report_critical.loc[model].to_numpy())
    html = write_report(refined_run, tmp_path / "report.html").read_text()
    assert "critical magnitudes refined by 4 bisection steps" in html

    # Runs that did not refine alike keep the grid values, and say so.
    plain_run = make_run(tmp_path / "plain", families=[rotate], models=[{"arch": "article", "seed": 0, "name": "weak"}])
    both = compare.compare_runs([refined_run, plain_run], n_boot=50)
    assert both.refined is None and any("are the grid values" in note for note in both.notes)
    assert (both.digits["critical_magnitude"].replace(np.inf, 20.0) % 20 == 0).all()
