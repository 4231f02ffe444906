"""``robust-mnist perturb``: a contact sheet of one digit under one family at several magnitudes."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from ..cli import UserError


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
        help="a .keras model (default: the article model, trained once if missing)",
    )
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load a --model file this tool did not train (Keras files can run code; only "
        "for files whose source you trust)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--options", metavar="JSON", default="{}",
        help='family options as a JSON object, e.g. \'{"shape": "patch"}\' for occlude',
    )
    parser.set_defaults(func=run)


def classifier_for(model: str | None):
    """``(classifier, name)`` for ``--model``; the cached article model when it is None.

    Tests replace this function to use a numpy classifier instead of TensorFlow.
    """
    from .. import models

    path = Path(model) if model else models.ensure_model("article", 0)
    return models.load_classifier(path), path.name


def load_source(source: str) -> tuple[np.ndarray, int | None, str]:
    """``(image (1, 28, 28) float32, true label or None, short name)`` of IMAGE_OR_INDEX."""
    if re.fullmatch(r"\d+", source):
        from ..data import load_mnist, to_float

        mnist = load_mnist()
        index = int(source)
        if index >= len(mnist.x_test):
            raise UserError(f"MNIST test index {index} out of range [0, {len(mnist.x_test) - 1}]")
        return to_float(mnist.x_test[index : index + 1]), int(mnist.y_test[index]), f"mnist-test-{index}"
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: neither an MNIST test index nor an existing image file")
    from ..preprocess import load_digit

    return load_digit(path)[None].astype(np.float32), None, path.stem


def contact_sheet(images: np.ndarray, titles: list[str], flipped: list[bool], heading: str):
    """A grid of digits, upscaled with nearest-neighbour pixels, one title under each.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
    titles : list of str
    flipped : list of bool
        Titles drawn in red (the prediction differs from the reference digit).
    heading : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    columns = min(len(images), 9)
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(1.7 * columns, 2.0 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, title, red in zip(axes, images, titles, flipped):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9, color="tab:red" if red else "black")
    figure.suptitle(heading, fontsize=10)
    return figure


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..perturbations import get

    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as error:
        raise UserError(f"--options is not valid JSON ({error})") from None
    if not isinstance(options, dict):
        raise UserError(f"--options must be a JSON object; got {args.options}")
    perturbation = get(args.family, **options)
    magnitudes = list(args.magnitudes if args.magnitudes else perturbation.default_magnitudes)
    magnitudes = [perturbation.check_magnitude(m) for m in magnitudes]
    image, label, source_name = load_source(args.source)
    if args.model:  # as in predict and study: a foreign model file needs --trust-model
        from .. import models

        models.check_trusted(args.model, args.trust_model)
    classifier, model_name = classifier_for(args.model)

    # The morph family needs the digit's class: the true one, or else what the model sees.
    reference = label if label is not None else int(classifier.predict_proba(image)[0].argmax())
    labels = np.array([reference])
    perturbed = []
    for magnitude in magnitudes:
        params = perturbation.sample_params(
            1, magnitude, np.random.default_rng(args.seed), images=image, labels=labels
        )
        perturbed.append(perturbation.apply(image, params)[0])
    perturbed = np.stack(perturbed)
    probabilities = classifier.predict_proba(perturbed)
    predictions = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(perturbed)), predictions]

    titles = [
        f"{m:g} {perturbation.unit}\npred {d}  p={p:.2f}"
        for m, d, p in zip(magnitudes, predictions, confidence)
    ]
    truth = f"label {label}" if label is not None else f"clean prediction {reference}"
    heading = f"{args.family} on {source_name} ({truth}); model {model_name}"
    figure = contact_sheet(perturbed, titles, list(predictions != reference), heading)
    out = Path(args.out) if args.out else Path(f"perturb-{args.family}-{source_name}.png")
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    figure.savefig(out, dpi=100)
    print(out)

    table = Table(title=f"{args.family} on {source_name} ({truth})")
    table.add_column(f"magnitude ({perturbation.unit})", justify="right")
    table.add_column("prediction", justify="right")
    table.add_column("probability", justify="right")
    table.add_column(f"p({reference})", justify="right")
    for m, d, p, row in zip(magnitudes, predictions, confidence, probabilities):
        table.add_row(f"{m:g}", str(d), f"{p:.3f}", f"{row[reference]:.3f}")
    Console(soft_wrap=False).print(table)
    return 0
