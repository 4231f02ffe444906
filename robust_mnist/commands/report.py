"""``robust-mnist report RUN_DIR [--out REPORT.html]``: write the study's HTML report.

One self-contained file (plots and digits embedded, no network request), by default
``reports/<study name>.html``; the command prints its path. A large study's figures are drawn
by worker processes on the other cores (:func:`robust_mnist.html.study_report.figure_workers`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a run's self-contained HTML report",
        description="Write the HTML report of a run directory: severity curves with confidence "
        "bands, critical magnitudes, digit galleries with their probability bars, morphs, "
        "ambiguity and per-class tables. One self-contained file that opens offline.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a directory written by `robust-mnist study`")
    parser.add_argument("--out", type=Path, metavar="REPORT.html", default=None,
                        help="the HTML file to write (default: reports/<study name>.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..html.study_report import write_report

    print(write_report(args.run_dir, args.out, workers=None))
    return 0
