"""Ranking the models of a comparison, and seed noise beside architecture differences.

:func:`rank_models` orders the models per family by accuracy, with shared ranks where the
paired tests (:func:`robust_mnist.compare.pairwise_accuracy`) cannot separate them;
:func:`seed_spread` measures how much each metric moves between seeds of one architecture,
and :func:`architecture_differences` sets the differences between architectures beside it.
Pure functions of the comparison's tables: no file, no model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .paired_stats import DIFFERENCE_METRICS
from .stats import tie_groups

#: Column order of :func:`rank_models`'s table (the ``compare --format csv|json`` export).
RANKING_COLUMNS = [
    "family", "rank", "tied", "model", "arch", "seed", "n_digits",
    "accuracy", "accuracy_low", "accuracy_high", "swing", "swing_low", "swing_high",
    "flip_rate", "flip_rate_low", "flip_rate_high",
    "critical_magnitude", "critical_magnitude_low", "critical_magnitude_high",
    "beats", "beaten_by", "tied_with", "crossing",
]


def seed_spread(summary: pd.DataFrame, model_info: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """How much each metric varies between seeds of one architecture.

    For an architecture trained with ``k >= 2`` seeds and a family and metric with per-seed
    values ``v_1..v_k`` (from :func:`robust_mnist.compare.model_summary`): ``mean``, ``min``, ``max``,
    ``range = max - min`` and ``sd`` (sample standard deviation, ``ddof = 1``). Models given
    as ``.keras`` files without an architecture and seed are left out.

    Parameters
    ----------
    summary : DataFrame
        :func:`robust_mnist.compare.model_summary`.
    model_info : mapping
        ``{model: {"arch": ..., "seed": ...}}`` (run.json's ``models``).

    Returns
    -------
    DataFrame
        ``family, metric, arch, n_seeds, seeds, values, mean, min, max, range, sd``
        (``seeds`` and ``values`` as lists).
    """
    groups = _arch_groups(model_info, [m for m in dict.fromkeys(summary["model"])])
    rows = []
    for arch, members in groups.items():
        if len(members) < 2:
            continue
        part = summary.loc[summary["model"].isin([m for m, _ in members])].set_index(["family", "model"])
        for family in dict.fromkeys(summary["family"]):
            for metric, _ in DIFFERENCE_METRICS:
                values = np.array([part.loc[(family, m), metric] for m, _ in members], dtype=np.float64)
                if np.isnan(values).all():
                    continue  # undefined for this family (the swing of the clean digits)
                finite = values[np.isfinite(values)]
                spread = float(finite.max() - finite.min()) if len(finite) == len(values) else math.nan
                rows.append([
                    family, metric, arch, len(members), [s for _, s in members], values.tolist(),
                    float(values.mean()) if len(finite) == len(values) else math.nan,
                    float(values.min()), float(values.max()), spread,
                    float(np.std(values, ddof=1)) if len(finite) == len(values) else math.nan,
                ])
    return pd.DataFrame(rows, columns=["family", "metric", "arch", "n_seeds", "seeds", "values",
                                       "mean", "min", "max", "range", "sd"])


def _arch_groups(model_info: Mapping[str, Mapping[str, Any]], models: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """``{arch: [(model, seed), ...]}`` for the models with an architecture and a seed."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for model in models:
        info = model_info.get(model) or {}
        if info.get("arch") is not None and info.get("seed") is not None:
            groups.setdefault(str(info["arch"]), []).append((model, int(info["seed"])))
    return groups


def architecture_differences(
    summary: pd.DataFrame, spread: pd.DataFrame, model_info: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Differences between architectures beside the spread between seeds.

    For architectures ``A`` and ``B`` (each the mean of its seeds' values), a family and a
    metric: ``difference = mean(A) - mean(B)``. ``seed_range`` is the largest range across
    seeds (:func:`seed_spread`) among ``A`` and ``B``; when neither has several seeds, the
    largest range of any architecture in the comparison that has (``seed_reference`` names
    it), assuming seed noise of similar size. ``beyond_seed_noise = |difference| >
    seed_range``: a difference smaller than what retraining the same network with another
    seed produces is not evidence that the architecture matters.

    Returns
    -------
    DataFrame
        ``family, metric, arch_a, arch_b, value_a, value_b, difference, seed_range,
        seed_reference, beyond_seed_noise``; empty when no architecture has several seeds.
    """
    columns = ["family", "metric", "arch_a", "arch_b", "value_a", "value_b", "difference",
               "seed_range", "seed_reference", "beyond_seed_noise"]
    groups = _arch_groups(model_info, list(dict.fromkeys(summary["model"])))
    if spread.empty or len(groups) < 2:
        return pd.DataFrame(columns=columns)
    ranges = spread.set_index(["family", "metric", "arch"])["range"]
    indexed = summary.set_index(["family", "model"])
    rows = []
    for family in dict.fromkeys(summary["family"]):
        for metric, _ in DIFFERENCE_METRICS:
            means = {arch: float(np.mean([indexed.loc[(family, m), metric] for m, _ in members]))
                     for arch, members in groups.items()}
            available = {arch: ranges.get((family, metric, arch), np.nan) for arch in groups}
            available = {k: v for k, v in available.items() if np.isfinite(v)}
            for a, b in itertools.combinations(groups, 2):
                own = {k: available[k] for k in (a, b) if k in available}
                source = own or available
                if source:
                    reference = max(source, key=source.get)
                    seed_range = source[reference]
                else:
                    reference, seed_range = None, math.nan
                difference = means[a] - means[b]
                if np.isnan(difference):
                    continue  # undefined for this family
                beyond = bool(np.isfinite(difference) and np.isfinite(seed_range) and abs(difference) > seed_range)
                rows.append([family, metric, a, b, means[a], means[b], difference, seed_range, reference, beyond])
    return pd.DataFrame(rows, columns=columns)


def rank_models(
    pairwise: pd.DataFrame,
    summary: pd.DataFrame,
    models: Sequence[str],
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """A ranking of the models per family, with ties where no difference is significant.

    Procedure, per family (the clean digits are a family with the single magnitude 0):

    1. Two models are *separated* when at least one of the family's magnitudes shows a
       significant accuracy difference between them: McNemar's exact test with Holm's
       correction across the family's magnitudes for this pair, adjusted p at most alpha
       (``significant`` of :func:`robust_mnist.compare.pairwise_accuracy`). Model ``i`` *beats* ``j`` when every
       significant difference favours ``i``; a *crossing* when some favour each.
    2. Order the models: repeatedly take, among the models not yet placed that no other
       unplaced model beats, the one with the highest ``accuracy`` (the family's accuracy
       averaged over its magnitudes, :func:`robust_mnist.compare.model_summary`; equal scores keep the model
       order); if every unplaced model is beaten by another (a cycle of wins), the one with
       the highest accuracy. So the order is by accuracy, except that a model is never listed
       below one it beats (a lower mean can hide a significant win at some magnitudes).
    3. Walk down the ordered list: the first model opens a group of rank 1; each next model
       joins the current group if it is separated from none of its members, and otherwise
       opens a new group whose rank is its position in the list (competition ranking:
       1, 1, 3, ...). So models sharing a rank (``tied``) are pairwise indistinguishable by
       the tests, and a rank step means a significant difference from some model above.

    Alpha controls the family-wise error over one pair's magnitudes, not over all pairs.

    Returns
    -------
    DataFrame
        Columns :data:`RANKING_COLUMNS`, one row per family and model, in rank order;
        ``beats``, ``beaten_by``, ``tied_with`` (the other members of its group) and
        ``crossing`` are lists of model names.
    """
    model_info = model_info or {}
    models = list(models)
    rows = []
    families = dict.fromkeys(pairwise["family"]) if len(pairwise) else dict.fromkeys(summary["family"])
    for family in families:
        part = pairwise.loc[pairwise["family"] == family] if len(pairwise) else pairwise
        beats: dict[str, set[str]] = {m: set() for m in models}
        crossing: dict[str, set[str]] = {m: set() for m in models}
        separated: set[frozenset[str]] = set()
        for (a, b), pair in part.groupby(["model_a", "model_b"], sort=False):
            significant = pair.loc[pair["significant"].astype(bool)]
            a_better = bool((significant["difference"] > 0).any())
            b_better = bool((significant["difference"] < 0).any())
            if a_better or b_better:
                separated.add(frozenset((a, b)))
            if a_better and b_better:
                crossing[a].add(b)
                crossing[b].add(a)
            elif a_better:
                beats[a].add(b)
            elif b_better:
                beats[b].add(a)
        scores = summary.loc[summary["family"] == family].set_index("model")
        accuracy = {m: float(scores.loc[m, "accuracy"]) if m in scores.index else -math.inf for m in models}
        ordered: list[str] = []
        remaining = sorted(models, key=lambda m: (-np.nan_to_num(accuracy[m], nan=-math.inf), models.index(m)))
        while remaining:
            unbeaten = [m for m in remaining if not any(m in beats[o] for o in remaining if o != m)]
            chosen = (unbeaten or remaining)[0]  # the best by accuracy (remaining is sorted)
            ordered.append(chosen)
            remaining.remove(chosen)
        rank, group_of = tie_groups(ordered, separated)
        by_order = lambda names: sorted(names, key=models.index)  # noqa: E731
        for model in ordered:
            score = scores.loc[model] if model in scores.index else pd.Series(dtype=float)
            info = model_info.get(model) or {}
            rows.append({
                "family": family, "rank": rank[model], "tied": len(group_of[model]) > 1,
                "model": model, "arch": info.get("arch"), "seed": info.get("seed"),
                "n_digits": int(score["n_digits"]) if "n_digits" in score else 0,
                **{key: float(score[key]) if key in score else math.nan for key in RANKING_COLUMNS[7:19]},
                "beats": by_order(beats[model]),
                "beaten_by": by_order(m for m in models if model in beats[m]),
                "tied_with": [m for m in group_of[model] if m != model],
                "crossing": by_order(crossing[model]),
            })
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)
