"""``robust-mnist summary RUN_DIR``: the run's summary table, again or exported.

Per model and family: clean accuracy, accuracy at each magnitude, flip rate and median
critical magnitude, each with its 95% bootstrap interval over digits
(:func:`robust_mnist.summary.write_summary`). ``--format csv|json`` exports the same tidy
table (one row per model, family, metric and magnitude) for other tools.
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
    from ..summary import write_summary

    write_summary(args.run_dir, args.format, sys.stdout)
    return 0
