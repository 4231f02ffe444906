"""The text the ``summary`` and ``compare`` commands print: a run's summary and a ranking.

:func:`summary_frame` is a run's summary table (:func:`robust_mnist.digit_metrics.summary_table`
of the results read through :mod:`robust_mnist.rundir`) in the study's order of models,
families and metrics; :func:`write_summary` writes it to a stream as a rich table for the
terminal, or as CSV or JSON for other tools. :func:`ranking_frame` and :func:`write_ranking`
do the same for a comparison's ranking (:attr:`robust_mnist.compare.Comparison.ranking`).
A run or comparison with MNIST-C corruptions gets the benchmark's figures too
(:mod:`robust_mnist.benchmark_metrics`): rows of its own metrics in the tidy table, and a
table of their own on the terminal.
"""

from __future__ import annotations

import json
import math
import os
from typing import IO, TYPE_CHECKING, Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .benchmark_metrics import (
    BENCHMARK,
    benchmark_corruptions,
    reference_model,
    requested_reference,
    run_scores,
    summary_rows,
)
from .digit_metrics import summary_table
from .errors import InvalidArgumentError, RunDirError
from .html.format import grid_text, rank_text
from .rundir import BASE_COLUMNS, Run, load_refined, load_results, read_run_info

if TYPE_CHECKING:  # for annotations only: the summary command need not load the comparison's statistics
    from .compare import Comparison

#: The output formats of :func:`write_summary` and :func:`write_ranking`.
FORMATS = ("table", "csv", "json")
#: The terminal summary table fits this many columns.
SUMMARY_WIDTH = 100
#: The terminal ranking table fits this many columns.
RANKING_WIDTH = 110
#: The MNIST-C metrics of the summary's tidy table
#: (:func:`robust_mnist.benchmark_metrics.summary_rows`).
MNIST_C_METRICS = ("mnist_c_error", "mnist_c_ce", "mnist_c_mean_error", "mnist_c_mce")

# ----------------------------------------------------------------------- the run summary


def summary_frame(run: str | os.PathLike | Run) -> pd.DataFrame:
    """The summary table of a run, families in study order (a tidy DataFrame).

    Columns ``model, family, metric, magnitude, n_digits, value, low, high`` (see
    :func:`robust_mnist.digit_metrics.summary_table`).

    Parameters
    ----------
    run : path-like or Run
        A run directory, or a run already read (:func:`robust_mnist.report_data.read_run`,
        or :func:`robust_mnist.rundir.load_run` with at least the columns
        :data:`robust_mnist.rundir.BASE_COLUMNS`).

    Raises
    ------
    RunDirError
        If ``run`` is not a run directory, is damaged or has no results yet.
    """
    return _summary_frame(*_read(run))


def _read(run: str | os.PathLike | Run) -> tuple[str | os.PathLike, dict[str, Any], pd.DataFrame, pd.DataFrame | None]:
    """The run's path, run.json, results (the columns the summary uses) and refined magnitudes."""
    if isinstance(run, Run):
        return run.path, run.info, run.results, run.refined
    return run, read_run_info(run), load_results(run, BASE_COLUMNS), load_refined(run)


def _summary_frame(
    run_dir: str | os.PathLike, info: dict[str, Any], results: pd.DataFrame, refined: pd.DataFrame | None
) -> pd.DataFrame:
    if results.empty:
        raise RunDirError(f"{run_dir}: the run has no results yet")
    table = summary_table(results, seed=int(info.get("seed", 0)), refined=refined)
    benchmark = run_scores(results, info)
    if benchmark is not None:
        table = pd.concat([table, summary_rows(benchmark)], ignore_index=True)
    model_order = {name: i for i, name in enumerate(info.get("models", {}))}
    family_order = {name: i for i, name in enumerate(info.get("families", {}))}
    metric_order = {"clean_accuracy": 0, "accuracy": 1, "flip_rate": 2, "critical_magnitude": 3,
                    **{metric: 4 + k for k, metric in enumerate(MNIST_C_METRICS)}}
    keys = table.assign(
        _model=table["model"].map(model_order).fillna(len(model_order)),
        _family=table["family"].map(family_order).fillna(len(family_order)),
        _metric=table["metric"].map(metric_order).fillna(len(metric_order)),
    )
    keys = keys.sort_values(["_model", "_family", "_metric", "magnitude"], kind="stable")
    return keys.drop(columns=["_model", "_family", "_metric"]).reset_index(drop=True)


def write_summary(run: str | os.PathLike | Run, fmt: str, file: IO[str]) -> None:
    """Write the summary of a run to ``file`` as a table, CSV or JSON (``fmt``, see :data:`FORMATS`).

    ``run`` is a run directory or a run already read (see :func:`summary_frame`). A run with
    MNIST-C corruptions adds their rows (metrics :data:`MNIST_C_METRICS`) to the CSV and
    JSON, and a table of per-corruption error, CE, mean error and mCE to the terminal output,
    after the per-model tables.

    Raises
    ------
    InvalidArgumentError
        On an unknown format.
    """
    _check_format(fmt)
    run_dir, info, results, refined = _read(run)
    table = _summary_frame(run_dir, info, results, refined)
    if fmt == "csv":
        table.to_csv(file, index=False)
    elif fmt == "json":
        file.write(table.to_json(orient="records", indent=1) + "\n")
    else:
        benchmark = table["metric"].isin(MNIST_C_METRICS)
        _summary_table(table.loc[~benchmark], info, file)
        if benchmark.any():
            _mnist_c_table(table.loc[benchmark], info, file)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _summary_table(table: pd.DataFrame, info: dict[str, Any], file: IO[str]) -> None:
    """Draw the summary with rich: one table per model, one block of rows per family."""
    console = Console(file=file, width=SUMMARY_WIDTH if not file.isatty() else min(SUMMARY_WIDTH, Console().width))
    families = info.get("families", {})
    status = info.get("status")
    for model, rows in table.groupby("model", sort=False):
        n_digits = int(rows["n_digits"].max())
        grid = Table(
            title=f"{info.get('study', {}).get('name', '')}: model {model}"
            + ("" if status == "complete" else f" (run {status}: partial results)"),
            caption=f"[95% bootstrap intervals over digits; up to {n_digits} digits per family; "
            "critical: the magnitude at which a digit's prediction first changes]",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
        )
        grid.add_column("family", no_wrap=True, min_width=14, max_width=20, overflow="ellipsis")
        grid.add_column("magnitude", justify="right", no_wrap=True, min_width=9)
        grid.add_column("accuracy %", no_wrap=True, min_width=19)
        grid.add_column("flip rate %", no_wrap=True, min_width=19)
        grid.add_column("median critical", no_wrap=True, min_width=14, overflow="ellipsis")
        for family, part in rows.groupby("family", sort=False):
            about = families.get(family, {})
            largest = max((abs(m) for m in about.get("magnitudes", [])), default=math.nan)
            flip = part[part["metric"] == "flip_rate"]
            critical = part[part["metric"] == "critical_magnitude"]
            # The family's figures go on its first row; its unit under its name.
            first_row = [
                _summary_interval(flip.iloc[0], 100) if len(flip) else "",
                _critical(critical.iloc[0], largest) if len(critical) else "",
            ]
            names = [family, f"[dim]{about.get('unit', '')}[/dim]"]
            lines = [("clean", row) for _, row in part[part["metric"] == "clean_accuracy"].iterrows()]
            lines += [(f"{row['magnitude']:g}", row) for _, row in part[part["metric"] == "accuracy"].iterrows()]
            for number, (magnitude, row) in enumerate(lines):
                grid.add_row(
                    names[number] if number < len(names) else "",
                    magnitude,
                    _summary_interval(row, 100),
                    *(first_row if number == 0 else ["", ""]),
                )
            grid.add_section()
        console.print(grid)


def _mnist_c_table(table: pd.DataFrame, info: dict[str, Any], file: IO[str]) -> None:
    """Draw the MNIST-C figures with rich: one table per model, a row per corruption."""
    console = Console(file=file, width=SUMMARY_WIDTH if not file.isatty() else min(SUMMARY_WIDTH, Console().width))
    corruptions = {c.label: c for c in benchmark_corruptions(info)}
    models = list(dict.fromkeys(table["model"]))
    reference = reference_model(models, info.get("models") or {}, requested_reference(info))
    for model, rows in table.groupby("model", sort=False):
        grid = Table(
            title=escape(f"{info.get('study', {}).get('name', '')}: MNIST-C, model {model}"),
            caption=escape(f"error = 1 - accuracy on the corrupted digits (mean over the severities of a sweep); "
                           f"CE = error / error of the reference model {reference}; mCE = mean CE over the "
                           f"{int((rows['metric'] == 'mnist_c_error').sum())} corruptions. [95% paired bootstrap "
                           "intervals over digits]"),
            box=box.SIMPLE_HEAD, padding=(0, 1),
        )
        grid.add_column("corruption", no_wrap=True, max_width=20, overflow="ellipsis")
        grid.add_column("severity", no_wrap=True, max_width=22, overflow="ellipsis")
        grid.add_column("error %", no_wrap=True, min_width=19)
        grid.add_column("CE", no_wrap=True, min_width=19)
        errors = rows.loc[rows["metric"] == "mnist_c_error"].set_index("family")
        ces = rows.loc[rows["metric"] == "mnist_c_ce"].set_index("family")
        for label in errors.index:
            corruption = corruptions.get(label)
            grid.add_row(escape(label), escape(grid_text(corruption) if corruption else ""),
                         _summary_interval(errors.loc[label], 100), _ratio_interval(ces.loc[label]))
        grid.add_section()
        mean = rows.loc[rows["metric"] == "mnist_c_mean_error"]
        mce = rows.loc[rows["metric"] == "mnist_c_mce"]
        grid.add_row("[bold]mean / mCE[/bold]", "", _summary_interval(mean.iloc[0], 100) if len(mean) else "",
                     _ratio_interval(mce.iloc[0]) if len(mce) else "")
        console.print(grid)


def _ratio_interval(row: pd.Series) -> str:
    value, low, high = (float(row[k]) for k in ("value", "low", "high"))
    if math.isnan(value):
        return "n/a"

    def show(x: float) -> str:
        return "n/a" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.2f}")

    return f"{show(value)} [{show(low)}, {show(high)}]"


def _summary_interval(row: pd.Series, scale: float) -> str:
    value, low, high = (row[k] * scale for k in ("value", "low", "high"))
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def _critical(row: pd.Series, largest: float) -> str:
    """Median critical magnitude; +inf (most digits never flip) shows as ">largest"."""

    def show(x: float) -> str:
        if math.isnan(x):
            return "n/a"
        return f">{largest:g}" if math.isinf(x) else f"{x:.3g}"

    value, low, high = row["value"], row["low"], row["high"]
    if math.isinf(value) and math.isinf(low):
        return show(value)
    return f"{show(value)} [{show(low)}, {show(high)}]"


# ------------------------------------------------------------------- a comparison's ranking


def ranking_frame(comparison: Comparison) -> pd.DataFrame:
    """The ranking as a flat table (lists joined with ";"), for CSV."""
    table = ranking_records(comparison)
    for column in ("beats", "beaten_by", "tied_with", "crossing"):
        table[column] = table[column].map(";".join)
    return table


def ranking_records(comparison: Comparison) -> pd.DataFrame:
    """The comparison's ranking; with MNIST-C corruptions, then the ranking by mCE.

    The mCE ranking's rows have ``family`` :data:`robust_mnist.benchmark_metrics.BENCHMARK`
    and the columns ``mce``, ``mean_error`` (with ``_low``, ``_high``) that only they fill;
    a comparison without MNIST-C corruptions gives :attr:`Comparison.ranking` as it is.
    """
    by_mce = comparison.mnist_c_ranking
    if by_mce is None:
        return comparison.ranking.copy()
    n_digits = comparison.mnist_c.models.set_index("model")["n_digits"]
    extra = by_mce.assign(family=BENCHMARK, n_digits=by_mce["model"].map(n_digits).astype("int64"),
                          crossing=[[] for _ in range(len(by_mce))])
    columns = list(comparison.ranking.columns) + [c for c in by_mce.columns if c not in comparison.ranking.columns]
    extra = extra.reindex(columns=columns)
    return pd.concat([comparison.ranking.reindex(columns=columns), extra], ignore_index=True)


def write_ranking(comparison: Comparison, fmt: str, file: IO[str]) -> None:
    """Write a comparison's ranking to ``file`` as a table, CSV or JSON (``fmt``, see :data:`FORMATS`).

    Raises
    ------
    InvalidArgumentError
        On an unknown format.
    """
    _check_format(fmt)
    if fmt == "csv":
        ranking_frame(comparison).to_csv(file, index=False)
    elif fmt == "json":
        records = ranking_records(comparison).to_dict(orient="records")
        file.write(json.dumps([{k: _plain(v) for k, v in r.items()} for r in records], indent=1) + "\n")
    else:
        _ranking_table(comparison, file)
        if comparison.mnist_c_ranking is not None:
            _mnist_c_ranking_table(comparison, file)


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to null, infinities to "inf"."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _ranking_table(comparison: Comparison, file: IO[str]) -> None:
    """Draw the ranking with rich: one block of rows per family."""
    console = Console(file=file, width=RANKING_WIDTH if not file.isatty() else min(RANKING_WIDTH, Console().width))
    grid = Table(
        title=f"{escape(comparison.name)}: {len(comparison.models)} model{'s' if len(comparison.models) != 1 else ''} compared",
        caption=escape(f"Ordered by accuracy averaged over the family's magnitudes (95% bootstrap "
        "intervals over digits). = shared rank: no significant difference at any magnitude (McNemar "
        f"exact, Holm across the family's magnitudes, alpha {comparison.alpha:g}). beats: every "
        "significant difference favours the model."),
        box=box.SIMPLE_HEAD, padding=(0, 1),
    )
    grid.add_column("family", no_wrap=True, max_width=18, overflow="ellipsis")
    grid.add_column("rank", justify="right", no_wrap=True)
    grid.add_column("model", no_wrap=True, max_width=24, overflow="ellipsis")
    grid.add_column("accuracy %", no_wrap=True, min_width=18)
    grid.add_column("mean swing", no_wrap=True, min_width=18)
    grid.add_column("beats", overflow="fold")
    for family, rows in comparison.ranking.groupby("family", sort=False):
        for number, (_, row) in enumerate(rows.iterrows()):
            grid.add_row(
                escape(family) if number == 0 else "",
                rank_text(row["rank"], row["tied"]),
                escape(str(row["model"])),
                _ranking_interval(row, "accuracy", 100, 1),
                _ranking_interval(row, "swing", 1, 3),
                escape(", ".join(row["beats"])) or "-",
            )
        grid.add_section()
    console.print(grid)


def _mnist_c_ranking_table(comparison: Comparison, file: IO[str]) -> None:
    """Draw the ranking by mCE with rich."""
    console = Console(file=file, width=RANKING_WIDTH if not file.isatty() else min(RANKING_WIDTH, Console().width))
    scores = comparison.mnist_c
    ranking = comparison.mnist_c_ranking
    grid = Table(
        title=escape(f"{comparison.name}: MNIST-C, models ranked by mCE"),
        caption=escape(f"mCE: mean over the {int(ranking['n_corruptions'].max())} corruptions of the error "
                       f"divided by the error of the reference model {scores.reference} (lower is more "
                       "robust); mean error: of the corrupted digits. 95% paired bootstrap intervals over "
                       "digits; = shared rank: the interval of the mCE difference includes 0."),
        box=box.SIMPLE_HEAD, padding=(0, 1),
    )
    grid.add_column("rank", justify="right", no_wrap=True)
    grid.add_column("model", no_wrap=True, max_width=24, overflow="ellipsis")
    grid.add_column("mCE", no_wrap=True, min_width=18)
    grid.add_column("mean error %", no_wrap=True, min_width=18)
    grid.add_column("beats", overflow="fold")
    for _, row in ranking.iterrows():
        grid.add_row(rank_text(row["rank"], row["tied"]), escape(str(row["model"])),
                     _ranking_interval(row, "mce", 1, 2), _ranking_interval(row, "mean_error", 100, 1),
                     escape(", ".join(row["beats"])) or "-")
    console.print(grid)


def _ranking_interval(row: pd.Series, metric: str, scale: float, digits: int) -> str:
    value = row[metric]
    if value is None or not math.isfinite(value):
        return "-"
    low, high = row[f"{metric}_low"] * scale, row[f"{metric}_high"] * scale
    return f"{value * scale:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
