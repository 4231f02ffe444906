"""The ``robust-mnist`` command: a thin shell that parses arguments and calls the library.

Each subcommand lives in :mod:`robust_mnist.commands` as a module with ``add_parser(sub)``
that registers its parser and sets ``func(args) -> int``. Results go to stdout, progress and
logs to stderr. Exit status: 0 success, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Subcommand modules under robust_mnist.commands, in the order --help lists them.
COMMANDS = ("train", "predict", "perturbations", "perturb", "study", "summary", "report", "compare")


class UserError(Exception):
    """A failure the user can fix, reported as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-mnist",
        description="Measure how unstable a digit classifier's probabilities are under "
        "controlled perturbations of its input digits.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"robust_mnist.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("robust-mnist: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, OSError) as error:
        # Library code raises ValueError/OSError subclasses whose message already names the
        # file and the problem; a traceback would only bury it.
        if args.verbose:
            raise
        print(f"robust-mnist: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
