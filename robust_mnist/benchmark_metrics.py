"""The MNIST-C benchmark's scores: corruption errors, CE and mCE, from the results table.

MNIST-C (Mu and Gilmer 2019) applies 15 corruptions to the MNIST test digits; a run holds
them as perturbation specs marked ``mnist_c = "<corruption>"`` in its run.json (the study
marks every spec whose family is one of MNIST-C's published corruptions, and records the
severity levels of a ``severities = [...]`` grid; :func:`benchmark_corruptions` reads them).
This module scores each model on them, as ImageNet-C does (Hendrycks and Dietterich 2019):

- per digit ``i`` of corruption ``c``, its error ``e_ci = 1 - (1/S) sum_s (1/D) sum_d
  1[pred_csdi = label_i]`` over the spec's ``S`` severities (magnitudes) and ``D`` draws;
- the corruption error ``E_c = (1/n_c) sum_i e_ci`` over its ``n_c`` digits: at the
  protocol's single severity the error rate there; for a sweep of severities 1..5 the mean
  error over them, ImageNet-C's sum over severities divided by their number;
- the corruption error normalised by a reference model ``r``:
  ``CE_c(m) = E_c(m) / E_c(r)`` (so ``CE_c(r) = 1``; below 1 is more robust than the reference);
- ``mCE(m) = (1/C) sum_c CE_c(m)`` over the ``C`` corruptions, and the mean error
  ``(1/C) sum_c E_c(m)``.

Intervals: one percentile bootstrap over digits (:mod:`robust_mnist.stats`, ``n_boot``
resamples seeded with the study seed) serves every figure: each resample of the study's
digits recomputes every ``E_c`` of every model from the same resampled digits (a corruption
run on a subset averages over the resampled digits of its subset), so CE, mCE and the
differences of mCE between models are paired, ratio and mean alike. :func:`rank_by_mce` ranks
models by mCE, with shared ranks where the paired interval of an mCE difference includes 0.

:func:`severity_errors` gives each corruption's error at every severity of a sweep and the
median *critical severity* of its digits (the lowest severity at which a digit's prediction
departs from its clean one). Pure functions of tables: no file, no model, no perturbation code
(the study marks which specs belong to the benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .metrics import check_results
from .stats import bootstrap_sums, grouped_bootstrap_ci, percentile_interval, tie_groups

#: The ``family`` of the benchmark's aggregate rows (mean error, mCE) in tidy tables; a spec
#: label can never be it (labels have no spaces).
BENCHMARK = "MNIST-C"
#: The default reference model: the article CNN of seed 0 (``arch``, ``seed``).
DEFAULT_REFERENCE = ("article", 0)
#: Columns of :attr:`BenchmarkScores.corruptions`.
CORRUPTION_COLUMNS = [
    "model", "corruption", "name", "n_digits", "error", "error_low", "error_high", "ce", "ce_low", "ce_high",
]
#: Columns of :attr:`BenchmarkScores.models`.
MODEL_COLUMNS = [
    "model", "n_corruptions", "n_digits", "mean_error", "mean_error_low", "mean_error_high",
    "mce", "mce_low", "mce_high",
]
#: Columns of :func:`rank_by_mce`.
RANKING_COLUMNS = [
    "rank", "tied", "model", "arch", "seed", "n_corruptions", "mce", "mce_low", "mce_high",
    "mean_error", "mean_error_low", "mean_error_high", "beats", "beaten_by", "tied_with",
]


@dataclass(frozen=True)
class Corruption:
    """One MNIST-C corruption of a run.

    Attributes
    ----------
    label : str
        The spec label: the ``family`` column of the results.
    name : str
        MNIST-C's name of the corruption (``"shear"`` for the family ``mnistc_shear``).
    magnitudes : tuple of float
        The spec's grid, ascending, in the family's unit.
    severities : tuple of int
        The severity level (1..5) of each magnitude, aligned with ``magnitudes``; empty when
        the study gave magnitudes, or the corruption has no severity table.
    unit : str
    """

    label: str
    name: str
    magnitudes: tuple[float, ...] = ()
    severities: tuple[int, ...] = ()
    unit: str = ""

    @property
    def levels(self) -> tuple[float, ...]:
        """Severity levels when the spec has them, else the magnitudes: the sweep's axis."""
        return tuple(float(s) for s in self.severities) if self.severities else self.magnitudes


def benchmark_corruptions(run_info: Mapping[str, Any]) -> list[Corruption]:
    """The MNIST-C corruptions of a run, in study order, from its run.json.

    A spec belongs to the benchmark when the study marked it with ``mnist_c`` (its family is
    one of MNIST-C's published corruptions). When several specs hold the same corruption,
    the first counts (mCE averages each corruption once).

    Parameters
    ----------
    run_info : mapping
        run.json (:func:`robust_mnist.rundir.read_run_info`).

    Returns
    -------
    list of Corruption
        Empty for a run without MNIST-C corruptions.
    """
    families = run_info.get("families") or {}
    found: list[Corruption] = []
    names: set[str] = set()
    for spec in (run_info.get("study") or {}).get("perturbations") or []:
        name = spec.get("mnist_c")
        if not name or name in names:
            continue
        names.add(str(name))
        label = str(spec.get("label") or spec.get("family"))
        magnitudes = tuple(float(m) for m in spec.get("magnitudes") or ())
        severities = tuple(int(s) for s in spec.get("severities") or ())
        found.append(Corruption(label, str(name), magnitudes, severities if len(severities) == len(magnitudes) else (),
                                str((families.get(label) or {}).get("unit", ""))))
    return found


def requested_reference(run_info: Mapping[str, Any]) -> str | None:
    """The reference model a study names (``[mnist_c] reference = "..."``), or None."""
    table = (run_info.get("study") or {}).get("mnist_c") or {}
    reference = table.get("reference") if isinstance(table, Mapping) else None
    return str(reference) if reference else None


def reference_model(
    models: Sequence[str], model_info: Mapping[str, Mapping[str, Any]] | None = None, requested: str | None = None
) -> str:
    """The model every corruption error is normalised by.

    ``requested`` when given (a model name, or the name a model had in its own run before a
    comparison renamed it: ``model_info[m]["name_in_run"]``); otherwise the article CNN of
    seed 0 (:data:`DEFAULT_REFERENCE`, from ``model_info``'s ``arch`` and ``seed``); otherwise
    the first model.

    Raises
    ------
    ValueError
        If no model is given, or ``requested`` names none of them.
    """
    models = list(models)
    if not models:
        raise ValueError("no model to take as the MNIST-C reference")
    model_info = model_info or {}
    if requested is not None:
        if requested in models:
            return requested
        renamed = [m for m in models if (model_info.get(m) or {}).get("name_in_run") == requested]
        if renamed:
            return renamed[0]
        raise ValueError(f"the MNIST-C reference {requested!r} is not a model of the run; models: {', '.join(models)}")
    arch, seed = DEFAULT_REFERENCE
    for model in models:
        info = model_info.get(model) or {}
        if info.get("arch") == arch and info.get("seed") is not None and int(info["seed"]) == seed:
            return model
    return models[0]


def digit_errors(results: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Each digit's error under each corruption: ``e = 1 - mean_s mean_d 1[pred = label]``.

    Draws are averaged within a magnitude first, then magnitudes are averaged (each magnitude
    weighs the same whatever its draws).

    Parameters
    ----------
    results : DataFrame
        The results table.
    labels : sequence of str
        The corruptions' spec labels.

    Returns
    -------
    DataFrame
        ``model, family, image, error``, sorted by model, family, image.
    """
    check_results(results)
    rows = results.loc[results["family"].isin(list(labels)), ["model", "family", "magnitude", "image", "pred", "label"]]
    rows = rows.assign(correct=(rows["pred"].to_numpy() == rows["label"].to_numpy()).astype(np.float64))
    per_magnitude = rows.groupby(["model", "family", "image", "magnitude"], sort=True)["correct"].mean()
    accuracy = per_magnitude.groupby(level=["model", "family", "image"], sort=True).mean()
    return (1.0 - accuracy).rename("error").reset_index()


@dataclass
class BenchmarkScores:
    """The MNIST-C scores of the models of a run (:func:`benchmark_scores`).

    Attributes
    ----------
    reference : str
        The model the corruption errors are normalised by.
    corruptions : DataFrame
        Per model and corruption (:data:`CORRUPTION_COLUMNS`): ``error`` ``E_c`` and ``ce``
        ``CE_c`` with their intervals; models and corruptions in the given order.
    models : DataFrame
        Per model (:data:`MODEL_COLUMNS`): the mean error and mCE with their intervals.
    differences : DataFrame
        Per ordered pair of models: ``model_a, model_b, difference`` (``mCE(a) - mCE(b)``),
        ``difference_low, difference_high`` (paired bootstrap), ``separated`` (the interval
        excludes 0).
    level : float
    """

    reference: str
    corruptions: pd.DataFrame
    models: pd.DataFrame
    differences: pd.DataFrame
    level: float = 0.95


def benchmark_scores(
    results: pd.DataFrame,
    corruptions: Sequence[Corruption | str],
    reference: str,
    models: Sequence[str] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> BenchmarkScores:
    """Each model's corruption errors, CE, mean error and mCE, with paired bootstrap intervals.

    With ``e_mci`` each digit's error (:func:`digit_errors`) and ``w_ci = 1`` when corruption
    ``c`` ran on digit ``i``: a bootstrap resample draws ``n`` of the ``n`` digits with
    replacement (``k_i`` times digit ``i``; :func:`robust_mnist.stats.bootstrap_sums`) and
    gives ``E_mc* = sum_i k_i e_mci / sum_i k_i w_ci``, ``CE_mc* = E_mc* / E_rc*``,
    ``mCE_m* = mean_c CE_mc*``, ``mean error_m* = mean_c E_mc*`` and ``mCE_a* - mCE_b*``; the
    estimates are the same formulas with every ``k_i = 1``, the intervals percentile intervals
    of the ``n_boot`` resamples (a resample in which a corruption has no digit, or the
    reference makes no error, gives no CE and is left out of that interval). A reference with
    no error at all on a corruption makes the CE of that corruption infinite (or undefined for
    a model with no error either, NaN).

    Parameters
    ----------
    results : DataFrame
        The results table.
    corruptions : sequence of Corruption or str
        The benchmark's corruptions (spec labels), each once.
    reference : str
        The reference model (:func:`reference_model`).
    models : sequence of str, optional
        The models to score, in this order (default: all, in order of appearance).
    n_boot, level, seed
        The bootstrap (seed: the study seed).

    Returns
    -------
    BenchmarkScores

    Raises
    ------
    ValueError
        If a corruption or the reference is missing from the results, or the models were
        not evaluated on the same digits of a corruption.
    """
    labels = [c.label if isinstance(c, Corruption) else str(c) for c in corruptions]
    names = {c.label: c.name for c in corruptions if isinstance(c, Corruption)}
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"need distinct corruptions; got {labels}")
    present = list(dict.fromkeys(results["model"]))
    models = present if models is None else list(models)
    if reference not in models:
        models = [*models, reference] if reference in present else models
    if reference not in present:
        raise ValueError(f"the reference model {reference!r} is not in the results; models: {present}")
    errors = digit_errors(results, labels)
    errors = errors.loc[errors["model"].isin(models)]
    missing = [label for label in labels if label not in set(errors["family"])]
    if missing:
        raise ValueError(f"corruptions {missing} have no rows in the results")
    wide = errors.pivot_table(index="image", columns=["model", "family"], values="error", aggfunc="first")
    ran = np.column_stack([wide[(reference, label)].notna().to_numpy() for label in labels])
    for model in models:
        for c, label in enumerate(labels):
            if (model, label) not in wide.columns or not np.array_equal(wide[(model, label)].notna().to_numpy(), ran[:, c]):
                raise ValueError(f"model {model!r} was not evaluated on the same digits of {label!r} as {reference!r}")
    # Columns: the error sums of every (model, corruption), then the digit counts of every corruption.
    sums = np.column_stack([np.nan_to_num(wide[(m, label)].to_numpy(np.float64)) for m in models for label in labels])
    values = np.hstack([sums, ran.astype(np.float64)])
    point = _scores(values.sum(axis=0)[None], len(models), len(labels), models.index(reference))
    replicates = _scores(bootstrap_sums(values, n_boot, seed), len(models), len(labels), models.index(reference))
    n_digits = ran.sum(axis=0)

    corruption_rows, model_rows, difference_rows = [], [], []
    for m, model in enumerate(models):
        for c, label in enumerate(labels):
            row = [model, label, names.get(label, label), int(n_digits[c])]
            for key in ("error", "ce"):
                row += [float(point[key][0, m, c]), *_interval(replicates[key][:, m, c], level)]
            corruption_rows.append(row)
        model_rows.append([
            model, len(labels), int(ran.any(axis=1).sum()),
            float(point["mean_error"][0, m]), *_interval(replicates["mean_error"][:, m], level),
            float(point["mce"][0, m]), *_interval(replicates["mce"][:, m], level),
        ])
    for a, model_a in enumerate(models):
        for b, model_b in enumerate(models):
            if a == b:
                continue
            with np.errstate(invalid="ignore"):
                estimate = point["mce"][0, a] - point["mce"][0, b]
                low, high = _interval(replicates["mce"][:, a] - replicates["mce"][:, b], level)
            separated = bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))
            difference_rows.append([model_a, model_b, float(estimate), low, high, separated])
    return BenchmarkScores(
        reference=reference,
        corruptions=pd.DataFrame(corruption_rows, columns=CORRUPTION_COLUMNS),
        models=pd.DataFrame(model_rows, columns=MODEL_COLUMNS),
        differences=pd.DataFrame(difference_rows, columns=["model_a", "model_b", "difference", "difference_low",
                                                           "difference_high", "separated"]),
        level=level,
    )


def _scores(sums: np.ndarray, n_models: int, n_corruptions: int, reference: int) -> dict[str, np.ndarray]:
    """E, CE, mean error and mCE of each row of resampled sums (``(B, M * C + C)``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        error = sums[:, : n_models * n_corruptions].reshape(len(sums), n_models, n_corruptions)
        error = error / sums[:, None, n_models * n_corruptions:]
        ce = error / error[:, reference: reference + 1, :]
    return {"error": error, "ce": ce, "mean_error": error.mean(axis=2), "mce": ce.mean(axis=2)}


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    low, high = percentile_interval(np.asarray(replicates, np.float64), level)
    return float(low), float(high)


def rank_by_mce(scores: BenchmarkScores, model_info: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The models ranked by mCE (lowest first), with shared ranks where they cannot be separated.

    Models are ordered by mCE (equal values keep the model order). Model ``a`` *beats* ``b``
    when the paired bootstrap interval of ``mCE(a) - mCE(b)`` lies below 0 (``separated`` of
    :attr:`BenchmarkScores.differences`). Walking down the order, the first model opens a
    group of rank 1; each next model joins the current group when it is separated from none
    of its members, and otherwise opens a group whose rank is its position (1, 1, 3, ...), as
    :func:`robust_mnist.ranking.rank_models` does with the accuracy tests.

    Returns
    -------
    DataFrame
        :data:`RANKING_COLUMNS`; ``beats``, ``beaten_by`` and ``tied_with`` are lists.
    """
    model_info = model_info or {}
    table = scores.models
    models = list(table["model"])
    mce = dict(zip(models, table["mce"].astype(float)))
    differences = scores.differences
    beats = {m: [] for m in models}
    for _, row in differences.loc[differences["separated"] & (differences["difference"] < 0)].iterrows():
        beats[row["model_a"]].append(row["model_b"])
    separated = {frozenset((a, b)) for a, b in zip(differences.loc[differences["separated"], "model_a"],
                                                    differences.loc[differences["separated"], "model_b"])}
    ordered = sorted(models, key=lambda m: (np.nan_to_num(mce[m], nan=math.inf), models.index(m)))
    rank, group_of = tie_groups(ordered, separated)
    indexed = table.set_index("model")
    rows = []
    for model in ordered:
        info = model_info.get(model) or {}
        score = indexed.loc[model]
        rows.append({
            "rank": rank[model], "tied": len(group_of[model]) > 1, "model": model,
            "arch": info.get("arch"), "seed": info.get("seed"), "n_corruptions": int(score["n_corruptions"]),
            **{key: float(score[key]) for key in RANKING_COLUMNS[6:12]},
            "beats": sorted(beats[model], key=models.index),
            "beaten_by": [m for m in models if model in beats[m]],
            "tied_with": [m for m in group_of[model] if m != model],
        })
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


def severity_errors(
    results: pd.DataFrame,
    corruptions: Sequence[Corruption],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each corruption's error at each severity, and its digits' median critical severity.

    At severity (or magnitude) ``s``: ``error = mean_i (1 - mean_d 1[pred_sdi = label_i])``
    with its bootstrap interval over digits. A digit's *critical severity* is the lowest level
    ``s`` at which its prediction differs from its clean prediction (in more than half of the
    draws), ``+inf`` when none does; the median over digits is +inf when most never flip.

    Parameters
    ----------
    results : DataFrame
        The results table (clean rows included).
    corruptions : sequence of Corruption
        Severity levels where a spec has them (:attr:`Corruption.levels`), else magnitudes.
    n_boot, level, seed
        The bootstrap over digits.

    Returns
    -------
    curves : DataFrame
        ``model, corruption, level, magnitude, n_digits, error, error_low, error_high``,
        sorted by model, corruption (given order), level.
    critical : DataFrame
        ``model, corruption, n_digits, critical_severity, critical_severity_low,
        critical_severity_high``.
    """
    check_results(results)
    level_of = {(c.label, m): s for c in corruptions for m, s in zip(c.magnitudes, c.levels)}
    order = {c.label: k for k, c in enumerate(corruptions)}
    rows = results.loc[results["family"].isin(list(order)), ["model", "family", "magnitude", "image", "pred", "label", "clean_pred"]]
    rows = rows.assign(error=(rows["pred"] != rows["label"]).astype(np.float64),
                       flipped=(rows["pred"] != rows["clean_pred"]).astype(np.float64))
    cells = rows.groupby(["model", "family", "magnitude", "image"], sort=True)[["error", "flipped"]].mean().reset_index()
    keys = list(zip(cells["family"], cells["magnitude"]))
    cells["level"] = [level_of.get(key, key[1]) for key in keys]
    curves = grouped_bootstrap_ci(cells, ["model", "family", "level", "magnitude"], "error", "mean", n_boot, level, seed)
    flips = cells.loc[cells["flipped"] > 0.5].groupby(["model", "family", "image"])["level"].min()
    digits = cells[["model", "family", "image"]].drop_duplicates().set_index(["model", "family", "image"])
    digits["critical_severity"] = flips.reindex(digits.index).fillna(np.inf).to_numpy()
    critical = grouped_bootstrap_ci(digits.reset_index(), ["model", "family"], "critical_severity", "median",
                                    n_boot, level, seed)
    def in_study_order(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        table = table.rename(columns={"family": "corruption"})
        key = lambda column: column.map(order) if column.name == "corruption" else column  # noqa: E731
        return table.sort_values(by, key=key, kind="stable").reset_index(drop=True)

    return in_study_order(curves, ["model", "corruption", "level"]), in_study_order(critical, ["model", "corruption"])


def summary_rows(scores: BenchmarkScores) -> pd.DataFrame:
    """The scores as rows of the summary's tidy table.

    Metrics ``mnist_c_error`` and ``mnist_c_ce`` per corruption (``family`` = its spec
    label), then ``mnist_c_mean_error`` and ``mnist_c_mce`` per model (``family`` =
    :data:`BENCHMARK`); ``magnitude`` NaN; ``value, low, high`` the estimate and its interval.

    Returns
    -------
    DataFrame
        Columns ``model, family, metric, magnitude, n_digits, value, low, high``.
    """
    parts = []
    for metric, column in (("mnist_c_error", "error"), ("mnist_c_ce", "ce")):
        part = scores.corruptions.rename(columns={"corruption": "family", column: "value",
                                                  f"{column}_low": "low", f"{column}_high": "high"})
        parts.append(part.assign(metric=metric))
    for metric, column in (("mnist_c_mean_error", "mean_error"), ("mnist_c_mce", "mce")):
        part = scores.models.rename(columns={column: "value", f"{column}_low": "low", f"{column}_high": "high"})
        parts.append(part.assign(metric=metric, family=BENCHMARK))
    columns = ["model", "family", "metric", "magnitude", "n_digits", "value", "low", "high"]
    table = pd.concat([p.assign(magnitude=np.nan)[columns] for p in parts], ignore_index=True)
    models = {m: i for i, m in enumerate(scores.models["model"])}
    table = table.assign(_model=table["model"].map(models))
    return table.sort_values("_model", kind="stable").drop(columns="_model").reset_index(drop=True)


def run_scores(
    results: pd.DataFrame,
    run_info: Mapping[str, Any],
    models: Sequence[str] | None = None,
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
) -> BenchmarkScores | None:
    """:func:`benchmark_scores` of a run's MNIST-C corruptions, or None when it has none.

    The corruptions and the requested reference come from run.json
    (:func:`benchmark_corruptions`, :func:`requested_reference`), the reference model as
    :func:`reference_model` chooses it among ``models`` (default: run.json's models present
    in the results, in study order), and the bootstrap is seeded with the study seed. Only
    the corruptions present in the results count (an unfinished run scores what it has).
    """
    present = set(results["family"].unique())
    corruptions = [c for c in benchmark_corruptions(run_info) if c.label in present]
    if not corruptions:
        return None
    if model_info is None:
        model_info = run_info.get("models") or {}
    in_results = list(dict.fromkeys(results["model"]))
    if models is None:
        models = [m for m in model_info if m in in_results] + [m for m in in_results if m not in model_info]
    reference = reference_model(models, model_info, requested_reference(run_info))
    return benchmark_scores(results, corruptions, reference, models, n_boot, level, int(run_info.get("seed") or 0))
