"""Argument types the commands share: integers that must be positive, or not negative.

Each raises :class:`argparse.ArgumentTypeError`, which argparse prints as one line naming the
option.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative; got {text!r}")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
