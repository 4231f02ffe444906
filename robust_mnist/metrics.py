"""Instability metrics of each cell of a run: pure functions over the long results table.

This module prepares the results table (:func:`check_results`, :func:`clean_predictions`,
:func:`family_sweeps`) and computes the metrics of a family at each magnitude: the
per-magnitude curves (:func:`per_magnitude`: accuracy, flips, probability change, divergence,
entropy, calibration), ImageNet-P's :func:`flip_probability`, :func:`worst_case_accuracy` over
the grid and the :func:`confusion` matrix (:func:`confusions` for several cells). The metrics
of single digits along a sweep (swing, critical magnitudes) and their stratification by a
digit's ambiguity, shape or class are in :mod:`robust_mnist.digit_metrics`, morph flip points
in :mod:`robust_mnist.morph_metrics`; both build on this module.

The input is the results table of a run (see :func:`robust_mnist.rundir.load_results`): one
row per model, family, magnitude, image and draw, with columns ``model, family, magnitude,
image, draw, label, clean_pred, pred, p_true, p_pred, p0..p9`` and ``param_*``. Rows with
``family == "clean"`` hold each model's prediction on the unperturbed digits.

Conventions shared by every metric (here, in :mod:`robust_mnist.digit_metrics` and in
:mod:`robust_mnist.morph_metrics`):

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

from . import rundir
from .rundir import CLEAN
# The calibration error is per_magnitude's; ECE_BINS and expected_calibration_error are part of
# this module's interface too.
from .calibration import ECE_BINS, expected_calibration_error, grouped_calibration_error  # noqa: F401
from .stats import grouped_bootstrap_ci

#: The probability-vector columns (a list: it indexes DataFrames).
PROBABILITY_COLUMNS = list(rundir.PROBABILITY_COLUMNS)
#: Columns every results table must have.
REQUIRED_COLUMNS = list(rundir.BASE_COLUMNS)
#: A wrong prediction at least this confident is an overconfident error.
OVERCONFIDENCE = 0.9
#: Rules of :func:`robust_mnist.digit_metrics.critical_magnitudes` for cells with several draws.
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


def check_results(results: pd.DataFrame, extra: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` unless ``results`` is a DataFrame with the results table's columns."""
    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"results must be a pandas DataFrame; got {type(results).__name__}")
    missing = [c for c in [*REQUIRED_COLUMNS, *extra] if c not in results.columns]
    if missing:
        raise ValueError(
            f"results table lacks columns {missing}; required: {REQUIRED_COLUMNS}"
        )


def probability_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The ``p0..p9`` columns as an ``(N, 10)`` float64 array."""
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
    check_results(results)
    clean = results.loc[results["family"] == CLEAN]
    duplicated = clean.duplicated(["model", "image"])
    if duplicated.any():
        first = clean.loc[duplicated].iloc[0]
        raise ValueError(
            f"{int(duplicated.sum())} duplicate clean rows, for example model "
            f"{first['model']!r} image {first['image']}; expected one per model and image"
        )
    p = probability_matrix(clean)
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
    check_results(results)
    keep = list(results.columns) if columns is None else list(
        dict.fromkeys(["model", "family", "magnitude", "image", "draw", *columns])
    )
    is_clean = (results["family"] == CLEAN).to_numpy()
    perturbed = np.flatnonzero(~is_clean)
    keys = results[DIGIT].iloc[perturbed]
    digits = keys.drop_duplicates()
    at_zero = keys.loc[results["magnitude"].to_numpy()[perturbed] == 0].drop_duplicates()
    lacking = digits.merge(at_zero, on=DIGIT, how="left", indicator=True)
    lacking = lacking.loc[lacking["_merge"] == "left_only", DIGIT]
    clean = results.loc[is_clean, ["model", "image"]].assign(_row=np.flatnonzero(is_clean))
    zero = lacking.merge(clean, on=["model", "image"], how="left", indicator=True)
    if (zero["_merge"] == "left_only").any():
        example = zero.loc[zero["_merge"] == "left_only"].iloc[0]
        raise ValueError(
            f"no clean row for model {example['model']!r} image {example['image']}: every "
            f"perturbed digit needs its family == {CLEAN!r} row"
        )
    # Rows of the results: the perturbed ones, then the clean ones standing in as magnitude 0
    # (family, magnitude and draw set). Sorted by their keys, then taken once: copying the
    # table's columns is what takes the time.
    source = np.concatenate([perturbed, zero["_row"].to_numpy(np.int64)])
    standing_in = np.arange(len(source)) >= len(perturbed)
    family = pd.concat([results["family"].iloc[perturbed], zero["family"]], ignore_index=True)
    magnitude = np.where(standing_in, 0.0, results["magnitude"].to_numpy()[source])
    draw = np.where(standing_in, 0, results["draw"].to_numpy()[source])
    order = np.lexsort((
        draw, magnitude, results["image"].to_numpy()[source],
        pd.factorize(family, sort=True)[0], pd.factorize(results["model"], sort=True)[0][source],
    ))  # stable, as sort_values(["model", "family", "image", "magnitude", "draw"], kind="stable")
    sweeps = results[keep].take(source[order]).reset_index(drop=True)
    return sweeps.assign(family=family.take(order).reset_index(drop=True), magnitude=magnitude[order], draw=draw[order])


def sweeps_for(results: pd.DataFrame, sweeps: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame:
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
    clean_p = probability_matrix(clean)
    js = np.empty(len(sweeps))
    entropy = np.empty(len(sweeps))
    for start in range(0, len(sweeps), _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        p = probability_matrix(sweeps.iloc[rows])
        js[rows] = _js_divergence_bits(p, clean_p[positions[rows]])
        entropy[rows] = _entropy_bits(p)
    pred = sweeps["pred"].to_numpy()
    label = sweeps["label"].to_numpy()
    p_pred = sweeps["p_pred"].to_numpy(dtype=np.float64)
    p_true = sweeps["p_true"].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            # The columns themselves: through numpy, strings take a second to convert and back.
            "model": sweeps["model"].reset_index(drop=True),
            "family": sweeps["family"].reset_index(drop=True),
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
    calibration: bool = True,
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
    calibration : bool
        Whether to compute ``ece`` (its bootstrap costs as much as all the other metrics';
        a caller that shows no calibration leaves it out).

    Returns
    -------
    DataFrame
        One row per (model, family, magnitude), sorted: ``model, family, magnitude,
        n_digits`` and ``<metric>, <metric>_low, <metric>_high`` for the metrics above and,
        with ``calibration``, ``ece``.
    """
    check_results(results)
    clean = clean_predictions(results)
    sweeps = sweeps_for(results, sweeps, ["label", "clean_pred", "pred", "p_true", "p_pred", *PROBABILITY_COLUMNS])
    rows = _row_quantities(sweeps, clean)
    grouped = rows.groupby(CELL + ["image"], sort=True)
    digits = grouped[PER_MAGNITUDE_METRICS].mean().reset_index()
    table = grouped_bootstrap_ci(digits, CELL, PER_MAGNITUDE_METRICS, "mean", n_boot, level, seed)
    if not calibration:
        return table
    if table.empty:
        return table.assign(ece=[], ece_low=[], ece_high=[])
    return table.merge(grouped_calibration_error(rows, CELL, n_boot, level, seed, grouped=grouped), on=CELL, how="left")


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
    check_results(results)
    random = random_family_labels(results, random_families)
    sweeps = sweeps_for(results, sweeps, ["pred", "clean_pred"])
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

    noise = sweeps.loc[is_random & (sweeps["magnitude"] != 0).to_numpy(), DIGIT + ["pred", "clean_pred"]]
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
# Worst case and confusion
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
    check_results(results)
    sweeps = sweeps_for(results, sweeps, ["label", "pred"])
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
    check_results(results)
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
    return _confusion(sweeps.loc[sweeps["family"] == family], family, magnitude)


def confusions(
    results: pd.DataFrame, cells: Sequence[tuple[str, str, float]], sweeps: pd.DataFrame | None = None
) -> list[pd.DataFrame]:
    """:func:`confusion` of several cells, from one pass over the table.

    Parameters
    ----------
    results : DataFrame
    cells : sequence of (model, family, magnitude)
        Each a model, a family label and a magnitude of its grid (matched within 1e-9).
    sweeps : DataFrame, optional
        ``family_sweeps(results)`` (all columns, or at least ``label`` and ``pred``), when
        the caller already has it for several metrics; computed here otherwise.

    Returns
    -------
    list of (10, 10) DataFrame of int64
        As :func:`confusion`, one per cell.
    """
    check_results(results)
    sweeps = sweeps_for(results, sweeps, ["label", "pred"])
    # Codes once: comparing a million strings per cell would cost more than the counting.
    model_codes, models = pd.factorize(sweeps["model"])
    family_codes, families = pd.factorize(sweeps["family"])
    matrices = []
    for model, family, magnitude in cells:
        if model not in models:
            raise ValueError(f"unknown model {model!r}; the table holds {sorted(models)}")
        if family not in families:
            raise ValueError(f"unknown family {family!r}; the table holds {sorted(families)}")
        rows = (model_codes == models.get_loc(model)) & (family_codes == families.get_loc(family))
        matrices.append(_confusion(sweeps.loc[rows, ["magnitude", "label", "pred"]], family, magnitude))
    return matrices


def _confusion(sweeps: pd.DataFrame, family: str, magnitude: float) -> pd.DataFrame:
    """:func:`confusion` of one family's sweeps (one model)."""
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
