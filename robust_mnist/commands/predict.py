"""``robust-mnist predict``: classify the user's own digit pictures, as in the article.

The work is :func:`robust_mnist.predictions.predict_files`; this module parses the arguments
and prints one line (or one JSON object) per picture.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .contract_flags import add_contract_arguments, contract_of

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
        help="a trained .keras model, or an .onnx model run by ONNX Runtime (default: the "
        "article CNN that ships with robust-mnist, or your retrained copy)",
    )
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load a Keras --model file this tool did not train (Keras files can run code; "
        "only for files whose source you trust; ONNX files need no trust)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help='print one JSON object per line: {"file", "prediction", "probabilities"}',
    )
    parser.add_argument(
        "--save-preprocessed", metavar="DIR",
        help="write the 28x28 image the model saw for each input as a PNG into DIR",
    )
    add_contract_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..predictions import predict_files

    result = predict_files(
        args.paths, model=args.model, trust_model=args.trust_model, contract=contract_of(args),
        save_preprocessed=args.save_preprocessed,
        on_unreadable=lambda message: print(f"robust-mnist: error: {message}", file=sys.stderr),
    )
    for name, row in zip(result.names, result.probabilities):
        if args.json:
            print(json.dumps({
                "file": name,
                "prediction": int(np.argmax(row)),
                "probabilities": [float(p) for p in row],
            }))
        else:
            print(format_line(name, row))
    return 1 if result.errors or not result.names else 0


def format_line(name: str, probabilities: np.ndarray) -> str:
    """One human-readable line: file, predicted digit, a bar per digit, the probabilities."""
    bars = "".join(
        f"{digit}{BLOCKS[int(round(float(p) * 8))]}" for digit, p in enumerate(probabilities)
    )
    values = " ".join(f"{float(p):.3f}" for p in probabilities)
    return f"{name}: {int(np.argmax(probabilities))}  {bars}  [{values}]"
