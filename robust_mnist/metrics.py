"""Instability metrics: pure functions over the long results table.

The input is the results table of a run (see ``robust_mnist.runner.load_results``): one row per
model, family, magnitude, image and draw, with columns ``model, family, magnitude, image,
draw, label, clean_pred, pred, p_true, p_pred, p0..p9`` and ``param_*``. Rows with
``family == "clean"`` hold each model's prediction on the unperturbed digits.

Conventions shared by every function here:

- A *digit* is a (model, image) pair; within a family it is a (model, family, image) triple.
- The *sweep* of a family is its grid of magnitudes for one digit, ordered by magnitude, and
  it includes the clean image: magnitude 0 is the identity of every family, so the clean row
  stands in as magnitude 0 unless the run evaluated magnitude 0 explicitly (see
  :func:`family_sweeps`). Signed families (rotate, translate_x...) form one ordered sequence
  through 0, as ImageNet-P's rotate and translate videos do.
- When a cell has several draws (random families), a per-row quantity is first averaged over
  the draws of each digit and magnitude, then aggregated over digits.
- Every aggregate has a percentile bootstrap interval over digits (:mod:`robust_mnist.stats`):
  columns ``<metric>``, ``<metric>_low``, ``<metric>_high``, at ``level`` (default 95%),
  with ``n_boot`` resamples from ``seed``. ``n_digits`` counts the digits behind it.
- Metrics know nothing of the perturbations' internals. Whether a family is random (noise:
  each draw is compared with the clean image) or deterministic (an ordered sequence) is told by
  the caller, see :func:`flip_probability`.

Everything is vectorised with pandas/numpy group operations. Metrics never evaluate a model:
critical magnitudes refined between grid points come from the runner as a table.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import scipy.special

from .stats import (
    correlation_ci,
    grouped_bootstrap_ci,
    bootstrap_sums,
    percentile_interval,
)

#: The ``family`` label of the clean-prediction rows.
CLEAN = "clean"
#: The probability-vector columns.
PROBABILITY_COLUMNS = [f"p{k}" for k in range(10)]
#: Columns every results table must have.
REQUIRED_COLUMNS = [
    "model", "family", "magnitude", "image", "draw", "label", "clean_pred", "pred",
    "p_true", "p_pred", *PROBABILITY_COLUMNS,
]
#: A wrong prediction at least this confident is an overconfident error.
OVERCONFIDENCE = 0.9
#: Equal-width confidence bins of the expected calibration error (Guo et al. 2017).
ECE_BINS = 15
#: Rules of :func:`critical_magnitudes` for cells with several draws.
RULES = ("majority", "any")
#: Ambiguity covariates computed from the clean prediction.
AMBIGUITY = ("margin", "entropy")

DIGIT = ["model", "family", "image"]
CELL = ["model", "family", "magnitude"]
SWING_COLUMNS = ["label", "clean_pred", "pred", "p_true", *PROBABILITY_COLUMNS]
_BLOCK_ROWS = 1 << 18  # rows per block of (rows, 10) probability arithmetic: bounds memory


# --------------------------------------------------------------------------------------------
# Shared preparation
# --------------------------------------------------------------------------------------------


def _check_results(results: pd.DataFrame, extra: Sequence[str] = ()) -> None:
    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"results must be a pandas DataFrame; got {type(results).__name__}")
    missing = [c for c in [*REQUIRED_COLUMNS, *extra] if c not in results.columns]
    if missing:
        raise ValueError(
            f"results table lacks columns {missing}; required: {REQUIRED_COLUMNS}"
        )


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    """``H(p) = -sum_k p_k log2 p_k`` per row, with ``0 log 0 = 0``."""
    return -scipy.special.xlogy(p, p).sum(axis=1) / np.log(2)


def _js_divergence_bits(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, base 2, per row."""
    m = (p + q) / 2
    kl = scipy.special.rel_entr(p, m).sum(axis=1) + scipy.special.rel_entr(q, m).sum(axis=1)
    return np.clip(kl / (2 * np.log(2)), 0.0, 1.0)


def _margin(p: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row."""
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def clean_predictions(results: pd.DataFrame) -> pd.DataFrame:
    """Each model's prediction on each clean digit, with its ambiguity.

    ``margin = p_(1) - p_(2)`` (the top two probabilities of the clean prediction) and
    ``entropy = -sum_k p_k log2 p_k`` in bits (0 for a one-hot prediction, log2 10 = 3.32 for
    a uniform one); ``correct = 1[clean_pred == label]``.

    Parameters
    ----------
    results : DataFrame
        The results table; its ``family == "clean"`` rows are used.

    Returns
    -------
    DataFrame
        One row per (model, image), sorted: ``model, image, label, clean_pred, p_true,
        p_pred, margin, entropy, correct, p0..p9``.

    Raises
    ------
    ValueError
        If a (model, image) has several clean rows.
    """
    _check_results(results)
    clean = results.loc[results["family"] == CLEAN]
    duplicated = clean.duplicated(["model", "image"])
    if duplicated.any():
        first = clean.loc[duplicated].iloc[0]
        raise ValueError(
            f"{int(duplicated.sum())} duplicate clean rows, for example model "
            f"{first['model']!r} image {first['image']}; expected one per model and image"
        )
    p = _probabilities(clean)
    table = clean[["model", "image", "label", "pred", "p_true", "p_pred"]].rename(
        columns={"pred": "clean_pred"}
    )
    table = table.assign(
        margin=_margin(p) if len(p) else np.empty(0),
        entropy=_entropy_bits(p) if len(p) else np.empty(0),
        correct=(table["clean_pred"] == table["label"]).to_numpy(dtype=np.float64),
    )
    table = pd.concat([table.reset_index(drop=True), clean[PROBABILITY_COLUMNS].reset_index(drop=True)], axis=1)
    return table.sort_values(["model", "image"], kind="stable").reset_index(drop=True)


def family_sweeps(results: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The perturbed rows, with the clean prediction as magnitude 0 of every family.

    For each (model, family, image) of a perturbed family that has no row at magnitude 0, the
    digit's clean row is added with that family, ``magnitude = 0.0`` and ``draw = 0`` (its
    ``param_*`` columns NaN). A family evaluated at magnitude 0 explicitly keeps its own
    rows. Magnitude 0 is taken to be the identity of every family (the perturbation
    contract).

    Parameters
    ----------
    results : DataFrame
        The results table.
    columns : sequence of str, optional
        Keep only these columns (plus the key columns), to save memory on large tables.

    Returns
    -------
    DataFrame
        Rows of every family except ``"clean"``, sorted by model, family, image, magnitude,
        draw.

    Raises
    ------
    ValueError
        If a perturbed digit has no clean row.
    """
    _check_results(results)
    keep = list(results.columns) if columns is None else list(
        dict.fromkeys(["model", "family", "magnitude", "image", "draw", *columns])
    )
    is_clean = (results["family"] == CLEAN).to_numpy()
    perturbed = results.loc[~is_clean, keep]
    clean = results.loc[is_clean, [c for c in keep if c != "family"]]
    digits = perturbed[DIGIT].drop_duplicates()
    at_zero = perturbed.loc[perturbed["magnitude"] == 0, DIGIT].drop_duplicates()
    lacking = digits.merge(at_zero, on=DIGIT, how="left", indicator=True)
    lacking = lacking.loc[lacking["_merge"] == "left_only", DIGIT]
    zero = lacking.merge(clean, on=["model", "image"], how="left", indicator=True)
    if (zero["_merge"] == "left_only").any():
        example = zero.loc[zero["_merge"] == "left_only"].iloc[0]
        raise ValueError(
            f"no clean row for model {example['model']!r} image {example['image']}: every "
            f"perturbed digit needs its family == {CLEAN!r} row"
        )
    zero = zero.drop(columns="_merge").assign(magnitude=0.0, draw=0)[keep]
    sweeps = pd.concat([perturbed, zero.astype(perturbed.dtypes.to_dict())], ignore_index=True)
    return sweeps.sort_values(["model", "family", "image", "magnitude", "draw"], kind="stable").reset_index(drop=True)


def _sweeps(results: pd.DataFrame, sweeps: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame:
    """``family_sweeps(results, columns)``, or the caller's ``sweeps`` if it has those columns.

    Building the sweeps takes about a second on a million-row table; a caller computing
    several metrics passes one table to all of them.
    """
    if sweeps is None:
        return family_sweeps(results, columns)
    missing = [c for c in [*DIGIT, "magnitude", "draw", *columns] if c not in sweeps.columns]
    if missing:
        raise ValueError(f"sweeps lacks columns {missing}; pass family_sweeps(results)")
    return sweeps


def _clean_positions(frame: pd.DataFrame, clean: pd.DataFrame) -> np.ndarray:
    """Row of ``clean`` (from :func:`clean_predictions`) of each row's (model, image)."""
    index = pd.MultiIndex.from_frame(clean[["model", "image"]])
    positions = index.get_indexer(pd.MultiIndex.from_frame(frame[["model", "image"]]))
    if (positions < 0).any():
        raise ValueError("some perturbed digits have no clean row in the results table")
    return positions


def _row_quantities(sweeps: pd.DataFrame, clean: pd.DataFrame) -> pd.DataFrame:
    """Per-row quantities of :func:`per_magnitude`, computed in blocks of rows."""
    positions = _clean_positions(sweeps, clean)
    clean_p = _probabilities(clean)
    js = np.empty(len(sweeps))
    entropy = np.empty(len(sweeps))
    for start in range(0, len(sweeps), _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        p = _probabilities(sweeps.iloc[rows])
        js[rows] = _js_divergence_bits(p, clean_p[positions[rows]])
        entropy[rows] = _entropy_bits(p)
    pred = sweeps["pred"].to_numpy()
    label = sweeps["label"].to_numpy()
    p_pred = sweeps["p_pred"].to_numpy(dtype=np.float64)
    p_true = sweeps["p_true"].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "model": sweeps["model"].to_numpy(),
            "family": sweeps["family"].to_numpy(),
            "magnitude": sweeps["magnitude"].to_numpy(),
            "image": sweeps["image"].to_numpy(),
            "accuracy": (pred == label).astype(np.float64),
            "flip_rate": (pred != sweeps["clean_pred"].to_numpy()).astype(np.float64),
            "p_true": p_true,
            "delta_p_true": p_true - clean["p_true"].to_numpy(dtype=np.float64)[positions],
            "js_divergence": js,
            "entropy": entropy,
            "overconfident_error_rate": ((pred != label) & (p_pred >= OVERCONFIDENCE)).astype(np.float64),
            "confidence": p_pred,
        }
    )


def _confidence_bin(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin ``m`` (0-based) holds confidences in ``(m / bins, (m + 1) / bins]``; 0 goes to bin 0."""
    return np.clip(np.ceil(np.asarray(confidence, dtype=np.float64) * bins).astype(np.int64) - 1, 0, bins - 1)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)| = sum_m |sum_{i in B_m} (correct_i -
    confidence_i)| / N``, where bin ``B_m`` holds the predictions with confidence in
    ``((m - 1) / bins, m / bins]``, ``acc`` is the fraction correct and ``conf`` the mean
    confidence in the bin. 0 for a perfectly calibrated model, at most 1.

    Parameters
    ----------
    confidence : (N,) array_like of float in [0, 1]
        The predicted class's probability (``p_pred``).
    correct : (N,) array_like of bool
    bins : int

    Returns
    -------
    float
        NaN for no predictions.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(
            f"confidence and correct must be aligned 1-D arrays; got {confidence.shape}, {correct.shape}"
        )
    if len(confidence) == 0:
        return float("nan")
    gap = np.bincount(_confidence_bin(confidence, bins), weights=correct - confidence, minlength=bins)
    return float(np.abs(gap).sum() / len(confidence))


def _grouped_ece(
    rows: pd.DataFrame,
    n_boot: int,
    level: float,
    seed: int,
    bins: int = ECE_BINS,
    grouped: pd.api.typing.DataFrameGroupBy | None = None,
) -> pd.DataFrame:
    """ECE per (model, family, magnitude) with a bootstrap over images.

    Each image contributes, per bin, its count of predictions ``C``, of correct ones ``A`` and
    its summed confidence ``S``; a resample with counts ``W`` (see
    :func:`robust_mnist.stats.bootstrap_sums`) has ``ECE = sum_m |(W A)_m - (W S)_m| /
    sum_m (W C)_m``, so all draws of a resampled image come along. ``grouped`` is
    ``rows.groupby(CELL + ["image"], sort=True)`` if the caller has it (its group codes are
    computed once, which takes most of a second on a million rows).
    """
    if grouped is None:
        grouped = rows.groupby(CELL + ["image"], sort=True)
    digit = grouped.ngroup().to_numpy()
    digits = grouped.size().reset_index()[CELL + ["image"]]
    flat = digit * bins + _confidence_bin(rows["confidence"].to_numpy(), bins)
    size = len(digits) * bins
    # (digits x bins) arrays of a whole run are over 100 MB each: as few as possible (the
    # counts stay integers, the gap is formed in place).
    count = np.bincount(flat, minlength=size).reshape(-1, bins)
    gap = np.bincount(flat, weights=rows["accuracy"].to_numpy(), minlength=size).reshape(-1, bins)
    gap -= np.bincount(flat, weights=rows["confidence"].to_numpy(), minlength=size).reshape(-1, bins)
    cells = list(digits.groupby(CELL, sort=True).indices.items())
    # Cells with the same number of images share their resamples: one bootstrap_sums call
    # per size, with every such cell's bins side by side.
    by_size: dict[int, list[int]] = {}
    for position, (_, members) in enumerate(cells):
        by_size.setdefault(len(members), []).append(position)
    bounds = np.full((len(cells), 3), np.nan)
    for n, positions in by_size.items():
        # Per cell, the gaps of only the bins it uses (a handful near 1 at small magnitudes),
        # then its images' prediction counts in one column rather than one per bin: counts are
        # whole numbers, so their resampled sums are exact either way, and the matrix product
        # that dominates the cost has half the columns.
        blocks = []
        for c in positions:
            members = cells[c][1]
            used = count[members].sum(axis=0) > 0
            blocks.append(np.column_stack([gap[members][:, used], count[members].sum(axis=1)]))
        sums = bootstrap_sums(np.hstack(blocks), n_boot, seed)
        start = 0
        for c, block in zip(positions, blocks):
            k = block.shape[1] - 1
            estimate = np.abs(block[:, :k].sum(axis=0)).sum() / block[:, k].sum()
            replicates = np.abs(sums[:, start:start + k]).sum(axis=1) / sums[:, start + k]
            bounds[c] = (estimate, *percentile_interval(replicates, level))
            start += k + 1
    records = [(*key, *bounds[c]) for c, (key, _) in enumerate(cells)]
    return pd.DataFrame(records, columns=CELL + ["ece", "ece_low", "ece_high"])


def _cells(sweeps: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per (model, family, image, magnitude): the mean of ``columns`` over draws."""
    return sweeps.groupby(DIGIT + ["magnitude"], sort=True)[list(columns)].mean().reset_index()


# --------------------------------------------------------------------------------------------
# Per magnitude
# --------------------------------------------------------------------------------------------

PER_MAGNITUDE_METRICS = [
    "accuracy", "flip_rate", "p_true", "delta_p_true", "js_divergence", "entropy",
    "overconfident_error_rate",
]


def per_magnitude(
    results: pd.DataFrame,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    sweeps: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Accuracy, flips, probability change, divergence, entropy and calibration per magnitude.

    For each model, family and magnitude (magnitude 0 is the clean prediction, see
    :func:`family_sweeps`), with ``p`` the prediction's probability vector, ``q`` the clean
    one, ``y`` the label, ``yhat`` the prediction, ``yhat_0`` the clean prediction, each
    per-row quantity averaged over draws per image and then over images:

    - ``accuracy = mean 1[yhat = y]``
    - ``flip_rate = mean 1[yhat != yhat_0]``
    - ``p_true = mean p_y``; ``delta_p_true = mean (p_y - q_y)``
    - ``js_divergence = mean JS(p, q)``, Jensen-Shannon divergence in bits, in [0, 1]:
      ``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``
    - ``entropy = mean H(p)``, ``H(p) = -sum_k p_k log2 p_k`` bits, in [0, log2 10]
    - ``overconfident_error_rate = mean 1[yhat != y and p_yhat >= 0.9]``
    - ``ece``: expected calibration error over all the cell's predictions (every draw), 15
      equal-width bins of ``p_yhat`` (see :func:`expected_calibration_error`); its interval
      resamples images with all their draws.

    Parameters
    ----------
    results : DataFrame
        The results table.
    seed, n_boot, level
        Bootstrap over images (see :mod:`robust_mnist.stats`).
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    DataFrame
        One row per (model, family, magnitude), sorted: ``model, family, magnitude,
        n_digits`` and ``<metric>, <metric>_low, <metric>_high`` for the metrics above and
        ``ece``.
    """
    _check_results(results)
    clean = clean_predictions(results)
    sweeps = _sweeps(results, sweeps, ["label", "clean_pred", "pred", "p_true", "p_pred", *PROBABILITY_COLUMNS])
    rows = _row_quantities(sweeps, clean)
    grouped = rows.groupby(CELL + ["image"], sort=True)
    digits = grouped[PER_MAGNITUDE_METRICS].mean().reset_index()
    table = grouped_bootstrap_ci(digits, CELL, PER_MAGNITUDE_METRICS, "mean", n_boot, level, seed)
    if table.empty:
        return table.assign(ece=[], ece_low=[], ece_high=[])
    return table.merge(_grouped_ece(rows, n_boot, level, seed, grouped=grouped), on=CELL, how="left")


# --------------------------------------------------------------------------------------------
# Flip probability (ImageNet-P)
# --------------------------------------------------------------------------------------------


def random_family_labels(
    results: pd.DataFrame, random_families: Collection[str] | str | None = None
) -> set[str]:
    """Which families of the table are random (noise-like), as the caller says or inferred.

    Parameters
    ----------
    results : DataFrame
    random_families : collection of str, str or None
        The labels of the random families; or the name of a boolean column of ``results``
        that is true on the rows of random families; or None: use a boolean ``random``
        column if there is one, else call a family random when some digit has several draws
        at one magnitude. The inference cannot tell a noise family run with one draw from a
        deterministic one: pass the labels when you know them.

    Returns
    -------
    set of str
    """
    if isinstance(random_families, str):
        if random_families not in results.columns:
            raise ValueError(
                f"random_families {random_families!r} is not a column of the results table; "
                "pass a collection of family labels or a boolean column name"
            )
        column = random_families
    elif random_families is not None:
        labels = set(random_families)
        if not all(isinstance(label, str) for label in labels):
            raise ValueError(f"random_families must hold family labels (str); got {sorted(map(repr, labels))}")
        return labels
    elif "random" in results.columns:
        column = "random"
    else:
        perturbed = results.loc[results["family"] != CLEAN]
        draws = perturbed.groupby(DIGIT + ["magnitude"])["draw"].nunique()
        return set(draws[draws > 1].index.get_level_values("family"))
    return set(results.loc[results[column].astype(bool), "family"])


def flip_probability(
    results: pd.DataFrame,
    random_families: Collection[str] | str | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    per_digit: bool = False,
    sweeps: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """ImageNet-P's flip probability (Hendrycks and Dietterich 2019), per model and family.

    Deterministic families (``kind = "sequence"``): the digit's sweep ``x_1..x_n`` is its
    grid ordered by magnitude, including the clean image at magnitude 0 (so a signed family
    is one sequence through 0, as ImageNet-P's translate and rotate videos, whose middle frame
    is the unshifted image), and ::

        FP = 1 / m sum_{i=1..m} 1 / (n_i - 1) sum_{j=2..n_i} 1[f(x_j^(i)) != f(x_{j-1}^(i))]

    the fraction of consecutive magnitude steps at which the prediction changes, averaged over
    the ``m`` digits (equal to ImageNet-P's ``1 / (m (n - 1)) sum_i sum_j`` when every digit
    has the same grid). A family with several draws (a morph toward several targets) has one
    sequence per draw, each starting from the clean image, and a digit's steps are pooled over
    its draws.

    Random families (``kind = "noise"``): frames are not temporally related, so, as in
    ImageNet-P's noise videos whose first frame is the clean image, each perturbed draw at
    each non-zero magnitude is compared with the clean prediction:
    ``FP = 1 / m sum_i mean_{(magnitude, draw)} 1[f(x_noisy) != f(x_clean)]``. (At one
    magnitude this is :func:`per_magnitude`'s flip rate; ImageNet-P's difficulty levels are
    separate magnitudes there.)

    Parameters
    ----------
    results : DataFrame
        The results table.
    random_families : collection of str, str or None
        See :func:`random_family_labels`.
    seed, n_boot, level
        Bootstrap over digits.
    per_digit : bool
        Return the per-digit values instead of the aggregate.
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    DataFrame
        Aggregate: one row per (model, family): ``model, family, kind, n_digits,
        flip_probability, flip_probability_low, flip_probability_high``. Per digit:
        ``model, family, image, kind, n_comparisons, flip_probability`` (NaN for a digit with
        a single grid point).
    """
    _check_results(results)
    random = random_family_labels(results, random_families)
    sweeps = _sweeps(results, sweeps, ["pred", "clean_pred"])
    is_random = sweeps["family"].isin(random).to_numpy()

    # One sequence per digit and draw (a morph's draws may head for different targets); a
    # draw without its own magnitude-0 row starts from the digit's first one (the clean row).
    sequence = sweeps.loc[~is_random, DIGIT + ["draw", "magnitude", "pred"]]
    paths = sequence[DIGIT + ["draw"]].drop_duplicates()
    at_zero = sequence.loc[sequence["magnitude"] == 0]
    lacking = paths.merge(at_zero[DIGIT + ["draw"]], on=DIGIT + ["draw"], how="left", indicator=True)
    lacking = lacking.loc[lacking["_merge"] == "left_only", DIGIT + ["draw"]]
    starts = lacking.merge(at_zero.drop(columns="draw").drop_duplicates(DIGIT), on=DIGIT)
    sequence = pd.concat([sequence, starts[sequence.columns]], ignore_index=True)
    sequence = sequence.sort_values(DIGIT + ["draw", "magnitude"], kind="stable")
    codes = sequence.groupby(DIGIT + ["draw"], sort=True).ngroup().to_numpy()
    pred = sequence["pred"].to_numpy()
    step = np.r_[False, codes[1:] == codes[:-1]]  # rows sorted: a step joins a row to the previous in its path
    changed = np.r_[False, pred[1:] != pred[:-1]] & step
    steps = sequence[DIGIT].assign(step=step.astype(np.float64), changed=changed.astype(np.float64))
    steps = steps.groupby(DIGIT, sort=True)[["step", "changed"]].sum().reset_index()
    steps["kind"] = "sequence"

    noise = sweeps.loc[is_random & (sweeps["magnitude"] != 0).to_numpy()]
    noise = noise.assign(changed=(noise["pred"] != noise["clean_pred"]).astype(np.float64), step=1.0)
    noise = noise.groupby(DIGIT, sort=True)[["step", "changed"]].sum().reset_index()
    noise["kind"] = "noise"

    digits = pd.concat([steps, noise], ignore_index=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        digits["flip_probability"] = np.where(digits["step"] > 0, digits["changed"] / digits["step"], np.nan)
    digits = digits.rename(columns={"step": "n_comparisons"}).astype({"n_comparisons": np.int64})
    digits = digits[DIGIT + ["kind", "n_comparisons", "flip_probability"]]
    digits = digits.sort_values(DIGIT, kind="stable").reset_index(drop=True)
    if per_digit:
        return digits
    return grouped_bootstrap_ci(
        digits, ["model", "family", "kind"], "flip_probability", "mean", n_boot, level, seed
    ).sort_values(["model", "family"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Per digit: swing, total variation
# --------------------------------------------------------------------------------------------


def swing(results: pd.DataFrame, sweeps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per digit and family: how far the probabilities move along the family's sweep.

    With the sweep ordered by magnitude and including the clean prediction (magnitude 0), and
    ``p_j`` the probability vector at the j-th magnitude averaged over draws (so for random
    families these measure the systematic change of the mean prediction, not draw-to-draw
    noise):

    - ``swing = max_j p_j[y] - min_j p_j[y]``, the range of the true-class probability, in
      [0, 1];
    - ``total_variation = sum_{j=2..n} 0.5 * ||p_j - p_{j-1}||_1``, the path length of the
      probability vector in total-variation distance, in [0, n - 1] (each step in [0, 1]);
    - ``flip_rate``: the fraction of non-zero magnitudes at which the prediction differs from
      the clean one (draw-averaged), and ``accuracy`` likewise the fraction correct.

    Parameters
    ----------
    results : DataFrame
        The results table.
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    DataFrame
        One row per (model, family, image), sorted: ``model, family, image, label,
        clean_pred, n_magnitudes, p_true_min, p_true_max, swing, total_variation, flip_rate,
        accuracy`` (the last two NaN when the sweep has no non-zero magnitude).
    """
    _check_results(results)
    return _swing(_sweeps(results, sweeps, SWING_COLUMNS))


def _swing(sweeps: pd.DataFrame) -> pd.DataFrame:
    """:func:`swing` of the rows of :func:`family_sweeps` (with ``SWING_COLUMNS``)."""
    sweeps = sweeps.assign(
        correct=(sweeps["pred"] == sweeps["label"]).astype(np.float64),
        flipped=(sweeps["pred"] != sweeps["clean_pred"]).astype(np.float64),
    )
    cells = _cells(sweeps, ["label", "clean_pred", "p_true", "correct", "flipped", *PROBABILITY_COLUMNS])
    codes = cells.groupby(DIGIT, sort=True).ngroup().to_numpy()
    p = _probabilities(cells)
    step = 0.5 * np.abs(np.diff(p, axis=0)).sum(axis=1)
    cells["tv_step"] = np.r_[0.0, np.where(codes[1:] == codes[:-1], step, 0.0)]
    nonzero = cells["magnitude"] != 0
    cells["correct"] = cells["correct"].where(nonzero)
    cells["flipped"] = cells["flipped"].where(nonzero)
    table = cells.groupby(DIGIT, sort=True).agg(
        label=("label", "first"),
        clean_pred=("clean_pred", "first"),
        n_magnitudes=("magnitude", "size"),
        p_true_min=("p_true", "min"),
        p_true_max=("p_true", "max"),
        total_variation=("tv_step", "sum"),
        flip_rate=("flipped", "mean"),
        accuracy=("correct", "mean"),
    ).reset_index()
    table.insert(table.columns.get_loc("total_variation"), "swing", table["p_true_max"] - table["p_true_min"])
    return table.astype({"label": np.int64, "clean_pred": np.int64, "n_magnitudes": np.int64})


def swing_summary(
    results: pd.DataFrame, seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> pd.DataFrame:
    """Mean swing and total variation per model and family, with intervals over digits.

    ``swing = 1/m sum_i swing_i`` and ``total_variation = 1/m sum_i TV_i`` over the ``m``
    digits of :func:`swing`.

    Returns
    -------
    DataFrame
        ``model, family, n_digits, swing, swing_low, swing_high, total_variation,
        total_variation_low, total_variation_high``.
    """
    return grouped_bootstrap_ci(
        swing(results), ["model", "family"], ["swing", "total_variation"], "mean", n_boot, level, seed
    )


# --------------------------------------------------------------------------------------------
# Critical magnitudes
# --------------------------------------------------------------------------------------------


def critical_magnitudes(
    results: pd.DataFrame,
    rule: str = "majority",
    refined: pd.DataFrame | None = None,
    sweeps: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per digit and family: the smallest magnitude at which the prediction changes.

    A grid point ``m != 0`` *flips* a digit when the prediction differs from the clean one:
    with several draws, when more than half of them do (``rule="majority"``) or when any does
    (``rule="any"``); with one draw the rules agree. Then ::

        critical_magnitude = min { |m| : m flips the digit },   +inf if none does

    For signed families both sides count (the smaller distance from 0 on either side), and
    ``signed_magnitude`` tells the side (on a tie, the negative one). ``bracket_magnitude`` is
    the grid point next to it towards 0 on the same side (0 if none): the prediction there is
    still the clean one, so the change happens in ``(bracket, signed]``.

    Parameters
    ----------
    results : DataFrame
        The results table.
    rule : {"majority", "any"}
    refined : DataFrame, optional
        Critical magnitudes refined between grid points, as the runner computes them with the
        model (:func:`robust_mnist.runner.refine_critical`; metrics stay pure): columns
        ``model, family, image, high``, ``high`` a signed magnitude in ``[bracket_magnitude,
        signed_magnitude]`` of a digit that flips. It replaces ``signed_magnitude``, its
        absolute value ``critical_magnitude``, and ``refined`` is True for that digit.
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    DataFrame
        One row per (model, family, image), sorted: ``model, family, image, label,
        clean_pred, critical_magnitude, signed_magnitude, bracket_magnitude, refined``
        (NaN signed and bracket magnitudes for digits that never flip).

    Raises
    ------
    ValueError
        On an unknown rule, or a refined value for a digit that does not flip on the grid
        or outside its bracket.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not supported; use one of {RULES}")
    _check_results(results)
    return _critical(_sweeps(results, sweeps, ["label", "clean_pred", "pred"]), rule, refined)


def _critical(sweeps: pd.DataFrame, rule: str, refined: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`critical_magnitudes` of the rows of :func:`family_sweeps`."""
    digits = sweeps.groupby(DIGIT, sort=True).agg(
        label=("label", "first"), clean_pred=("clean_pred", "first")
    ).reset_index()
    sweeps = sweeps.loc[sweeps["magnitude"] != 0]
    cells = sweeps.assign(flipped=(sweeps["pred"] != sweeps["clean_pred"]).astype(np.float64))
    cells = cells.groupby(DIGIT + ["magnitude"], sort=True)["flipped"].mean().reset_index()
    cells["size"] = cells["magnitude"].abs()
    flips = cells.loc[cells["flipped"] > 0.5] if rule == "majority" else cells.loc[cells["flipped"] > 0]
    first = flips.sort_values(DIGIT + ["size", "magnitude"], kind="stable").drop_duplicates(DIGIT)
    first = first[DIGIT + ["magnitude", "size"]].rename(
        columns={"magnitude": "signed_magnitude", "size": "critical_magnitude"}
    )

    # The grid point before the critical one on its side: same sign, smaller size.
    below = cells[DIGIT + ["magnitude", "size"]].merge(first, on=DIGIT)
    below = below.loc[
        (np.sign(below["magnitude"]) == np.sign(below["signed_magnitude"]))
        & (below["size"] < below["critical_magnitude"])
    ]
    below = below.sort_values(DIGIT + ["size"], kind="stable").drop_duplicates(DIGIT, keep="last")
    below = below[DIGIT + ["magnitude"]].rename(columns={"magnitude": "bracket_magnitude"})
    first = first.merge(below, on=DIGIT, how="left")
    first["bracket_magnitude"] = first["bracket_magnitude"].fillna(0.0)

    table = digits.merge(first, on=DIGIT, how="left")
    table["critical_magnitude"] = table["critical_magnitude"].fillna(np.inf)
    table["refined"] = False
    if refined is not None and len(refined):
        # Only the models and families at hand (a caller may pass a part of the results).
        refined = refined.merge(table[["model", "family"]].drop_duplicates(), on=["model", "family"])
        found = table.reset_index().merge(refined[DIGIT + ["high"]], on=DIGIT, how="inner")
        low, grid, value = (found[c].to_numpy(np.float64) for c in ("bracket_magnitude", "signed_magnitude", "high"))
        wrong = ~(np.minimum(low, grid) <= value) | ~(value <= np.maximum(low, grid))  # NaN grid: no flip
        if len(found) < len(refined) or wrong.any():
            bad = found.loc[wrong].iloc[0] if wrong.any() else None
            if bad is None:
                where = "a digit that is not in the results"
            else:
                where = f"model {bad['model']!r} family {bad['family']!r} image {bad['image']}: " + (
                    "it never flips on the grid" if np.isnan(bad["signed_magnitude"]) else
                    f"{bad['high']:g} is outside its bracket [{bad['bracket_magnitude']:g}, {bad['signed_magnitude']:g}]"
                )
            raise ValueError(f"refined critical magnitudes do not match the results ({where})")
        rows = found["index"].to_numpy()
        table.loc[rows, "signed_magnitude"] = value
        table.loc[rows, "critical_magnitude"] = np.abs(value)
        table.loc[rows, "refined"] = True
    return table[
        DIGIT + ["label", "clean_pred", "critical_magnitude", "signed_magnitude", "bracket_magnitude", "refined"]
    ]


def critical_summary(
    critical: pd.DataFrame,
    by: str = "family",
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Median critical magnitude (inf-aware) per family or per family and class.

    ``critical_magnitude = median_i critical_magnitude_i`` over the digits of the group; it is
    +inf when more than half of them never flip within the grid, and its interval can be
    open-ended (+inf high bound) for the same reason. ``flipped_fraction = mean_i
    1[critical_magnitude_i < inf]``.

    Parameters
    ----------
    critical : DataFrame
        The output of :func:`critical_magnitudes`.
    by : {"family", "class"}
        Per model and family, or per model, family and true class (``label``).
    seed, n_boot, level
        Bootstrap over digits.

    Returns
    -------
    DataFrame
        ``model, family[, label], n_digits, critical_magnitude, critical_magnitude_low,
        critical_magnitude_high, flipped_fraction, flipped_fraction_low,
        flipped_fraction_high``.
    """
    groups = {"family": ["model", "family"], "class": ["model", "family", "label"]}
    if by not in groups:
        raise ValueError(f"by {by!r} is not supported; use one of {tuple(groups)}")
    critical = critical.assign(flipped_fraction=np.isfinite(critical["critical_magnitude"]).astype(np.float64))
    median = grouped_bootstrap_ci(critical, groups[by], "critical_magnitude", "median", n_boot, level, seed)
    flipped = grouped_bootstrap_ci(critical, groups[by], "flipped_fraction", "mean", n_boot, level, seed)
    return median.merge(flipped.drop(columns="n_digits"), on=groups[by])


# --------------------------------------------------------------------------------------------
# Morphs
# --------------------------------------------------------------------------------------------

MORPH_PATH = ["model", "family", "image", "draw", "target"]


def morph_transitions(results: pd.DataFrame, target_column: str = "param_target_class") -> pd.DataFrame:
    """Per morph path: the flip point t* and the sharpness of the transition.

    A path is a source digit (model, family, image, draw) morphed toward ``target`` (the
    ``target_column`` of its rows) over the grid ``t_1 < ... < t_n`` (the magnitudes),
    starting at ``t = 0`` with the clean prediction unless the run evaluated ``t = 0``. Rows
    whose target is NaN (non-morph families) are ignored. With ``p_j`` the probability vector
    at ``t_j`` and the target margin ``d_j = p_j[target] - max_{c != target} p_j[c]`` (the
    prediction is the target exactly when ``d_j > 0``):

    - ``t_star``: with ``k`` the first grid point where the prediction is the target,
      ``t* = t_{k-1} + (t_k - t_{k-1}) * (-d_{k-1}) / (d_k - d_{k-1})``, the zero of ``d``
      interpolated linearly between the last non-target and the first target grid point;
      ``t* = t_1`` if the first point is already the target, +inf if the path never reaches
      it. Along a typical morph the strongest other class is the source class, so ``d`` is
      ``p_target - p_source``; taking the maximum over the other classes keeps ``t*``
      consistent with the prediction when a third class leads in between.
    - ``sharpness = max_j (p_j[target] - p_{j-1}[target]) / (t_j - t_{j-1})``, the steepest
      rise of the target probability per unit t (NaN for a single grid point).

    Parameters
    ----------
    results : DataFrame
        The results table.
    target_column : str
        The column holding each morph row's target class.

    Returns
    -------
    DataFrame
        One row per path, sorted: ``model, family, image, draw, label, target, n_points,
        t_star, sharpness``; empty (same columns) when the table has no morph rows.
    """
    _check_results(results)
    columns = MORPH_PATH[:4] + ["label", "target", "n_points", "t_star", "sharpness"]
    if target_column not in results.columns:
        return pd.DataFrame(columns=columns)
    morphs = results.loc[(results["family"] != CLEAN) & results[target_column].notna()]
    if morphs.empty:
        return pd.DataFrame(columns=columns)
    keep = ["model", "family", "magnitude", "image", "draw", "label", "pred", *PROBABILITY_COLUMNS]
    morphs = morphs[keep].assign(target=morphs[target_column].to_numpy().astype(np.int64))
    paths = morphs[MORPH_PATH].drop_duplicates()
    at_zero = morphs.loc[morphs["magnitude"] == 0, MORPH_PATH].drop_duplicates()
    lacking = paths.merge(at_zero, on=MORPH_PATH, how="left", indicator=True)
    lacking = lacking.loc[lacking["_merge"] == "left_only", MORPH_PATH]
    clean = results.loc[results["family"] == CLEAN, ["model", "image", "label", "pred", *PROBABILITY_COLUMNS]]
    zero = lacking.merge(clean, on=["model", "image"], how="inner").assign(magnitude=0.0)
    rows = pd.concat([morphs, zero[morphs.columns]], ignore_index=True)
    rows = rows.sort_values(MORPH_PATH + ["magnitude"], kind="stable").reset_index(drop=True)

    p = _probabilities(rows)
    target = rows["target"].to_numpy()
    index = np.arange(len(rows))
    p_target = p[index, target]
    others = p.copy()
    others[index, target] = -np.inf
    margin = p_target - others.max(axis=1)
    t = rows["magnitude"].to_numpy(dtype=np.float64)
    codes = rows.groupby(MORPH_PATH, sort=True).ngroup().to_numpy()
    same = np.r_[False, codes[1:] == codes[:-1]]
    previous = np.r_[0, index[:-1]]

    hit = rows["pred"].to_numpy() == target
    first_hit = hit & (pd.Series(hit).groupby(codes).cumsum().to_numpy() == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.clip(-margin[previous] / (margin - margin[previous]), 0.0, 1.0)
        crossing = np.where(same, t[previous] + (t - t[previous]) * fraction, t)
        slope = np.where(same, (p_target - p_target[previous]) / (t - t[previous]), np.nan)
    rows["t_star"] = np.where(first_hit, crossing, np.nan)
    rows["slope"] = slope
    table = rows.groupby(MORPH_PATH, sort=True).agg(
        label=("label", "first"),
        n_points=("magnitude", "size"),
        t_star=("t_star", "min"),
        sharpness=("slope", "max"),
    ).reset_index()
    table["t_star"] = table["t_star"].fillna(np.inf)
    return table[columns].astype({"label": np.int64, "n_points": np.int64})


def morph_summary(
    transitions: pd.DataFrame,
    by: Sequence[str] = ("label", "target"),
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Median flip point and mean sharpness per model, family and (by default) class pair.

    ``t_star = median_i t*_i`` (inf-aware: +inf when most paths never reach the target) and
    ``sharpness = mean_i sharpness_i`` over the paths of the group, with bootstrap intervals
    over paths (one per source digit and target).

    Parameters
    ----------
    transitions : DataFrame
        The output of :func:`morph_transitions`.
    by : sequence of str
        Extra grouping columns besides model and family: ``("label", "target")`` for source
        and target class pairs, ``()`` for the family as a whole.

    Returns
    -------
    DataFrame
        ``model, family, *by, n_digits, t_star, t_star_low, t_star_high, sharpness,
        sharpness_low, sharpness_high``.
    """
    groups = ["model", "family", *by]
    median = grouped_bootstrap_ci(transitions, groups, "t_star", "median", n_boot, level, seed)
    sharpness = grouped_bootstrap_ci(transitions, groups, "sharpness", "mean", n_boot, level, seed)
    return median.merge(sharpness.drop(columns="n_digits"), on=groups)


# --------------------------------------------------------------------------------------------
# Worst case, ambiguity, classes, confusion
# --------------------------------------------------------------------------------------------


def worst_case_accuracy(
    results: pd.DataFrame,
    max_magnitude: float | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    sweeps: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Accuracy when a digit counts as correct only if it is correct at every grid point.

    As in Engstrom et al. (2019)'s grid-search adversary: ``worst_case_accuracy = 1/m
    sum_i prod_{(magnitude, draw), |magnitude| <= max_magnitude} 1[f(x_i') = y_i]`` over the
    family's sweep including the clean image (magnitude 0), every draw of every grid point.

    Parameters
    ----------
    results : DataFrame
    max_magnitude : float, optional
        Only grid points with ``|magnitude| <= max_magnitude``; all by default.
    seed, n_boot, level
        Bootstrap over digits.
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least the ones used here), when the
        caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    DataFrame
        ``model, family, n_digits, worst_case_accuracy, worst_case_accuracy_low,
        worst_case_accuracy_high, grid_max`` (the largest ``|magnitude|`` used).
    """
    _check_results(results)
    sweeps = _sweeps(results, sweeps, ["label", "pred"])
    if max_magnitude is not None:
        sweeps = sweeps.loc[sweeps["magnitude"].abs() <= max_magnitude]
    sweeps = sweeps.assign(
        worst_case_accuracy=(sweeps["pred"] == sweeps["label"]).astype(np.float64),
        size=sweeps["magnitude"].abs(),
    )
    digits = sweeps.groupby(DIGIT, sort=True)["worst_case_accuracy"].min().reset_index()
    table = grouped_bootstrap_ci(digits, ["model", "family"], "worst_case_accuracy", "mean", n_boot, level, seed)
    grid = sweeps.groupby(["model", "family"])["size"].max().rename("grid_max").reset_index()
    return table.merge(grid, on=["model", "family"], how="left")


def _covariate(results: pd.DataFrame, covariate: str | pd.Series) -> tuple[str, pd.DataFrame]:
    """``(name, frame of model, image, <name>)`` for a clean-ambiguity name or a per-image Series."""
    clean = clean_predictions(results)
    if isinstance(covariate, pd.Series):
        name = str(covariate.name) if covariate.name is not None else "covariate"
        if not covariate.index.is_unique:
            raise ValueError(f"covariate {name!r} must have one value per image (a unique index)")
        values = clean["image"].map(covariate).to_numpy(dtype=np.float64)
        return name, clean[["model", "image"]].assign(**{name: values})
    if covariate not in AMBIGUITY:
        raise ValueError(
            f"covariate {covariate!r} is not supported; use one of {AMBIGUITY} or a Series indexed by image"
        )
    return covariate, clean[["model", "image", covariate]]


def ambiguity_stratification(
    results: pd.DataFrame,
    by: str | pd.Series = "margin",
    bins: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    swing_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Instability per quantile bin of the clean prediction's ambiguity (or a morphometric).

    The digits of each model are split into ``bins`` quantile bins of the covariate (the clean
    ``margin = p_(1) - p_(2)``, the clean ``entropy`` in bits, or a per-image Series such as
    stroke thickness or slant; ties may merge bins), bin 0 holding the smallest values (for
    the margin, the most ambiguous digits). Per model, family and bin: ``swing`` and
    ``flip_rate`` are the means over the bin's digits of :func:`swing`'s per-digit values.

    Parameters
    ----------
    results : DataFrame
    by : {"margin", "entropy"} or Series
        A Series is indexed by image; its name names the output columns.
    bins : int
    seed, n_boot, level
        Bootstrap over digits.
    swing_table : DataFrame, optional
        ``swing(results)``, when the caller already has it (it takes seconds on a large
        table); computed here otherwise. It is not modified.

    Returns
    -------
    DataFrame
        ``model, family, bin, <by>_min, <by>_max`` (the covariate's range in the bin),
        ``n_digits, swing, swing_low, swing_high, flip_rate, flip_rate_low, flip_rate_high``.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    name, covariate = _covariate(results, by)
    covariate = covariate.loc[covariate[name].notna()].copy()
    covariate["bin"] = covariate.groupby("model")[name].transform(
        lambda values: pd.qcut(values.rank(method="average"), bins, labels=False, duplicates="drop")
        if values.nunique() > 1 else 0
    ).astype(np.int64)
    ranges = covariate.groupby(["model", "bin"])[name].agg(["min", "max"]).add_prefix(f"{name}_").reset_index()
    swing_table = swing(results) if swing_table is None else swing_table
    digits = swing_table.merge(covariate[["model", "image", "bin"]], on=["model", "image"])
    table = grouped_bootstrap_ci(
        digits, ["model", "family", "bin"], ["swing", "flip_rate"], "mean", n_boot, level, seed
    )
    table = table.merge(ranges, on=["model", "bin"], how="left")
    front = ["model", "family", "bin", f"{name}_min", f"{name}_max"]
    return table[front + [c for c in table.columns if c not in front]]


def instability_correlation(
    results: pd.DataFrame,
    covariate: str | pd.Series = "margin",
    instability: str = "swing",
    method: str = "spearman",
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    swing_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Correlation between a digit's instability and its ambiguity or morphometrics.

    Per model and family, ``correlation = rho(instability_i, covariate_i)`` over digits, with a
    pairs-bootstrap interval (:func:`robust_mnist.stats.correlation_ci`; Spearman's rank
    correlation by default). A negative correlation with the margin means that ambiguous
    digits (small margin) swing more.

    Parameters
    ----------
    results : DataFrame
    covariate : {"margin", "entropy"} or Series
        The clean prediction's margin or entropy, or a per-image Series (thickness, slant...).
    instability : {"swing", "total_variation", "flip_rate"}
        A per-digit column of :func:`swing`.
    method : {"spearman", "pearson"}
    seed, n_boot, level
        Bootstrap over digits.
    swing_table : DataFrame, optional
        ``swing(results)``, when the caller already has it (it takes seconds on a large
        table); computed here otherwise. It is not modified.

    Returns
    -------
    DataFrame
        ``model, family, covariate, instability, method, n_digits, correlation,
        correlation_low, correlation_high``.
    """
    choices = ("swing", "total_variation", "flip_rate")
    if instability not in choices:
        raise ValueError(f"instability {instability!r} is not supported; use one of {choices}")
    name, values = _covariate(results, covariate)
    swing_table = swing(results) if swing_table is None else swing_table
    digits = swing_table.merge(values, on=["model", "image"])
    records = []
    for (model, family), group in digits.groupby(["model", "family"], sort=True):
        estimate, low, high = correlation_ci(group[instability], group[name], method, n_boot, level, seed)
        records.append((model, family, name, instability, method, len(group), estimate, low, high))
    return pd.DataFrame(
        records,
        columns=["model", "family", "covariate", "instability", "method", "n_digits",
                 "correlation", "correlation_low", "correlation_high"],
    )


def per_class(
    results: pd.DataFrame,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    swing_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per model, family and true class: clean accuracy, accuracy, flip rate and swing.

    Means over the class's digits of :func:`swing`'s per-digit values: ``clean_accuracy =
    mean 1[clean_pred = label]``, ``accuracy`` and ``flip_rate`` over the non-zero
    magnitudes, ``swing``.

    Parameters
    ----------
    results : DataFrame
    seed, n_boot, level
        Bootstrap over digits.
    swing_table : DataFrame, optional
        ``swing(results)``, when the caller already has it (it takes seconds on a large
        table); computed here otherwise. It is not modified.

    Returns
    -------
    DataFrame
        ``model, family, label, n_digits`` and ``<metric>, <metric>_low, <metric>_high`` for
        clean_accuracy, accuracy, flip_rate, swing.
    """
    digits = swing(results) if swing_table is None else swing_table
    digits = digits.assign(clean_accuracy=(digits["clean_pred"] == digits["label"]).astype(np.float64))
    return grouped_bootstrap_ci(
        digits, ["model", "family", "label"], ["clean_accuracy", "accuracy", "flip_rate", "swing"],
        "mean", n_boot, level, seed,
    )


def confusion(
    results: pd.DataFrame, family: str, magnitude: float, model: str | None = None
) -> pd.DataFrame:
    """True class by predicted class counts at one magnitude of one family.

    ``counts[i, j] = #{rows : label = i, pred = j}`` over the digits and draws of the cell
    (magnitude 0 is the clean prediction unless the run evaluated it).

    Parameters
    ----------
    results : DataFrame
    family : str
        A family label of the table.
    magnitude : float
        A magnitude of its grid (matched within 1e-9).
    model : str, optional
        Needed when the table holds several models.

    Returns
    -------
    (10, 10) DataFrame of int64
        Index ``true`` 0..9, columns ``predicted`` 0..9.
    """
    _check_results(results)
    models = sorted(results["model"].unique())
    if model is None:
        if len(models) > 1:
            raise ValueError(f"the table holds several models; choose one of {models}")
        model = models[0] if models else None
    elif model not in models:
        raise ValueError(f"unknown model {model!r}; the table holds {models}")
    families = sorted(set(results["family"].unique()) - {CLEAN})
    if family not in families:
        raise ValueError(f"unknown family {family!r}; the table holds {families}")
    selection = results.loc[(results["family"].isin([family, CLEAN])) & (results["model"] == model)]
    sweeps = family_sweeps(selection, ["label", "pred"])
    sweeps = sweeps.loc[sweeps["family"] == family]
    grid = np.unique(sweeps["magnitude"].to_numpy())
    cell = sweeps.loc[np.isclose(sweeps["magnitude"], magnitude, rtol=0, atol=1e-9)]
    if cell.empty:
        raise ValueError(f"magnitude {magnitude:g} is not in the grid of {family!r}: {[float(m) for m in grid]}")
    counts = np.bincount(cell["label"].to_numpy() * 10 + cell["pred"].to_numpy(), minlength=100)
    return pd.DataFrame(
        counts.reshape(10, 10).astype(np.int64),
        index=pd.Index(range(10), name="true"),
        columns=pd.Index(range(10), name="predicted"),
    )


# --------------------------------------------------------------------------------------------
# The run summary
# --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ["model", "family", "metric", "magnitude", "n_digits", "value", "low", "high"]


def summary_table(
    results: pd.DataFrame,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    rule: str = "majority",
    refined: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The run's compact summary: a tidy (long) frame, one row per model, family and figure.

    ``metric`` is one of, in this order within each model and family:

    - ``clean_accuracy``: ``mean 1[clean_pred = label]`` over the family's digits (magnitude
      NaN);
    - ``accuracy``: at each non-zero grid magnitude, draw-averaged per digit (``magnitude``
      set; the same numbers as :func:`per_magnitude`);
    - ``flip_rate``: per digit the fraction of non-zero magnitudes whose prediction differs
      from the clean one, averaged over digits (magnitude NaN);
    - ``critical_magnitude``: the median over digits of :func:`critical_magnitudes` with
      ``rule`` (magnitude NaN; +inf when most digits never flip).

    ``value`` is the estimate and ``low``, ``high`` its bootstrap interval over digits.

    Parameters
    ----------
    results : DataFrame
        The results table.
    seed, n_boot, level
        Bootstrap over digits.
    rule : {"majority", "any"}
        See :func:`critical_magnitudes`.
    refined : DataFrame, optional
        Refined critical magnitudes (see :func:`critical_magnitudes`).

    Returns
    -------
    DataFrame
        Columns ``model, family, metric, magnitude, n_digits, value, low, high``.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not supported; use one of {RULES}")
    _check_results(results)
    sweeps = family_sweeps(results, SWING_COLUMNS)
    cells = _cells(sweeps.assign(accuracy=(sweeps["pred"] == sweeps["label"]).astype(np.float64)), ["accuracy"])
    accuracy = grouped_bootstrap_ci(cells, CELL, "accuracy", "mean", n_boot, level, seed)
    is_clean = accuracy["magnitude"] == 0
    clean = accuracy.loc[is_clean].assign(metric="clean_accuracy", magnitude=np.nan)
    accuracy = accuracy.loc[~is_clean].assign(metric="accuracy")
    digits = _swing(sweeps)
    flips = grouped_bootstrap_ci(digits, ["model", "family"], "flip_rate", "mean", n_boot, level, seed)
    flips = flips.assign(metric="flip_rate", magnitude=np.nan)
    critical = grouped_bootstrap_ci(
        _critical(sweeps, rule, refined), ["model", "family"], "critical_magnitude", "median", n_boot, level, seed
    ).assign(metric="critical_magnitude", magnitude=np.nan)
    parts = []
    sources = ((clean, "accuracy"), (accuracy, "accuracy"), (flips, "flip_rate"), (critical, "critical_magnitude"))
    for part, column in sources:
        renamed = part.rename(columns={column: "value", f"{column}_low": "low", f"{column}_high": "high"})
        parts.append(renamed[SUMMARY_COLUMNS])
    table = pd.concat(parts, ignore_index=True)
    order = {"clean_accuracy": 0, "accuracy": 1, "flip_rate": 2, "critical_magnitude": 3}
    table = table.assign(_order=table["metric"].map(order))
    table = table.sort_values(["model", "family", "_order", "magnitude"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)
