"""``robust-mnist perturb``: a contact sheet of one digit under one family at several magnitudes.

The work (perturbing, predicting, drawing) is :func:`robust_mnist.sheet.write_contact_sheet`;
this module parses the arguments and prints the sheet's path and a table of its predictions.
"""

from __future__ import annotations

import argparse
import json

from ..errors import InvalidArgumentError
from .contract_flags import add_contract_arguments, contract_of


class _FamilyNames:
    """The registered family names, looked up only when argparse needs them.

    Importing the perturbation registry loads SciPy and more; deferring it keeps
    ``robust-mnist --help`` and the other commands fast.
    """

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())

    @staticmethod
    def _names() -> list[str]:
        from ..perturbations import available

        return available()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "perturb",
        help="draw one digit under one perturbation family at several magnitudes, with predictions",
        description="Perturb one digit (an MNIST test digit or your own picture) at each "
        "magnitude and write a contact sheet PNG showing the perturbed digits with the "
        "model's predicted digit and its probability under each. Random families use the "
        "same draw (same --seed) at every magnitude, so the sheet shows one change growing.",
    )
    parser.add_argument(
        "source", metavar="IMAGE_OR_INDEX",
        help="an MNIST test-set index (0-9999) or a PNG/JPEG picture of one digit",
    )
    parser.add_argument(
        "--family", required=True, choices=_FamilyNames(), metavar="NAME",
        help="perturbation family, one of: %(choices)s (see `robust-mnist perturbations`)",
    )
    parser.add_argument(
        "--magnitudes", nargs="+", type=float, metavar="M",
        help="magnitudes in the family's unit (default: the family's default grid)",
    )
    parser.add_argument(
        "--out", metavar="SHEET.png",
        help="where to write the contact sheet (default: perturb-<family>-<digit>.png here)",
    )
    parser.add_argument(
        "--model", metavar="PATH",
        help="a .keras model, or an .onnx model run by ONNX Runtime (default: the article "
        "CNN that ships with robust-mnist, or your retrained copy)",
    )
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load a Keras --model file this tool did not train (Keras files can run code; "
        "only for files whose source you trust; ONNX files need no trust)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--options", metavar="JSON", default="{}",
        help='family options as a JSON object, e.g. \'{"shape": "patch"}\' for occlude',
    )
    add_contract_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..sheet import write_contact_sheet

    sheet = write_contact_sheet(
        args.source, args.family, args.magnitudes, options=parse_options(args.options),
        seed=args.seed, model=args.model, trust_model=args.trust_model,
        contract=contract_of(args), out=args.out,
    )
    print(sheet.path)
    table = Table(title=f"{sheet.family} on {sheet.source_name} ({sheet.truth})")
    table.add_column(f"magnitude ({sheet.unit})", justify="right")
    table.add_column("prediction", justify="right")
    table.add_column("probability", justify="right")
    table.add_column(f"p({sheet.reference})", justify="right")
    for m, d, p, row in zip(sheet.magnitudes, sheet.predictions, sheet.confidence, sheet.probabilities):
        table.add_row(f"{m:g}", str(d), f"{p:.3f}", f"{row[sheet.reference]:.3f}")
    Console(soft_wrap=False).print(table)
    return 0


def parse_options(text: str) -> dict:
    """The ``--options`` JSON object, or an InvalidArgumentError saying what is wrong."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(f"--options is not valid JSON ({error})") from None
    if not isinstance(options, dict):
        raise InvalidArgumentError(f"--options must be a JSON object; got {text}")
    return options
