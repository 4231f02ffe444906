"""``robust-mnist compare RUN_DIR [RUN_DIR ...]``: rank the models of one or several runs.

Merges the models of runs of the same study (same digits, same perturbations: anything else
is refused), prints the ranking per family with significance-based ties, and writes the
comparison report (:func:`robust_mnist.compare.write_comparison_report`). ``--format
csv|json`` exports the ranking table instead of drawing it; the report's path then goes to
stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import IO

FORMATS = ("table", "csv", "json")
#: The terminal table fits this many columns.
WIDTH = 110


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare the models of one or several runs of the same study",
        description="Compare the models of one or several run directories of the same study "
        "(the same digits and perturbations): paired tests per family and magnitude "
        "(McNemar's exact test, Holm's correction), paired bootstrap intervals, error "
        "consistency and seed spread. Prints the ranking per family and writes an HTML report.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories written by `robust-mnist study`")
    parser.add_argument("--out", type=Path, metavar="REPORT.html",
                        help="the comparison report (default: reports/<study name>-compare.html)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="how to print the ranking: a table, or CSV/JSON for other tools (default: table)")
    parser.add_argument("--no-report", action="store_true", help="print the ranking only; write no HTML")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import compare_runs, write_comparison_report

    comparison = compare_runs(args.run_dirs)
    print_ranking(comparison, args.format)
    if not args.no_report:
        path = write_comparison_report(comparison, args.out)
        # With --format csv/json stdout is data: the path goes to stderr.
        print(f"report: {path}", file=sys.stdout if args.format == "table" else sys.stderr)
    return 0


def ranking_frame(comparison):
    """The ranking as a flat table (lists joined with ";"), for CSV."""
    table = comparison.ranking.copy()
    for column in ("beats", "beaten_by", "tied_with", "crossing"):
        table[column] = table[column].map(";".join)
    return table


def print_ranking(comparison, fmt: str = "table", file: IO[str] | None = None) -> None:
    """Print a comparison's ranking to ``file`` (stdout) as a table, CSV or JSON."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    file = sys.stdout if file is None else file
    if fmt == "csv":
        ranking_frame(comparison).to_csv(file, index=False)
    elif fmt == "json":
        records = comparison.ranking.to_dict(orient="records")
        file.write(json.dumps([{k: _plain(v) for k, v in r.items()} for r in records], indent=1) + "\n")
    else:
        render_table(comparison, file)


def _plain(value):
    """JSON-safe: numpy scalars to Python, NaN to null, infinities to "inf"."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def render_table(comparison, file: IO[str]) -> None:
    """Draw the ranking with rich: one block of rows per family."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file, width=WIDTH if not file.isatty() else min(WIDTH, Console().width))
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
                f"={row['rank']}" if row["tied"] else str(row["rank"]),
                escape(str(row["model"])),
                _interval(row, "accuracy", 100, 1),
                _interval(row, "swing", 1, 3),
                escape(", ".join(row["beats"])) or "-",
            )
        grid.add_section()
    console.print(grid)


def _interval(row, metric: str, scale: float, digits: int) -> str:
    value = row[metric]
    if value is None or not math.isfinite(value):
        return "-"
    low, high = row[f"{metric}_low"] * scale, row[f"{metric}_high"] * scale
    return f"{value * scale:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
