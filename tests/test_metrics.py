"""Instability metrics: hand-computed tables and naive per-digit reference loops."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from robust_mnist import digit_metrics, metrics, morph_metrics

# --------------------------------------------------------------------------------------------
# Building results tables the way the runner does: pred = argmax, p_true = p[label]...
# --------------------------------------------------------------------------------------------


def vector(mass: dict[int, float]) -> np.ndarray:
    p = np.zeros(10)
    for k, v in mass.items():
        p[k] = v
    return p


def build(labels, clean, perturbed, model="m"):
    """A results table.

    labels : {image: label}; clean : {image: probability dict};
    perturbed : list of (family, magnitude, draw, image, probability dict[, target class]).
    """
    rows = []
    clean_pred = {image: int(np.argmax(vector(p))) for image, p in clean.items()}

    def add(family, magnitude, draw, image, mass, target=np.nan):
        p = vector(mass).astype(np.float32)
        row = {
            "model": model, "family": family, "magnitude": float(magnitude), "image": image,
            "draw": draw, "label": labels[image], "clean_pred": clean_pred[image],
            "pred": int(np.argmax(p)), "p_true": p[labels[image]], "p_pred": p.max(),
            "param_target_class": float(target),
        }
        row.update({f"p{k}": p[k] for k in range(10)})
        rows.append(row)

    for image, mass in clean.items():
        add("clean", 0.0, 0, image, mass)
    for entry in perturbed:
        add(*entry)
    table = pd.DataFrame(rows)
    return table.astype({f"p{k}": np.float32 for k in range(10)} | {"p_true": np.float32, "p_pred": np.float32})


LABELS = {0: 0, 1: 1, 2: 2}
# Clean predictions: image 0 correct and confident, image 1 correct, image 2 wrong (3 over 2).
CLEAN = {0: {0: 0.9, 1: 0.1}, 1: {1: 0.8, 2: 0.2}, 2: {3: 0.6, 2: 0.4}}
ROTATE = [  # signed, deterministic
    ("rotate", -10, 0, 0, {0: 0.6, 1: 0.4}),
    ("rotate", -10, 0, 1, {2: 0.6, 1: 0.4}),   # flips to 2
    ("rotate", -10, 0, 2, {3: 0.7, 2: 0.3}),
    ("rotate", 10, 0, 0, {1: 0.7, 0: 0.3}),    # flips to 1
    ("rotate", 10, 0, 1, {1: 0.9, 2: 0.1}),
    ("rotate", 10, 0, 2, {3: 0.55, 2: 0.45}),
]
THIN = [  # unsigned, deterministic
    ("thin", 0.5, 0, 0, {0: 0.8, 1: 0.2}),
    ("thin", 1.0, 0, 0, {0: 0.55, 1: 0.45}),
    ("thin", 1.5, 0, 0, {1: 0.95, 0: 0.05}),   # flips, overconfident error
    ("thin", 0.5, 0, 1, {2: 0.7, 1: 0.3}),     # flips
    ("thin", 1.0, 0, 1, {1: 0.6, 2: 0.4}),
    ("thin", 1.5, 0, 1, {2: 0.92, 1: 0.08}),   # flips, overconfident error
    ("thin", 0.5, 0, 2, {2: 0.6, 3: 0.4}),     # flips (to the true class)
    ("thin", 1.0, 0, 2, {3: 0.8, 2: 0.2}),
    ("thin", 1.5, 0, 2, {3: 0.6, 2: 0.4}),
]
NOISE = [  # random, two draws
    ("noise", 0.2, 0, 0, {0: 0.85, 1: 0.15}),
    ("noise", 0.2, 1, 0, {1: 0.62, 0: 0.38}),  # flips
    ("noise", 0.2, 0, 1, {1: 0.7, 2: 0.3}),
    ("noise", 0.2, 1, 1, {1: 0.75, 2: 0.25}),
    ("noise", 0.2, 0, 2, {2: 0.55, 3: 0.45}),  # flips
    ("noise", 0.2, 1, 2, {3: 0.7, 2: 0.3}),
]
MORPH = [  # (family, t, draw, image, probabilities, target)
    ("morph", 0.25, 0, 0, {0: 0.7, 6: 0.3}, 6),
    ("morph", 0.5, 0, 0, {0: 0.6, 6: 0.4}, 6),
    ("morph", 0.75, 0, 0, {6: 0.8, 0: 0.2}, 6),
    ("morph", 1.0, 0, 0, {6: 0.95, 0: 0.05}, 6),
    ("morph", 0.25, 0, 1, {1: 0.5, 2: 0.3, 7: 0.2}, 7),
    ("morph", 0.5, 0, 1, {2: 0.5, 7: 0.4, 1: 0.1}, 7),  # a third class leads
    ("morph", 0.75, 0, 1, {7: 0.7, 2: 0.2, 1: 0.1}, 7),
    ("morph", 1.0, 0, 1, {7: 0.9, 1: 0.1}, 7),
    ("morph", 0.5, 0, 2, {3: 0.5, 2: 0.3, 5: 0.2}, 5),
    ("morph", 1.0, 0, 2, {3: 0.5, 5: 0.4, 2: 0.1}, 5),  # never reaches 5
    ("morph", 0.5, 1, 2, {3: 0.7, 2: 0.3}, 3),          # clean prediction is already 3
    ("morph", 1.0, 1, 2, {3: 0.9, 2: 0.1}, 3),
]


@pytest.fixture(scope="module")
def hand():
    return build(LABELS, CLEAN, ROTATE + THIN + NOISE)


def only(frame, **equal):
    for column, value in equal.items():
        frame = frame[frame[column] == value]
    assert len(frame) == 1, frame
    return frame.iloc[0]


def kl_bits(p, q):
    return sum(a * math.log2(a / b) for a, b in zip(p, q) if a > 0)


# --------------------------------------------------------------------------------------------
# Hand-computed examples
# --------------------------------------------------------------------------------------------


def test_clean_predictions_margin_and_entropy(hand):
    clean = metrics.clean_predictions(hand)
    assert clean["margin"].tolist() == pytest.approx([0.8, 0.6, 0.2])  # 0.9-0.1, 0.8-0.2, 0.6-0.4
    entropy = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert clean.loc[0, "entropy"] == pytest.approx(entropy, abs=1e-6)
    assert clean["correct"].tolist() == [1.0, 1.0, 0.0]


def test_family_sweeps_add_clean_as_magnitude_zero(hand):
    sweeps = metrics.family_sweeps(hand)
    rotate = sweeps[sweeps["family"] == "rotate"]
    assert sorted(rotate["magnitude"].unique()) == [-10.0, 0.0, 10.0]
    assert len(sweeps[(sweeps["family"] == "noise") & (sweeps["magnitude"] == 0)]) == 3
    assert "clean" not in set(sweeps["family"])


def test_explicit_magnitude_zero_rows_are_kept():
    table = build(LABELS, CLEAN, [("blur", 0.0, 0, i, {LABELS[i]: 0.5, 9: 0.5 - 0.01}) for i in range(3)]
                  + [("blur", 1.0, 0, i, CLEAN[i]) for i in range(3)])
    zero = only(metrics.per_magnitude(table, n_boot=50), family="blur", magnitude=0.0)
    assert zero["p_true"] == pytest.approx(0.5)  # the explicit rows, not the clean ones


def test_per_magnitude_hand_computed(hand):
    table = metrics.per_magnitude(hand, n_boot=200)
    minus = only(table, family="rotate", magnitude=-10.0)
    # Predictions 0 (right), 2 (wrong, flipped), 3 (wrong, as when clean).
    assert minus["accuracy"] == pytest.approx(1 / 3)
    assert minus["flip_rate"] == pytest.approx(1 / 3)
    assert minus["p_true"] == pytest.approx((0.6 + 0.4 + 0.3) / 3)
    assert minus["delta_p_true"] == pytest.approx(((0.6 - 0.9) + (0.4 - 0.8) + (0.3 - 0.4)) / 3)
    assert minus["n_digits"] == 3
    clean = only(table, family="rotate", magnitude=0.0)
    assert (clean["accuracy"], clean["flip_rate"], clean["js_divergence"]) == pytest.approx((2 / 3, 0, 0), abs=1e-7)

    plus = only(table, family="rotate", magnitude=10.0)
    js = [  # JS(p, q) = KL(p||m)/2 + KL(q||m)/2, m = (p+q)/2, per image
        (kl_bits([0.3, 0.7], [0.6, 0.4]) + kl_bits([0.9, 0.1], [0.6, 0.4])) / 2,
        (kl_bits([0.9, 0.1], [0.85, 0.15]) + kl_bits([0.8, 0.2], [0.85, 0.15])) / 2,
        (kl_bits([0.55, 0.45], [0.575, 0.425]) + kl_bits([0.6, 0.4], [0.575, 0.425])) / 2,
    ]
    assert plus["js_divergence"] == pytest.approx(sum(js) / 3, abs=1e-6)
    entropies = [-(a * math.log2(a) + b * math.log2(b)) for a, b in ((0.3, 0.7), (0.9, 0.1), (0.55, 0.45))]
    assert plus["entropy"] == pytest.approx(sum(entropies) / 3, abs=1e-6)
    # Confidences 0.7 (wrong), 0.9 (right), 0.55 (wrong) fall in three different bins.
    assert plus["ece"] == pytest.approx((0.7 + 0.1 + 0.55) / 3, abs=1e-6)
    assert plus["overconfident_error_rate"] == 0.0

    thin = only(table, family="thin", magnitude=1.5)
    assert thin["overconfident_error_rate"] == pytest.approx(2 / 3)  # 0.95 and 0.92, wrong

    noise = only(table, family="noise", magnitude=0.2)
    # Per image, averaged over its two draws first: accuracy 1/2, 1, 1/2; p_true likewise.
    assert noise["accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert noise["flip_rate"] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert noise["p_true"] == pytest.approx(((0.85 + 0.38) / 2 + (0.7 + 0.75) / 2 + (0.55 + 0.3) / 2) / 3)
    # Six predictions; bin 10 (0.667, 0.733] holds a right and a wrong 0.7: |1 - 1.4| = 0.4.
    gaps = abs(1 - 0.85) + abs(0 - 0.62) + 0.4 + abs(1 - 0.75) + abs(1 - 0.55)
    assert noise["ece"] == pytest.approx(gaps / 6, abs=1e-6)
    for name in metrics.PER_MAGNITUDE_METRICS + ["ece"]:
        assert (table[f"{name}_low"] <= table[name] + 1e-9).all()
        assert (table[name] <= table[f"{name}_high"] + 1e-9).all()


def test_expected_calibration_error_of_calibrated_predictions_is_zero():
    # Confidence 0.75 and exactly 3 of 4 right in one bin; 0.95 and 19 of 20 in another.
    confidence = np.r_[np.full(4, 0.75), np.full(20, 0.95)]
    correct = np.r_[[1, 1, 1, 0], np.ones(19), [0]]
    assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.1, 1.0, size=20000)
    assert metrics.expected_calibration_error(confidence, rng.random(20000) < confidence) < 0.02
    # Always 90% sure, right half of the time: ECE = 0.4.
    assert metrics.expected_calibration_error(np.full(10, 0.9), np.arange(10) % 2) == pytest.approx(0.4)


def test_flip_probability_hand_computed(hand):
    table = metrics.flip_probability(hand, random_families={"noise"}, n_boot=200)
    # rotate, ordered through 0: predictions [0,0,1], [2,1,1], [3,3,3] -> 1/2, 1/2, 0.
    assert only(table, family="rotate")["flip_probability"] == pytest.approx(1 / 3)
    # thin from the clean image: [0,0,0,1], [1,2,1,2], [3,2,3,3] -> 1/3, 3/3, 2/3.
    assert only(table, family="thin")["flip_probability"] == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)
    # noise, each draw against the clean prediction: 1/2, 0, 1/2.
    assert only(table, family="noise")["flip_probability"] == pytest.approx(1 / 3)
    assert only(table, family="noise")["kind"] == "noise" and only(table, family="thin")["kind"] == "sequence"
    digits = metrics.flip_probability(hand, random_families={"noise"}, per_digit=True)
    assert only(digits, family="thin", image=1)["n_comparisons"] == 3


def test_random_families_inferred_from_draws_or_a_column(hand):
    assert metrics.random_family_labels(hand) == {"noise"}
    flagged = hand.assign(random=hand["family"].isin(["noise", "thin"]))
    assert metrics.random_family_labels(flagged) == {"noise", "thin"}
    assert metrics.random_family_labels(flagged, "random") == {"noise", "thin"}
    with pytest.raises(ValueError, match="column"):
        metrics.random_family_labels(hand, "no_such_column")


def test_swing_and_total_variation_hand_computed(hand):
    swing = digit_metrics.swing(hand)
    rotate = swing[swing["family"] == "rotate"].set_index("image")
    # p_true along -10, 0, +10: image 0: .6 .9 .3; image 1: .4 .8 .9; image 2: .3 .4 .45.
    assert rotate["swing"].tolist() == pytest.approx([0.6, 0.5, 0.15], abs=1e-6)
    # Total variation: image 0: 0.3 + 0.6; image 1: 0.4 + 0.1; image 2: 0.1 + 0.05.
    assert rotate["total_variation"].tolist() == pytest.approx([0.9, 0.5, 0.15], abs=1e-6)
    assert rotate["flip_rate"].tolist() == [0.5, 0.5, 0.0]
    assert rotate["accuracy"].tolist() == [0.5, 0.5, 0.0]
    # Noise: draws averaged per magnitude first: image 0 p_true .9 then (.85+.38)/2.
    noise = only(swing, family="noise", image=0)
    assert noise["swing"] == pytest.approx(0.9 - 0.615, abs=1e-6)
    summary = digit_metrics.swing_summary(hand, n_boot=200)
    assert only(summary, family="rotate")["swing"] == pytest.approx((0.6 + 0.5 + 0.15) / 3, abs=1e-6)


def test_critical_magnitudes_hand_computed(hand):
    critical = digit_metrics.critical_magnitudes(hand)
    rotate = critical[critical["family"] == "rotate"].set_index("image")
    assert rotate["critical_magnitude"].tolist() == [10.0, 10.0, np.inf]
    assert rotate["signed_magnitude"].tolist()[:2] == [10.0, -10.0]  # both sides count
    thin = critical[critical["family"] == "thin"].set_index("image")
    assert thin["critical_magnitude"].tolist() == [1.5, 0.5, 0.5]
    assert thin["bracket_magnitude"].tolist() == [1.0, 0.0, 0.0]
    # Noise: one of two draws flips images 0 and 2, not a majority; "any" counts it.
    noise = critical[critical["family"] == "noise"].set_index("image")
    assert noise["critical_magnitude"].tolist() == [np.inf] * 3
    noise_any = digit_metrics.critical_magnitudes(hand, rule="any")
    assert noise_any[noise_any["family"] == "noise"]["critical_magnitude"].tolist() == [0.2, np.inf, 0.2]

    summary = digit_metrics.critical_summary(critical, n_boot=200)
    assert only(summary, family="rotate")["critical_magnitude"] == 10.0  # median of 10, 10, inf
    assert only(summary, family="rotate")["flipped_fraction"] == pytest.approx(2 / 3)
    assert only(summary, family="noise")["critical_magnitude"] == np.inf
    by_class = digit_metrics.critical_summary(critical, "class", n_boot=200)
    assert only(by_class, family="thin", label=0)["critical_magnitude"] == 1.5


def test_refined_critical_magnitudes_replace_the_grid_values(hand):
    grid = digit_metrics.critical_magnitudes(hand)
    # Digits that flip: thin image 0 between 1.0 and 1.5; rotate image 1 between 0 and -10.
    assert (only(grid, family="thin", image=0)["bracket_magnitude"], only(grid, family="thin", image=0)["signed_magnitude"]) == (1.0, 1.5)
    refined = pd.DataFrame({"model": ["m", "m"], "family": ["thin", "rotate"], "image": [0, 1],
                            "low": [1.0, 0.0], "high": [1.25, -5.0]})
    critical = digit_metrics.critical_magnitudes(hand, refined=refined)
    assert only(critical, family="thin", image=0)["critical_magnitude"] == 1.25
    assert only(critical, family="rotate", image=1)["signed_magnitude"] == -5.0
    assert only(critical, family="rotate", image=1)["critical_magnitude"] == 5.0
    assert critical["refined"].sum() == 2 and not only(critical, family="rotate", image=2)["refined"]
    summary = digit_metrics.summary_table(hand, n_boot=50, refined=refined)
    assert not summary.equals(digit_metrics.summary_table(hand, n_boot=50))
    with pytest.raises(ValueError, match="outside its bracket"):
        digit_metrics.critical_magnitudes(hand, refined=refined.assign(high=[99.0, -5.0]))
    never = refined.assign(image=[2, 1], family=["rotate", "rotate"])  # rotate image 2 never flips
    with pytest.raises(ValueError, match="image 2: it never flips on the grid"):
        digit_metrics.critical_magnitudes(hand, refined=never)


def test_morph_transitions_hand_computed():
    table = build(LABELS, CLEAN, MORPH)
    paths = morph_metrics.morph_transitions(table).set_index(["image", "draw"])
    # Image 0 -> 6: margin of 6 is .4 - .6 = -.2 at t=.5 and .8 - .2 = .6 at t=.75.
    assert paths.loc[(0, 0), "t_star"] == pytest.approx(0.5 + 0.25 * 0.2 / 0.8)
    # Steepest rise of p6: (0.8 - 0.4) / 0.25.
    assert paths.loc[(0, 0), "sharpness"] == pytest.approx(1.6)
    # Image 1 -> 7: the runner-up at t=.5 is class 2 (.5), not the source: margin -.1, then .5.
    assert paths.loc[(1, 0), "t_star"] == pytest.approx(0.5 + 0.25 * 0.1 / 0.6)
    assert paths.loc[(1, 0), "sharpness"] == pytest.approx(1.2)
    assert paths.loc[(2, 0), "t_star"] == np.inf
    assert paths.loc[(2, 0), "sharpness"] == pytest.approx(0.4)
    assert paths.loc[(2, 1), "t_star"] == 0.0  # the clean prediction is already the target
    assert paths.loc[(2, 1), "target"] == 3 and paths.loc[(2, 1), "n_points"] == 3
    summary = morph_metrics.morph_summary(morph_metrics.morph_transitions(table), by=(), n_boot=200)
    assert summary.loc[0, "t_star"] == pytest.approx(np.median([0.5625, 0.5 + 0.25 / 6, np.inf, 0.0]))


def test_morph_reach_fraction_hand_computed():
    paths = morph_metrics.morph_transitions(build(LABELS, CLEAN, MORPH))
    reached = morph_metrics.reach_fraction(paths)
    # Image 2 (class 2) never reaches 5; every other path reaches its target.
    assert reached.to_dict() == {(0, 6): 1.0, (1, 7): 1.0, (2, 3): 1.0, (2, 5): 0.0}


def test_morph_transitions_empty_without_morphs(hand):
    assert morph_metrics.morph_transitions(hand).empty
    assert morph_metrics.morph_transitions(hand.drop(columns="param_target_class")).empty


def test_worst_case_accuracy_hand_computed(hand):
    table = metrics.worst_case_accuracy(hand, n_boot=200)
    assert only(table, family="thin")["worst_case_accuracy"] == 0.0
    # Up to thickness 1.0: image 0 right at 0, .5, 1; image 1 wrong at .5; image 2 wrong clean.
    limited = metrics.worst_case_accuracy(hand, max_magnitude=1.0, n_boot=200)
    assert only(limited, family="thin")["worst_case_accuracy"] == pytest.approx(1 / 3)
    assert only(limited, family="thin")["grid_max"] == 1.0


def test_ambiguity_stratification_and_correlation(hand):
    strata = digit_metrics.ambiguity_stratification(hand, "margin", bins=3, n_boot=200)
    rotate = strata[strata["family"] == "rotate"].set_index("bin")
    # Margins .8, .6, .2: bin 0 = image 2, bin 1 = image 1, bin 2 = image 0.
    assert rotate["swing"].tolist() == pytest.approx([0.15, 0.5, 0.6], abs=1e-6)
    assert rotate["flip_rate"].tolist() == [0.0, 0.5, 0.5]
    assert rotate["margin_min"].tolist() == pytest.approx([0.2, 0.6, 0.8])
    correlation = digit_metrics.instability_correlation(hand, "margin", n_boot=200)
    # Swings .6, .5, .15 rise with the margins .8, .6, .2: Spearman 1 in this toy table.
    assert only(correlation, family="rotate")["correlation"] == pytest.approx(1.0)
    thickness = pd.Series([3.0, 1.0, 2.0], index=[0, 1, 2], name="thickness")
    by_thickness = digit_metrics.instability_correlation(hand, thickness, n_boot=200)
    # Rotate swings .6, .5, .15 against thickness 3, 1, 2: ranks (3,2,1) vs (3,1,2) -> 0.5.
    assert only(by_thickness, family="rotate")["correlation"] == pytest.approx(0.5)
    assert only(by_thickness, family="rotate")["covariate"] == "thickness"
    assert "thickness_min" in digit_metrics.ambiguity_stratification(hand, thickness, bins=2, n_boot=50).columns


def test_quantile_bins_hand_computed():
    values = pd.Series([60.0, 10.0, 30.0, 20.0, 50.0, 40.0], index=list("abcdef"))
    assert digit_metrics.quantile_bins(values, 3).tolist() == [2, 0, 1, 0, 2, 1]
    # Ties stay in one bin: average ranks 2.5 (four ones), 5 and 6; the thirds' edges 2.5, 2.5,
    # 3.33 and 6 merge the first two bins.
    ties = pd.Series([1.0, 1.0, 1.0, 1.0, 2.0, 3.0])
    assert digit_metrics.quantile_bins(ties, 3).tolist() == [0, 0, 0, 0, 1, 1]
    constant = pd.Series([4.0, 4.0, 4.0], index=[7, 8, 9])
    assert digit_metrics.quantile_bins(constant, 5).to_dict() == {7: 0, 8: 0, 9: 0}


def test_pooled_instability_matches_a_naive_computation(hand):
    import scipy.stats

    swing = digit_metrics.swing(hand)
    clean = metrics.clean_predictions(hand)
    shape = pd.DataFrame({"thickness": [3.0, 1.0, 2.0], "slant": [-5.0, 10.0, 0.0]})
    pooled = digit_metrics.pooled_instability(swing, clean, shape, "m", n_boot=200, bins=3)
    assert [p["name"] for p in pooled] == ["margin", "thickness", "slant"]
    # Each digit's swing and flip rate averaged over rotate, thin and noise.
    per_digit = {image: (np.mean(swing.loc[swing["image"] == image, "swing"]),
                         np.mean(swing.loc[swing["image"] == image, "flip_rate"])) for image in range(3)}
    covariates = {"margin": [0.8, 0.6, 0.2], "thickness": [3.0, 1.0, 2.0], "slant": [-5.0, 10.0, 0.0]}
    for entry in pooled:
        values = covariates[entry["name"]]
        order = np.argsort(values)  # three digits, three bins: one digit per bin, smallest first
        strata = entry["strata"].sort_values("bin")
        assert strata["swing"].tolist() == pytest.approx([per_digit[i][0] for i in order])
        assert strata["flip_rate"].tolist() == pytest.approx([per_digit[i][1] for i in order])
        assert strata["median"].tolist() == pytest.approx([values[i] for i in order])
        rho = scipy.stats.spearmanr([per_digit[i][0] for i in range(3)], values).statistic
        assert entry["correlation"] == pytest.approx(rho) and entry["n_digits"] == 3
    # A run that stored no morphometrics: the margin only.
    alone = digit_metrics.pooled_instability(swing, clean, None, "m", n_boot=50, bins=3)
    assert [p["name"] for p in alone] == ["margin"]


def test_per_class_and_confusion(hand):
    table = digit_metrics.per_class(hand, n_boot=200)
    row = only(table, family="rotate", label=2)
    assert (row["clean_accuracy"], row["accuracy"], row["flip_rate"]) == (0.0, 0.0, 0.0)
    assert row["swing"] == pytest.approx(0.15, abs=1e-6)
    counts = metrics.confusion(hand, "noise", 0.2)
    expected = np.zeros((10, 10), dtype=int)
    for true, predicted in ((0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 3)):
        expected[true, predicted] += 1
    assert np.array_equal(counts.to_numpy(), expected)
    assert metrics.confusion(hand, "rotate", 0)[3].tolist()[2] == 1  # clean: 2 read as 3
    with pytest.raises(ValueError, match="not in the grid"):
        metrics.confusion(hand, "rotate", 5.0)
    with pytest.raises(ValueError, match="unknown family"):
        metrics.confusion(hand, "rotat", 10.0)


def test_summary_table_hand_computed(hand):
    summary = digit_metrics.summary_table(hand, n_boot=200)
    assert list(summary.columns) == ["model", "family", "metric", "magnitude", "n_digits", "value", "low", "high"]
    rotate = summary[summary["family"] == "rotate"]
    assert rotate["metric"].tolist() == ["clean_accuracy", "accuracy", "accuracy", "flip_rate", "critical_magnitude"]
    assert rotate["value"].tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 3, 1 / 3, 10.0])
    assert rotate["magnitude"].tolist()[1:3] == [-10.0, 10.0]
    assert (summary["low"] <= summary["value"]).all() and (summary["value"] <= summary["high"]).all()


def test_bad_tables_and_arguments(hand):
    with pytest.raises(ValueError, match="p_true"):
        metrics.per_magnitude(hand.drop(columns="p_true"))
    with pytest.raises(ValueError, match="no clean row"):
        digit_metrics.swing(hand[~((hand["family"] == "clean") & (hand["image"] == 1))])
    with pytest.raises(ValueError, match="majority"):
        digit_metrics.critical_magnitudes(hand, rule="most")
    with pytest.raises(ValueError, match="margin"):
        digit_metrics.ambiguity_stratification(hand, "thickness")


# --------------------------------------------------------------------------------------------
# Randomised comparison against naive loops
# --------------------------------------------------------------------------------------------


def random_table(seed=0, n_images=12):
    """Two models, a signed and an unsigned deterministic family, a random family with 3 draws,
    and a morph family, with random probability vectors concentrated on a few classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_images)
    families = {"rot": ([-20.0, -10.0, 0.0, 10.0, 20.0], 1), "blur": ([0.5, 1.0, 2.0], 1),
                "noise": ([0.1, 0.3], 3), "morph": ([0.25, 0.5, 0.75, 1.0], 1)}
    frames = []
    for model in ("a", "b"):
        def probabilities(n):
            logits = rng.normal(scale=2.5, size=(n, 10))
            logits[np.arange(n), labels[:n]] += rng.uniform(0, 4, n)
            p = np.exp(logits)
            return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

        clean = probabilities(n_images)
        targets = (labels + 1 + rng.integers(0, 9, n_images)) % 10
        rows = [("clean", 0.0, 0, clean)]
        for family, (grid, draws) in families.items():
            for magnitude in grid:
                for draw in range(draws):
                    rows.append((family, magnitude, draw, probabilities(n_images)))
        for family, magnitude, draw, p in rows:
            frame = pd.DataFrame({
                "model": model, "family": family, "magnitude": magnitude, "image": np.arange(n_images),
                "draw": draw, "label": labels, "clean_pred": clean.argmax(1), "pred": p.argmax(1),
                "p_true": p[np.arange(n_images), labels], "p_pred": p.max(1),
                "param_target_class": targets.astype(float) if family == "morph" else np.nan,
            })
            for k in range(10):
                frame[f"p{k}"] = p[:, k]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=seed)  # order must not matter


@pytest.fixture(scope="module")
def shuffled():
    return random_table()


def naive_sweeps(table):
    """{(model, family, image): {magnitude: [row, ...]}} with clean rows as magnitude 0."""
    clean = {(r.model, r.image): r for r in table[table["family"] == "clean"].itertuples()}
    sweeps = defaultdict(lambda: defaultdict(list))
    for r in table[table["family"] != "clean"].itertuples():
        sweeps[(r.model, r.family, r.image)][r.magnitude].append(r)
    for (model, family, image), grid in sweeps.items():
        if 0.0 not in grid:
            grid[0.0].append(clean[(model, image)])
    return sweeps, clean


def probs_of(row):
    return [getattr(row, f"p{k}") for k in range(10)]


def test_per_magnitude_matches_naive_loop(shuffled):
    sweeps, clean = naive_sweeps(shuffled)
    table = metrics.per_magnitude(shuffled, n_boot=100).set_index(["model", "family", "magnitude"])
    cells = defaultdict(lambda: defaultdict(list))
    for (model, family, image), grid in sweeps.items():
        q = probs_of(clean[(model, image)])
        for magnitude, rows in grid.items():
            per_row = defaultdict(list)
            for r in rows:
                p = probs_of(r)
                m = [(a + b) / 2 for a, b in zip(p, q)]
                per_row["accuracy"].append(float(r.pred == r.label))
                per_row["flip_rate"].append(float(r.pred != r.clean_pred))
                per_row["delta_p_true"].append(r.p_true - clean[(model, image)].p_true)
                per_row["js_divergence"].append((kl_bits(p, m) + kl_bits(q, m)) / 2)
                per_row["entropy"].append(-sum(a * math.log2(a) for a in p if a > 0))
                per_row["overconfident_error_rate"].append(float(r.pred != r.label and r.p_pred >= 0.9))
                cells[(model, family, magnitude)]["ece_rows"].append((r.p_pred, r.pred == r.label))
            for name, values in per_row.items():
                cells[(model, family, magnitude)][name].append(sum(values) / len(values))
    for key, values in cells.items():
        row = table.loc[key]
        for name in ("accuracy", "flip_rate", "delta_p_true", "js_divergence", "entropy", "overconfident_error_rate"):
            assert row[name] == pytest.approx(sum(values[name]) / len(values[name]), abs=1e-6), (key, name)
        bins = defaultdict(lambda: [0, 0.0, 0.0])
        for confidence, correct in values["ece_rows"]:
            b = min(max(math.ceil(confidence * 15) - 1, 0), 14)
            bins[b][0] += 1
            bins[b][1] += correct
            bins[b][2] += confidence
        n = len(values["ece_rows"])
        ece = sum(count / n * abs(right / count - conf / count) for count, right, conf in bins.values())
        assert row["ece"] == pytest.approx(ece, abs=1e-6), key


def test_ece_interval_matches_naive_image_bootstrap(shuffled):
    table = metrics.per_magnitude(shuffled, n_boot=100)
    row = only(table, model="a", family="noise", magnitude=0.3)
    cell = shuffled[(shuffled["model"] == "a") & (shuffled["family"] == "noise") & (shuffled["magnitude"] == 0.3)]
    images = sorted(cell["image"].unique())
    by_image = [cell[cell["image"] == image] for image in images]
    by_image = [(rows["p_pred"].to_numpy(), (rows["pred"] == rows["label"]).to_numpy()) for rows in by_image]
    rng = np.random.default_rng(0)
    replicates = []
    for _ in range(100):
        picked = [by_image[i] for i in rng.integers(0, len(images), len(images))]  # all draws of each
        confidence, correct = (np.concatenate(parts) for parts in zip(*picked))
        replicates.append(metrics.expected_calibration_error(confidence, correct))
    assert (row["ece_low"], row["ece_high"]) == pytest.approx(tuple(np.quantile(replicates, [0.025, 0.975])))


def test_flip_probability_matches_naive_loop(shuffled):
    sweeps, _ = naive_sweeps(shuffled)
    random = {"noise"}
    table = metrics.flip_probability(shuffled, random_families=random, n_boot=100).set_index(["model", "family"])
    per_family = defaultdict(list)
    for (model, family, image), grid in sweeps.items():
        if family in random:
            flips = [r.pred != r.clean_pred for m, rows in grid.items() if m != 0 for r in rows]
        else:
            predictions = [grid[m][0].pred for m in sorted(grid)]
            flips = [a != b for a, b in zip(predictions[1:], predictions[:-1])]
        per_family[(model, family)].append(sum(flips) / len(flips))
    for key, values in per_family.items():
        assert table.loc[key, "flip_probability"] == pytest.approx(np.mean(values)), key


def test_swing_critical_and_worst_case_match_naive_loop(shuffled):
    sweeps, _ = naive_sweeps(shuffled)
    swing = digit_metrics.swing(shuffled).set_index(["model", "family", "image"])
    critical = digit_metrics.critical_magnitudes(shuffled).set_index(["model", "family", "image"])
    worst = metrics.worst_case_accuracy(shuffled, n_boot=100).set_index(["model", "family"])
    worst_naive = defaultdict(list)
    for key, grid in sweeps.items():
        mean_p = {m: np.mean([probs_of(r) for r in rows], axis=0) for m, rows in grid.items()}
        p_true = [mean_p[m][grid[m][0].label] for m in sorted(grid)]
        assert swing.loc[key, "swing"] == pytest.approx(max(p_true) - min(p_true), abs=1e-6)
        ordered = [mean_p[m] for m in sorted(grid)]
        tv = sum(0.5 * sum(abs(a - b) for a, b in zip(p, q)) for p, q in zip(ordered[1:], ordered[:-1]))
        assert swing.loc[key, "total_variation"] == pytest.approx(tv, abs=1e-6)
        flipped = [
            abs(m) for m, rows in grid.items() if m != 0 and sum(r.pred != r.clean_pred for r in rows) > len(rows) / 2
        ]
        assert critical.loc[key, "critical_magnitude"] == (min(flipped) if flipped else np.inf)
        worst_naive[key[:2]].append(all(r.pred == r.label for rows in grid.values() for r in rows))
    for key, values in worst_naive.items():
        assert worst.loc[key, "worst_case_accuracy"] == pytest.approx(np.mean(values))


def test_morph_transitions_match_naive_loop(shuffled):
    sweeps, _ = naive_sweeps(shuffled)
    paths = morph_metrics.morph_transitions(shuffled).set_index(["model", "family", "image"])
    assert len(paths) == 24
    for key, grid in sweeps.items():
        if key[1] != "morph":
            continue
        target = int(grid[1.0][0].param_target_class)
        points = [(m, probs_of(grid[m][0]), grid[m][0].pred) for m in sorted(grid)]
        t_star = np.inf
        for j, (t, p, pred) in enumerate(points):
            if pred == target:
                if j == 0:
                    t_star = t
                else:
                    t0, p0, _ = points[j - 1]
                    d0 = p0[target] - max(v for k, v in enumerate(p0) if k != target)
                    d1 = p[target] - max(v for k, v in enumerate(p) if k != target)
                    t_star = t0 + (t - t0) * (-d0) / (d1 - d0)
                break
        slopes = [(b[1][target] - a[1][target]) / (b[0] - a[0]) for a, b in zip(points[:-1], points[1:])]
        assert paths.loc[key, "t_star"] == pytest.approx(t_star), key
        assert paths.loc[key, "sharpness"] == pytest.approx(max(slopes), abs=1e-5), key


def test_flip_probability_one_sequence_per_draw_of_a_deterministic_family():
    # A morph-like family whose two draws head for different targets: image 0 along draw 0
    # reads 0, 0, 6 (1 change in 2 steps); along draw 1 it reads 0, 4, 4 (1 in 2).
    steps = [("path", 0.5, 0, 0, {0: 0.7, 6: 0.3}), ("path", 1.0, 0, 0, {6: 0.8, 0: 0.2}),
             ("path", 0.5, 1, 0, {4: 0.7, 0: 0.3}), ("path", 1.0, 1, 0, {4: 0.9, 0: 0.1}),
             ("path", 0.5, 0, 1, {1: 0.9, 2: 0.1}), ("path", 1.0, 0, 1, {1: 0.9, 2: 0.1}),
             ("path", 0.5, 1, 1, {1: 0.9, 2: 0.1}), ("path", 1.0, 1, 1, {2: 0.9, 1: 0.1})]
    table = build({0: 0, 1: 1}, {0: CLEAN[0], 1: CLEAN[1]}, steps)
    digits = metrics.flip_probability(table, random_families=set(), per_digit=True).set_index("image")
    assert digits["flip_probability"].tolist() == [2 / 4, 1 / 4]
    assert digits["n_comparisons"].tolist() == [4, 4]


# --------------------------------------------------------------------------------------------
# Precomputed intermediate tables (the report computes them once for every metric)
# --------------------------------------------------------------------------------------------


def test_precomputed_sweeps_and_swing_give_the_same_tables(shuffled):
    sweeps = metrics.family_sweeps(shuffled)
    swing = digit_metrics.swing(shuffled)
    options = {"n_boot": 100, "seed": 3}
    same = [
        (digit_metrics.swing(shuffled, sweeps=sweeps), swing),
        (digit_metrics.critical_magnitudes(shuffled, sweeps=sweeps), digit_metrics.critical_magnitudes(shuffled)),
        (metrics.per_magnitude(shuffled, **options, sweeps=sweeps), metrics.per_magnitude(shuffled, **options)),
        (metrics.worst_case_accuracy(shuffled, **options, sweeps=sweeps), metrics.worst_case_accuracy(shuffled, **options)),
        (metrics.flip_probability(shuffled, {"noise"}, **options, sweeps=sweeps),
         metrics.flip_probability(shuffled, {"noise"}, **options)),
        (digit_metrics.per_class(shuffled, **options, swing_table=swing), digit_metrics.per_class(shuffled, **options)),
        (digit_metrics.ambiguity_stratification(shuffled, "entropy", 3, **options, swing_table=swing),
         digit_metrics.ambiguity_stratification(shuffled, "entropy", 3, **options)),
        (digit_metrics.instability_correlation(shuffled, "margin", **options, swing_table=swing),
         digit_metrics.instability_correlation(shuffled, "margin", **options)),
    ]
    for given, computed in same:
        pd.testing.assert_frame_equal(given, computed, check_exact=True)
    # The caller's tables are left as they were.
    pd.testing.assert_frame_equal(sweeps, metrics.family_sweeps(shuffled), check_exact=True)
    pd.testing.assert_frame_equal(swing, digit_metrics.swing(shuffled), check_exact=True)


def test_sweeps_lacking_a_column_is_refused(shuffled):
    sweeps = metrics.family_sweeps(shuffled, ["label", "pred"])
    with pytest.raises(ValueError, match="clean_pred"):
        digit_metrics.critical_magnitudes(shuffled, sweeps=sweeps)
