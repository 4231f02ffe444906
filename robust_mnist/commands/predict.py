"""``robust-mnist predict``: classify the user's own digit pictures, as in the article."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .. import models

#: Bar heights for probabilities 0, 1/8, ..., 1.
BLOCKS = " ▁▂▃▄▅▆▇█"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict the digit in your own PNG/JPEG pictures",
        description="Preprocess pictures of handwritten digits the way MNIST was made (ink "
        "made bright, cropped, longer side 20 px, centred by mass in 28x28) and print the "
        "predicted digit and the ten probabilities per picture.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="IMAGE_OR_DIR",
        help="PNG or JPEG files, or folders of them (dark ink on light paper or the reverse)",
    )
    parser.add_argument(
        "--model", metavar="PATH",
        help="a trained .keras model (default: the article model, trained once if missing)",
    )
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load a --model file this tool did not train (Keras files can run code; only "
        "for files whose source you trust)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help='print one JSON object per line: {"file", "prediction", "probabilities"}',
    )
    parser.add_argument(
        "--save-preprocessed", metavar="DIR",
        help="write the 28x28 image the model saw for each input as a PNG into DIR",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..preprocess import load_digits

    if args.model:
        # Before any work: a foreign model file is refused unless explicitly trusted.
        models.check_trusted(args.model, args.trust_model)
    images, names, errors = load_digits(args.paths)
    for _, message in errors:
        print(f"robust-mnist: error: {message}", file=sys.stderr)
    if not names:
        return 1

    if args.save_preprocessed:
        save_preprocessed(images, names, Path(args.save_preprocessed))
    path = Path(args.model) if args.model else models.ensure_model("article", 0)
    probabilities = models.load_classifier(path).predict_proba(images)
    for name, row in zip(names, probabilities):
        if args.json:
            print(json.dumps({
                "file": name,
                "prediction": int(np.argmax(row)),
                "probabilities": [float(p) for p in row],
            }))
        else:
            print(format_line(name, row))
    return 1 if errors else 0


def format_line(name: str, probabilities: np.ndarray) -> str:
    """One human-readable line: file, predicted digit, a bar per digit, the probabilities."""
    bars = "".join(
        f"{digit}{BLOCKS[int(round(float(p) * 8))]}" for digit, p in enumerate(probabilities)
    )
    values = " ".join(f"{float(p):.3f}" for p in probabilities)
    return f"{name}: {int(np.argmax(probabilities))}  {bars}  [{values}]"


def save_preprocessed(images: np.ndarray, names: list[str], folder: Path) -> list[Path]:
    """Write each (28, 28) image as an 8-bit PNG named after its input file's stem."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for image, name in zip(images, names):
        stem, count = Path(name).stem, 1
        candidate = stem
        while candidate in used:  # photo.png and photo.jpg must not overwrite each other
            count += 1
            candidate = f"{stem}-{count}"
        used.add(candidate)
        target = folder / f"{candidate}.png"
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(target)
        written.append(target)
    return written
