"""``robust-mnist compare RUN_DIR [RUN_DIR ...]``: rank the models of one or several runs.

Merges the models of runs of the same study (same digits, same perturbations: anything else
is refused: :func:`robust_mnist.compare.compare_runs`), prints the ranking per family with
significance-based ties (:func:`robust_mnist.summary.write_ranking`), and writes the comparison
report (:func:`robust_mnist.html.compare_report.write_comparison_report`). ``--format
csv|json`` exports the ranking table instead of drawing it; the report's path then goes to
stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: The choices of --format (those of :data:`robust_mnist.summary.FORMATS`, which is not
#: imported here so that ``--help`` stays fast).
FORMATS = ("table", "csv", "json")


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
    from ..compare import compare_runs
    from ..html.compare_report import write_comparison_report
    from ..summary import write_ranking

    comparison = compare_runs(args.run_dirs)
    write_ranking(comparison, args.format, sys.stdout)
    if not args.no_report:
        path = write_comparison_report(comparison, args.out)
        # With --format csv/json stdout is data: the path goes to stderr.
        print(f"report: {path}", file=sys.stdout if args.format == "table" else sys.stderr)
    return 0
