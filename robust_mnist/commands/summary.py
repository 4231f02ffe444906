"""``robust-mnist summary RUN_DIR``: the run's summary table, again or exported.

Per model and family: clean accuracy, accuracy at each magnitude, flip rate and median
critical magnitude, each with its 95% bootstrap interval over digits
(:func:`robust_mnist.metrics.summary_table`). ``--format csv|json`` exports the same tidy
table (one row per model, family, metric and magnitude) for other tools.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import IO, Any

FORMATS = ("table", "csv", "json")
#: The terminal table fits this many columns.
WIDTH = 100


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="print a finished (or unfinished) run's summary table",
        description="Print the summary table of a run directory (per family: clean accuracy, "
        "accuracy at each magnitude, flip rate, median critical magnitude, with 95% "
        "bootstrap intervals), or export it as CSV or JSON.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a directory written by `robust-mnist study`")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print_summary(args.run_dir, args.format)
    return 0


def summary_frame(run_dir: str | Path):
    """The summary table of a run, families in study order (a tidy DataFrame).

    Columns ``model, family, metric, magnitude, n_digits, value, low, high`` (see
    :func:`robust_mnist.metrics.summary_table`).
    """
    from ..metrics import summary_table
    from ..runner import load_refined, load_results, read_run_info

    info = read_run_info(run_dir)
    results = load_results(run_dir)
    if results.empty:
        raise ValueError(f"{run_dir}: the run has no results yet")
    table = summary_table(results, seed=int(info.get("seed", 0)), refined=load_refined(run_dir))
    model_order = {name: i for i, name in enumerate(info.get("models", {}))}
    family_order = {name: i for i, name in enumerate(info.get("families", {}))}
    metric_order = {"clean_accuracy": 0, "accuracy": 1, "flip_rate": 2, "critical_magnitude": 3}
    keys = table.assign(
        _model=table["model"].map(model_order).fillna(len(model_order)),
        _family=table["family"].map(family_order).fillna(len(family_order)),
        _metric=table["metric"].map(metric_order).fillna(len(metric_order)),
    )
    keys = keys.sort_values(["_model", "_family", "_metric", "magnitude"], kind="stable")
    return keys.drop(columns=["_model", "_family", "_metric"]).reset_index(drop=True)


def print_summary(run_dir: str | Path, fmt: str = "table", file: IO[str] | None = None) -> None:
    """Print the summary of a run to ``file`` (stdout) as a table, CSV or JSON."""
    from ..runner import read_run_info

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    file = sys.stdout if file is None else file
    table = summary_frame(run_dir)
    if fmt == "csv":
        table.to_csv(file, index=False)
    elif fmt == "json":
        file.write(table.to_json(orient="records", indent=1) + "\n")
    else:
        render_table(table, read_run_info(run_dir), file)


def render_table(table, info: dict[str, Any], file: IO[str]) -> None:
    """Draw the summary with rich: one table per model, one block of rows per family."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=WIDTH if not file.isatty() else min(WIDTH, Console().width))
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
                _interval(flip.iloc[0], 100) if len(flip) else "",
                _critical(critical.iloc[0], largest) if len(critical) else "",
            ]
            names = [family, f"[dim]{about.get('unit', '')}[/dim]"]
            lines = [("clean", row) for _, row in part[part["metric"] == "clean_accuracy"].iterrows()]
            lines += [(f"{row['magnitude']:g}", row) for _, row in part[part["metric"] == "accuracy"].iterrows()]
            for number, (magnitude, row) in enumerate(lines):
                grid.add_row(
                    names[number] if number < len(names) else "",
                    magnitude,
                    _interval(row, 100),
                    *(first_row if number == 0 else ["", ""]),
                )
            grid.add_section()
        console.print(grid)


def _interval(row, scale: float) -> str:
    value, low, high = (row[k] * scale for k in ("value", "low", "high"))
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def _critical(row, largest: float) -> str:
    """Median critical magnitude; +inf (most digits never flip) shows as ">largest"."""

    def show(x: float) -> str:
        if math.isnan(x):
            return "n/a"
        return f">{largest:g}" if math.isinf(x) else f"{x:.3g}"

    value, low, high = row["value"], row["low"], row["high"]
    if math.isinf(value) and math.isinf(low):
        return show(value)
    return f"{show(value)} [{show(low)}, {show(high)}]"
