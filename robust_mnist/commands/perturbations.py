"""``robust-mnist perturbations``: list the registered perturbation families."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "perturbations",
        help="list the perturbation families with their unit, meaning and default magnitudes",
        description="List every registered perturbation family: the unit of its magnitude, "
        "what the magnitude means, its default magnitude grid and allowed range, and whether "
        "its realised parameters are random (so several draws per magnitude help).",
    )
    parser.set_defaults(func=run)


def _number(value: float) -> str:
    return f"{value:g}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..perturbations import available, family

    table = Table(title="Perturbation families", show_lines=False)
    table.add_column("family", no_wrap=True)
    table.add_column("unit")
    table.add_column("meaning", ratio=1, min_width=30)
    table.add_column("default magnitudes")
    table.add_column("range", no_wrap=True)
    table.add_column("random")
    for name in available():
        cls = family(name)
        low, high = cls.magnitude_range
        table.add_row(
            name,
            cls.unit,
            cls.description,
            " ".join(_number(m) for m in cls.default_magnitudes),
            f"[{_number(low)}, {_number(high)}]",
            "yes" if cls.random else "no",
        )
    console = Console()
    if not console.is_terminal:
        # Piped or redirected output gets rich's 80 columns, which folds every description.
        console = Console(width=140)
    console.print(table)
    return 0
