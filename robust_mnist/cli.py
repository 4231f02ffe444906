"""The ``robust-mnist`` command: parse the subcommand, run it, and turn failures into exit codes.

Each subcommand lives in :mod:`robust_mnist.commands` as a module with ``add_parser(sub)``
that registers its parser and sets ``func(args) -> int``. Results go to stdout, progress and
logs to stderr. Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.

Failures a user can fix (a :class:`~robust_mnist.errors.RobustMnistError`, or an ``OSError``
on one of their files) are reported as one line; anything else is a bug and keeps its
traceback. ``-v`` shows the traceback of every failure, and TensorFlow's native start-up log.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .errors import RobustMnistError

#: Subcommand modules under robust_mnist.commands, in the order --help lists them.
COMMANDS = (
    "train", "predict", "perturbations", "perturb", "study", "summary", "report", "compare", "export", "generate", "explore",
)

PROG = "robust-mnist"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Measure how unstable a digit classifier's probabilities are under "
        "controlled perturbations of its input digits.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="log debugging detail to stderr, with tracebacks and TensorFlow's own log",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"robust_mnist.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Usage errors leave through argparse's ``SystemExit(2)``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        status = int(args.func(args) or 0)
        # Flush here, inside the try: a reader that went away (`| head`) must surface now,
        # not at interpreter exit where Python would print "Exception ignored ...".
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RobustMnistError as error:
        if args.verbose:
            raise
        _error_line(str(error))
        return 1
    except OSError as error:
        # An OSError naming a file is about the user's paths (permissions, a full disk, a
        # missing folder); one without a file name is unexpected and keeps its traceback.
        if args.verbose or error.filename is None:
            raise
        _error_line(describe_os_error(error))
        return 1


def describe_os_error(error: OSError) -> str:
    """``"<file>: <reason>"`` for an OSError about a file, as the shell's tools say it."""
    reason = error.strerror or str(error)
    if error.filename2 is not None:
        return f"{error.filename} -> {error.filename2}: {reason}"
    return f"{error.filename}: {reason}"


def _error_line(message: str) -> None:
    if "\n" in message:  # one line, even when a message quotes a multi-line detail
        message = " ".join(message.split())
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _stdout_closed() -> int:
    """End quietly when stdout's reader has gone (``robust-mnist summary RUN | head -1``).

    The recipe of the Python documentation (signal module, "Note on SIGPIPE"): point stdout
    at devnull so that the interpreter's final flush does not fail again, and exit 1, which
    is what Python itself does on EPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (captured by a test harness): nothing to redirect
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
