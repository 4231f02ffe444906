"""Paired statistics: McNemar's exact and clustered tests, Holm's correction, error consistency
and disagreement, on hand-computed examples and against naive implementations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from robust_mnist import paired_stats


def test_mcnemar_exact_p_for_one_against_six_discordant_pairs():
    # Binomial(7, 1/2): P(X <= 1) = (C(7,0) + C(7,1)) / 2^7 = 8/128; two-sided: 16/128.
    assert paired_stats.mcnemar_exact(1, 6) == pytest.approx(16 / 128, abs=1e-12)
    assert paired_stats.mcnemar_exact(6, 1) == pytest.approx(16 / 128, abs=1e-12)
    # 0 against 5: 2 * (1/2)^5.
    assert paired_stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32, abs=1e-12)
    # 3 against 3: 2 * 42/64 > 1, capped.
    assert paired_stats.mcnemar_exact(3, 3) == 1.0


def test_mcnemar_without_discordant_pairs_is_one_and_counts_are_checked():
    assert paired_stats.mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError, match="non-negative integer"):
        paired_stats.mcnemar_exact(-1, 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        paired_stats.mcnemar_exact(1.5, 3)


def test_holm_hand_computed_example():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    adjusted = paired_stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(paired_stats.holm([0.5, 0.9]), [1.0, 1.0])
    assert paired_stats.holm([]).shape == (0,)


def naive_holm_rejections(p: list[float], alpha: float) -> set[int]:
    """The step-down procedure as textbooks state it: compare p_(i) with alpha / (m - i + 1)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for step, index in enumerate(order):
        if p[index] <= alpha / (len(p) - step):
            rejected.add(index)
        else:
            break
    return rejected


def test_holm_rejects_what_the_naive_step_down_loop_rejects():
    rng = np.random.default_rng(7)
    for trial in range(300):
        m = int(rng.integers(1, 9))
        p = rng.uniform(0, 0.1, size=m) ** rng.uniform(0.5, 2)
        if trial % 5 == 0:
            p[: m // 2] = p[0]  # ties
        adjusted = paired_stats.holm(p)
        for alpha in (0.01, 0.05, 0.1):
            assert set(np.flatnonzero(adjusted <= alpha)) == naive_holm_rejections(list(p), alpha)
        assert (adjusted >= p - 1e-15).all() and (adjusted <= 1).all()


def test_holm_leaves_nan_out_of_the_family():
    adjusted = paired_stats.holm([0.01, np.nan, 0.02])
    np.testing.assert_allclose(adjusted, [0.02, np.nan, 0.02])


def test_error_consistency_hand_computed_example():
    a = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    b = [1, 1, 1, 0, 0, 0, 1, 1, 1, 1]
    kappa, c_obs, c_exp = paired_stats.error_consistency(a, b)
    # p_a = 0.6, p_b = 0.7; agreement on 7 of 10; c_exp = 0.42 + 0.12 = 0.54.
    assert c_obs == pytest.approx(0.7)
    assert c_exp == pytest.approx(0.54)
    assert kappa == pytest.approx((0.7 - 0.54) / (1 - 0.54))


def test_error_consistency_extremes():
    assert paired_stats.error_consistency([1, 0, 1, 0], [1, 0, 1, 0])[0] == pytest.approx(1.0)
    assert paired_stats.error_consistency([1, 0, 1, 0], [0, 1, 0, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(paired_stats.error_consistency([1, 1, 1], [1, 1, 1])[0])  # c_exp = 1


def test_disagreement_is_the_mean_pairwise_total_variation():
    same = np.full((3, 1, 10), 0.1)
    assert paired_stats.disagreement(same) == pytest.approx([0.0])
    certain = np.zeros((2, 1, 10))
    certain[0, 0, 3] = certain[1, 0, 5] = 1.0
    assert paired_stats.disagreement(certain) == pytest.approx([1.0])
    # Three models: (0.5 |0.6-0.2| * 2 = 0.4, 0, 0.4) / 3 pairs.
    p = np.zeros((3, 1, 10))
    p[0, 0, :2] = [0.6, 0.4]
    p[1, 0, :2] = [0.2, 0.8]
    p[2, 0, :2] = [0.6, 0.4]
    assert paired_stats.disagreement(p) == pytest.approx([0.8 / 3])


def test_clustered_mcnemar_is_the_exact_sign_flip_probability():
    # Enumerate all 2^K sign patterns of the non-zero balances by hand.
    rng = np.random.default_rng(5)
    for _ in range(60):
        balances = rng.integers(-3, 4, size=rng.integers(1, 11))
        sizes = np.abs(balances[balances != 0])
        observed = abs(balances.sum())
        extreme = [abs(np.dot(signs, sizes)) >= observed
                   for signs in itertools.product((1, -1), repeat=len(sizes))]
        expected = min(1.0, float(np.mean(extreme))) if len(sizes) else 1.0
        assert paired_stats.mcnemar_clustered(balances) == pytest.approx(expected, abs=1e-12)
    # With one draw per digit it is McNemar's exact test: 6 digits won by A, 1 by B.
    assert paired_stats.mcnemar_clustered([1] * 6 + [-1] + [0] * 5) == pytest.approx(16 / 128, abs=1e-12)
