"""MNIST-C scores (robust_mnist.benchmark_metrics): a hand-computed example, a naive bootstrap,
the reference model's choice, the mCE ranking and the severity curves."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from robust_mnist import benchmark_metrics as bm
from robust_mnist.rundir import BASE_COLUMNS, CLEAN


def results_table(outcomes: dict, labels: list[int], clean: dict | None = None) -> pd.DataFrame:
    """A results table from ``{(model, family, magnitude, draw): [correct per image]}``.

    A correct digit is predicted as its label, a wrong one as label + 1; clean predictions
    are correct unless ``clean[model]`` says otherwise.
    """
    rows = []
    models = list(dict.fromkeys(key[0] for key in outcomes))
    for model in models:
        right = (clean or {}).get(model, [True] * len(labels))
        for image, label in enumerate(labels):
            rows.append((model, CLEAN, 0.0, image, 0, label, right[image]))
    for (model, family, magnitude, draw), correct in outcomes.items():
        for image, ok in enumerate(correct):
            if ok is not None:
                rows.append((model, family, float(magnitude), image, draw, labels[image], bool(ok)))
    frame = pd.DataFrame(rows, columns=["model", "family", "magnitude", "image", "draw", "label", "ok"])
    frame["pred"] = np.where(frame["ok"], frame["label"], (frame["label"] + 1) % 10)
    clean_pred = frame.loc[frame["family"] == CLEAN].set_index(["model", "image"])["pred"]
    frame["clean_pred"] = clean_pred.reindex(pd.MultiIndex.from_frame(frame[["model", "image"]])).to_numpy()
    probabilities = np.zeros((len(frame), 10), np.float32)
    probabilities[np.arange(len(frame)), frame["pred"]] = 1.0
    for k in range(10):
        frame[f"p{k}"] = probabilities[:, k]
    frame["p_true"] = probabilities[np.arange(len(frame)), frame["label"]]
    frame["p_pred"] = 1.0
    return frame[list(BASE_COLUMNS)]


# Model A is the reference. c1 has one severity, c2 two (magnitudes 1 and 2).
HAND = {
    ("A", "c1", 5, 0): [1, 1, 0, 0],
    ("A", "c2", 1, 0): [1, 1, 1, 0],
    ("A", "c2", 2, 0): [1, 0, 1, 0],
    ("B", "c1", 5, 0): [1, 0, 0, 0],
    ("B", "c2", 1, 0): [1, 1, 1, 1],
    ("B", "c2", 2, 0): [1, 1, 0, 0],
}


def test_a_hand_computed_example():
    results = results_table(HAND, [0, 1, 2, 3])
    errors = bm.digit_errors(results, ["c1", "c2"])
    b_c2 = errors.loc[(errors["model"] == "B") & (errors["family"] == "c2"), "error"].tolist()
    assert b_c2 == [0.0, 0.0, 0.5, 0.5]  # severities averaged per digit

    scores = bm.benchmark_scores(results, ["c1", "c2"], reference="A", n_boot=200, seed=1)
    table = scores.corruptions.set_index(["model", "corruption"])
    # E_c: c1 A 2/4 wrong, B 3/4; c2 A (0 + .5 + 0 + 1)/4, B (0 + 0 + .5 + .5)/4.
    assert table.loc[("A", "c1"), "error"] == 0.5 and table.loc[("B", "c1"), "error"] == 0.75
    assert table.loc[("A", "c2"), "error"] == 0.375 and table.loc[("B", "c2"), "error"] == 0.25
    assert table.loc[("B", "c1"), "ce"] == pytest.approx(1.5)
    assert table.loc[("B", "c2"), "ce"] == pytest.approx(2 / 3)
    # The reference's CE is 1 on every resample.
    assert (table.loc["A", ["ce", "ce_low", "ce_high"]].to_numpy() == 1.0).all()
    models = scores.models.set_index("model")
    assert models.loc["B", "mce"] == pytest.approx((1.5 + 2 / 3) / 2)
    assert models.loc["A", "mean_error"] == pytest.approx((0.5 + 0.375) / 2)
    assert models.loc["B", "mean_error"] == pytest.approx((0.75 + 0.25) / 2)
    assert (models["n_corruptions"] == 2).all() and (models["n_digits"] == 4).all()
    for column in ("mce", "mean_error"):
        assert (models[f"{column}_low"] <= models[column]).all() and (models[column] <= models[f"{column}_high"]).all()


def naive_scores(results, labels, reference, n_boot, seed, level=0.95):
    """The bootstrap written out digit by digit, resample by resample."""
    models = list(dict.fromkeys(results["model"]))
    images = sorted(results.loc[results["family"].isin(labels), "image"].unique())
    error = {}
    for model, label, image in itertools.product(models, labels, images):
        rows = results.loc[(results["model"] == model) & (results["family"] == label) & (results["image"] == image)]
        if len(rows):
            per_magnitude = [np.mean(part["pred"] == part["label"]) for _, part in rows.groupby("magnitude")]
            error[(model, label, image)] = 1 - np.mean(per_magnitude)
    idx = np.random.default_rng(seed).integers(0, len(images), size=(n_boot, len(images)))

    def figures(sample):
        e = {}
        for model, label in itertools.product(models, labels):
            values = [error[(model, label, images[i])] for i in sample if (model, label, images[i]) in error]
            e[(model, label)] = np.mean(values) if values else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            ce = {key: e[key] / e[(reference, key[1])] for key in e}
        mce = {m: np.mean([ce[(m, c)] for c in labels]) for m in models}
        return e, ce, mce

    point = figures(range(len(images)))
    resampled = [figures(sample) for sample in idx]
    q = [(1 - level) / 2, (1 + level) / 2]
    intervals = {}
    for model in models:
        values = np.array([r[2][model] for r in resampled])
        intervals[("mce", model)] = np.quantile(values[~np.isnan(values)], q)
        for label in labels:
            values = np.array([r[1][(model, label)] for r in resampled])
            intervals[("ce", model, label)] = np.quantile(values[~np.isnan(values)], q)
    return point, intervals


def test_agrees_with_a_naive_bootstrap_on_random_data_with_subsets_and_draws():
    rng = np.random.default_rng(7)
    n = 23
    outcomes = {}
    for model in ("ref", "x", "y"):
        skill = {"ref": 0.7, "x": 0.8, "y": 0.6}[model]
        for magnitude in (1, 2, 3):
            for draw in (0, 1):
                outcomes[(model, "noise", magnitude, draw)] = list(rng.random(n) < skill)
        # A corruption run on a subset of the digits (the first 15).
        outcomes[(model, "sub", 2, 0)] = [bool(rng.random() < skill) if i < 15 else None for i in range(n)]
    results = results_table(outcomes, list(rng.integers(0, 10, n)))
    scores = bm.benchmark_scores(results, ["noise", "sub"], "ref", n_boot=300, seed=5)
    (errors, ce, mce), intervals = naive_scores(results, ["noise", "sub"], "ref", 300, 5)
    for _, row in scores.corruptions.iterrows():
        key = (row["model"], row["corruption"])
        assert row["error"] == pytest.approx(errors[key], abs=1e-12)
        assert row["ce"] == pytest.approx(ce[key], abs=1e-12)
        np.testing.assert_allclose([row["ce_low"], row["ce_high"]], intervals[("ce", *key)], atol=1e-12)
    for _, row in scores.models.iterrows():
        assert row["mce"] == pytest.approx(mce[row["model"]], abs=1e-12)
        np.testing.assert_allclose([row["mce_low"], row["mce_high"]], intervals[("mce", row["model"])], atol=1e-12)
    assert scores.corruptions.loc[scores.corruptions["corruption"] == "sub", "n_digits"].eq(15).all()


def test_same_seed_same_intervals_and_models_scored_in_the_order_given():
    results = results_table(HAND, [0, 1, 2, 3])
    one = bm.benchmark_scores(results, ["c1", "c2"], "A", models=["B", "A"], n_boot=100, seed=3)
    two = bm.benchmark_scores(results, ["c1", "c2"], "A", models=["B", "A"], n_boot=100, seed=3)
    pd.testing.assert_frame_equal(one.models, two.models)
    assert list(one.models["model"]) == ["B", "A"]


def test_a_reference_without_errors_gives_an_infinite_ce():
    outcomes = {("A", "c", 1, 0): [1, 1, 1], ("B", "c", 1, 0): [1, 0, 1], ("C", "c", 1, 0): [1, 1, 1]}
    scores = bm.benchmark_scores(results_table(outcomes, [1, 2, 3]), ["c"], "A", n_boot=50)
    ce = scores.corruptions.set_index("model")["ce"]
    assert np.isinf(ce["B"]) and np.isnan(ce["C"])


def test_models_not_evaluated_on_the_same_digits_are_refused():
    outcomes = {("A", "c", 1, 0): [1, 1, 1], ("B", "c", 1, 0): [1, 0, None]}
    with pytest.raises(ValueError, match="same digits"):
        bm.benchmark_scores(results_table(outcomes, [1, 2, 3]), ["c"], "A")
    with pytest.raises(ValueError, match="reference model 'Z'"):
        bm.benchmark_scores(results_table(outcomes, [1, 2, 3]), ["c"], "Z")


def test_the_reference_is_the_article_cnn_of_seed_0_unless_the_study_names_one():
    info = {"m1": {"arch": "mlp", "seed": 0}, "m2": {"arch": "article", "seed": 1},
            "m3": {"arch": "article", "seed": 0}, "run/m4": {"name_in_run": "m4"}}
    models = list(info)
    assert bm.reference_model(models, info) == "m3"
    assert bm.reference_model(["m1", "m2"], info) == "m1"
    assert bm.reference_model(models, info, "m2") == "m2"
    assert bm.reference_model(models, info, "m4") == "run/m4"  # renamed by a comparison
    with pytest.raises(ValueError, match="'nope' is not a model"):
        bm.reference_model(models, info, "nope")


def test_corruptions_and_reference_are_read_from_run_json():
    info = {
        "study": {"perturbations": [
            {"label": "rotate", "family": "rotate", "magnitudes": [10.0]},
            {"label": "shot", "family": "shot_noise", "magnitudes": [0.1, 0.2], "severities": [2, 5], "mnist_c": "shot_noise"},
            {"label": "shot-again", "family": "shot_noise", "magnitudes": [0.3], "mnist_c": "shot_noise"},
            {"label": "stripe", "family": "stripe", "magnitudes": [1.0], "mnist_c": "stripe"},
        ], "mnist_c": {"reference": "other"}},
        "families": {"shot": {"unit": "1/photons"}},
    }
    found = bm.benchmark_corruptions(info)
    assert [c.label for c in found] == ["shot", "stripe"]  # a corruption counts once
    assert found[0] == bm.Corruption("shot", "shot_noise", (0.1, 0.2), (2, 5), "1/photons")
    assert found[0].levels == (2.0, 5.0) and found[1].levels == (1.0,)
    assert bm.requested_reference(info) == "other"
    assert bm.benchmark_corruptions({"study": {"perturbations": []}}) == []
    assert bm.requested_reference({"study": {}}) is None


def test_the_ranking_shares_ranks_the_bootstrap_cannot_separate():
    rng = np.random.default_rng(0)
    n = 400
    outcomes = {}
    for model, skill in (("ref", 0.7), ("twin", 0.7), ("good", 0.95)):
        for corruption in ("a", "b"):
            outcomes[(model, corruption, 1, 0)] = list(rng.random(n) < skill)
    scores = bm.benchmark_scores(results_table(outcomes, list(rng.integers(0, 10, n))), ["a", "b"], "ref", n_boot=300)
    ranking = bm.rank_by_mce(scores, {"ref": {"arch": "article", "seed": 0}})
    assert list(ranking["model"])[0] == "good" and ranking.iloc[0]["rank"] == 1
    assert ranking.set_index("model").loc["good", "beats"] == ["ref", "twin"]
    later = ranking.iloc[1:]
    assert list(later["rank"]) == [2, 2] and later["tied"].all()
    assert ranking.set_index("model").loc["ref", "arch"] == "article"
    assert list(ranking.columns) == bm.RANKING_COLUMNS


def test_severity_curves_and_critical_severities():
    # Severity 1 at magnitude 0.5, severity 2 at 0.2 (the unit need not grow with severity).
    corruption = bm.Corruption("c", "c", (0.2, 0.5), (2, 1))
    outcomes = {("A", "c", 0.5, 0): [1, 1, 0, 1], ("A", "c", 0.2, 0): [1, 0, 0, 1]}
    curves, critical = bm.severity_errors(results_table(outcomes, [0, 1, 2, 3]), [corruption], n_boot=50)
    assert list(curves["level"]) == [1.0, 2.0] and list(curves["magnitude"]) == [0.5, 0.2]
    assert list(curves["error"]) == [0.25, 0.5]
    # Digit 2 flips at severity 1, digit 1 at 2, digits 0 and 3 never: median of (inf, 2, 1, inf).
    assert np.isinf(critical.loc[0, "critical_severity"])
    outcomes[("A", "c", 0.2, 0)] = [0, 0, 0, 1]
    _, critical = bm.severity_errors(results_table(outcomes, [0, 1, 2, 3]), [corruption], n_boot=50)
    assert critical.loc[0, "critical_severity"] == 2.0  # median of (2, 2, 1, inf)


def test_summary_rows_are_tidy():
    scores = bm.benchmark_scores(results_table(HAND, [0, 1, 2, 3]), ["c1", "c2"], "A", n_boot=50)
    rows = bm.summary_rows(scores)
    assert list(rows.columns) == ["model", "family", "metric", "magnitude", "n_digits", "value", "low", "high"]
    assert list(rows.loc[rows["model"] == "A", "metric"]) == [
        "mnist_c_error", "mnist_c_error", "mnist_c_ce", "mnist_c_ce", "mnist_c_mean_error", "mnist_c_mce"]
    assert set(rows.loc[rows["metric"] == "mnist_c_mce", "family"]) == {bm.BENCHMARK}
