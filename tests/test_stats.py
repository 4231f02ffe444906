"""Bootstrap intervals: hand-computed cases, naive reference loops, determinism, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from robust_mnist.stats import (
    bootstrap_ci,
    bootstrap_replicates,
    bootstrap_sums,
    correlation_ci,
    grouped_bootstrap_ci,
    paired_bootstrap_diff,
    percentile_interval,
    resample_counts,
)


def naive_replicates(values, statistic, n_boot, seed):
    """One resample at a time, as a textbook would write it."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    out = []
    for _ in range(n_boot):
        sample = values[rng.integers(0, len(values), size=len(values))]
        out.append(statistic(sample))
    return np.array(out)


def naive_ci(values, statistic, n_boot=500, level=0.95, seed=0):
    values = np.asarray(values, dtype=float)
    replicates = naive_replicates(values, statistic, n_boot, seed)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return statistic(values), low, high


@pytest.mark.parametrize(
    "name, function",
    [("mean", np.mean), ("median", np.median), (lambda r: r.std(axis=1), np.std)],
)
def test_matches_a_naive_loop(name, function):
    values = np.random.default_rng(3).exponential(size=37)
    expected = naive_ci(values, function, n_boot=500, seed=11)
    assert bootstrap_ci(values, name, n_boot=500, seed=11) == pytest.approx(expected, rel=1e-12)


def test_two_values_hand_computed():
    # Resampling [0, 1] twice: mean 0 with probability 1/4, 0.5 with 1/2, 1 with 1/4, so the
    # 2.5% and 97.5% quantiles of the replicates are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], n_boot=2000) == (0.5, 0.0, 1.0)
    assert bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0, 4.0)
    assert bootstrap_ci([2.5]) == (2.5, 2.5, 2.5)


def test_interval_contains_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (25, 400):
        values = rng.normal(size=n)
        estimate, low, high = bootstrap_ci(values, seed=1)
        assert low < estimate < high
        widths[n] = high - low
    # The width of a mean's interval scales as 1 / sqrt(n): 16 times the digits, 1/4 the width.
    assert 2.5 < widths[25] / widths[400] < 6.5


def test_coverage_of_the_mean_is_near_nominal():
    rng = np.random.default_rng(5)
    covered = sum(
        low <= 0.0 <= high
        for low, high in (bootstrap_ci(rng.normal(size=60), n_boot=300, seed=k)[1:] for k in range(200))
    )
    assert 0.88 <= covered / 200 <= 0.99


def test_seeded_and_deterministic():
    values = np.random.default_rng(1).normal(size=50)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7)[1:] != bootstrap_ci(values, seed=8)[1:]
    # Drawing the resamples block by block gives the one-matrix stream.
    assert np.array_equal(
        resample_counts(50, 300, seed=2),
        np.stack([np.bincount(row, minlength=50) for row in np.random.default_rng(2).integers(0, 50, size=(300, 50))]),
    )


def test_nan_dropped_inf_kept():
    assert bootstrap_ci([1.0, np.nan, 3.0], seed=4) == bootstrap_ci([1.0, 3.0], seed=4)
    assert all(np.isnan(bootstrap_ci([np.nan, np.nan])))
    # A digit that never flips has critical magnitude +inf: the median stays defined while
    # under half of the digits are infinite, and no bound turns into NaN.
    few = np.r_[np.arange(1.0, 8.0), [np.inf] * 3]  # median of 1..7, inf, inf, inf = 5.5
    estimate, low, high = bootstrap_ci(few, "median")
    assert estimate == 5.5 and 1.0 <= low <= estimate and high == np.inf
    many = np.r_[[1.0, 2.0], [np.inf] * 8]
    assert bootstrap_ci(many, "median") == (np.inf, np.inf, np.inf)


def test_percentile_interval_hand_computed():
    # 5 replicates: the 2.5% quantile sits at position 0.1 -> 1 + 0.1 * (2 - 1) = 1.1; the
    # 97.5% quantile at position 3.9 between two infinities -> inf, not NaN.
    assert percentile_interval(np.array([3.0, np.inf, 1.0, 2.0, np.inf])) == (pytest.approx(1.1), np.inf)
    finite = np.random.default_rng(0).normal(size=(101, 3))
    low, high = percentile_interval(finite, 0.9)
    assert np.allclose(low, np.quantile(finite, 0.05, axis=0))
    assert np.allclose(high, np.quantile(finite, 0.95, axis=0))
    assert percentile_interval(np.array([np.nan, 2.0, np.nan])) == (2.0, 2.0)


def test_multicolumn_values_and_sums():
    values = np.random.default_rng(2).normal(size=(30, 2))
    estimate, low, high = bootstrap_ci(values, seed=3)
    for column in range(2):
        assert (estimate[column], low[column], high[column]) == pytest.approx(bootstrap_ci(values[:, column], seed=3))
    counts = resample_counts(30, 40, seed=9)
    assert np.allclose(bootstrap_sums(values, 40, seed=9), counts @ values)
    assert np.all(counts.sum(axis=1) == 30)


def test_replicates_match_naive_loop():
    values = np.array([0.5, 2.0, 7.0, 1.0, np.inf])
    for name, function in (("mean", np.mean), ("median", np.median)):
        assert np.array_equal(bootstrap_replicates(values, name, 200, 5), naive_replicates(values, function, 200, 5))


def test_grouped_equals_per_group_calls():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "model": np.repeat(["a", "b"], 30),
            "family": np.tile(np.repeat(["x", "y"], 15), 2),
            "score": rng.normal(size=60),
            "other": rng.exponential(size=60),
        }
    )
    frame.loc[3, "score"] = np.nan
    frame.loc[40, "other"] = np.inf
    table = grouped_bootstrap_ci(frame, ["model", "family"], ["score", "other"], n_boot=300, seed=6)
    assert list(table.columns) == [
        "model", "family", "n_digits", "score", "score_low", "score_high", "other", "other_low", "other_high",
    ]
    assert table[["model", "family"]].values.tolist() == [["a", "x"], ["a", "y"], ["b", "x"], ["b", "y"]]
    for _, row in table.iterrows():
        group = frame[(frame["model"] == row["model"]) & (frame["family"] == row["family"])]
        assert row["n_digits"] == 15
        for column in ("score", "other"):
            expected = bootstrap_ci(group[column], n_boot=300, seed=6)
            assert (row[column], row[f"{column}_low"], row[f"{column}_high"]) == pytest.approx(expected, nan_ok=True)
    medians = grouped_bootstrap_ci(frame, "model", "other", "median", n_boot=300, seed=6)
    assert medians.loc[1, ["other", "other_low", "other_high"]].tolist() == pytest.approx(
        bootstrap_ci(frame.loc[frame["model"] == "b", "other"], "median", n_boot=300, seed=6)
    )


def test_grouped_medians_share_resamples_and_equal_per_group_calls():
    # Groups of equal size (before and after dropping NaN) go through one resampling.
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"g": np.repeat([0, 1, 2, 3], 25), "x": rng.integers(0, 4, 100).astype(float)})
    frame.loc[[5, 60, 61], "x"] = np.nan
    frame.loc[[30, 31, 90], "x"] = np.inf
    table = grouped_bootstrap_ci(frame, "g", "x", "median", n_boot=300, seed=4)
    for _, row in table.iterrows():
        expected = bootstrap_ci(frame.loc[frame["g"] == row["g"], "x"], "median", n_boot=300, seed=4)
        assert (row["x"], row["x_low"], row["x_high"]) == expected


def test_grouped_empty_frame_keeps_columns():
    table = grouped_bootstrap_ci(pd.DataFrame({"g": [], "x": []}), "g", "x")
    assert table.empty and list(table.columns) == ["g", "n_digits", "x", "x_low", "x_high"]


def test_paired_difference():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=80)
    a = shared + 0.3 + rng.normal(scale=0.05, size=80)
    b = shared
    estimate, low, high = paired_bootstrap_diff(a, b, seed=2)
    assert estimate == pytest.approx(a.mean() - b.mean())
    # Naive: resample digit indices, same ones for both models.
    rng_naive = np.random.default_rng(2)
    naive = []
    for _ in range(1000):
        index = rng_naive.integers(0, 80, size=80)
        naive.append(a[index].mean() - b[index].mean())
    assert (low, high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))
    # Pairing removes the shared per-digit variation: far narrower than unpaired intervals.
    unpaired = bootstrap_ci(a)[2] - bootstrap_ci(a)[1]
    assert high - low < unpaired / 5
    assert paired_bootstrap_diff([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == pytest.approx((1.0, 1.0, 1.0))
    assert paired_bootstrap_diff([1.0, np.nan, 5.0], [0.0, 9.0, 4.0], "median") == pytest.approx(
        paired_bootstrap_diff([1.0, 5.0], [0.0, 4.0], "median")
    )


def test_correlation_matches_scipy_and_naive_loop():
    rng = np.random.default_rng(4)
    x = rng.normal(size=60)
    y = x + rng.normal(size=60)
    y[:20] = np.round(y[:20])  # ties
    for method, function in (("spearman", scipy.stats.spearmanr), ("pearson", scipy.stats.pearsonr)):
        estimate, low, high = correlation_ci(x, y, method, n_boot=400, seed=8)
        assert estimate == pytest.approx(function(x, y)[0])
        rng_naive = np.random.default_rng(8)
        naive = []
        for _ in range(400):
            index = rng_naive.integers(0, 60, size=60)
            naive.append(function(x[index], y[index])[0])
        assert (low, high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))
        assert low < estimate < high


def test_spearman_with_heavy_ties_matches_scipy_loop():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, 40).astype(float)
    y = x + rng.integers(0, 2, 40)
    estimate, low, high = correlation_ci(x, y, n_boot=300, seed=9)
    rng_naive = np.random.default_rng(9)
    naive = []
    for _ in range(300):
        index = rng_naive.integers(0, 40, size=40)
        naive.append(scipy.stats.spearmanr(x[index], y[index])[0])
    assert estimate == pytest.approx(scipy.stats.spearmanr(x, y)[0])
    assert (low, high) == pytest.approx(tuple(np.nanquantile(naive, [0.025, 0.975])))


def test_correlation_hand_computed_cases():
    # Monotone: Spearman 1 on every resample that is not constant.
    assert correlation_ci([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 4.0, 9.0, 16.0, 25.0]) == pytest.approx((1.0, 1.0, 1.0))
    # Reversed ranks: -1.
    assert correlation_ci([1.0, 2.0, 3.0, 4.0], [8.0, 6.0, 5.0, 1.0])[0] == pytest.approx(-1.0)
    assert all(np.isnan(correlation_ci(np.ones(10), np.arange(10.0))))
    assert all(np.isnan(correlation_ci([1.0, 2.0], [2.0, 1.0])))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bootstrap_ci([1.0, 2.0], "mode"), "mode"),
        (lambda: bootstrap_ci([1.0, 2.0], n_boot=0), "n_boot"),
        (lambda: bootstrap_ci([1.0, 2.0], level=1.5), "level"),
        (lambda: correlation_ci([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "kendall"), "spearman"),
        (lambda: paired_bootstrap_diff([1.0, 2.0], [1.0]), "aligned"),
        (lambda: grouped_bootstrap_ci(pd.DataFrame({"g": [1]}), "g", "x"), "x"),
    ],
)
def test_bad_arguments_name_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
