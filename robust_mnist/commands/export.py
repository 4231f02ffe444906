"""``robust-mnist export``: export a Keras model of this tool to ONNX, checked on the test digits.

The work is :func:`robust_mnist.export.export_with_record` (the export, then its record beside
it); this module parses the arguments and prints where the export went and how closely it
reproduces the model.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a .keras model to ONNX, checked against the original on the test digits",
        description="Export a .keras model to ONNX (Keras's own export, through tf2onnx) and "
        "check the export with ONNX Runtime on the 10,000 MNIST test digits: the largest "
        "probability difference must be at most 1e-5 and every predicted digit the same. "
        "An export that fails the check is not written (exit status 1).",
    )
    parser.add_argument("model", metavar="MODEL.keras", help="the Keras model to export")
    parser.add_argument(
        "--out", metavar="MODEL.onnx", required=True, help="where to write the ONNX export",
    )
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load a model file this tool did not train (Keras files can run code; only "
        "for files whose source you trust)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_with_record, sidecar_path

    check = export_with_record(args.model, args.out, trust_model=args.trust_model)
    print(f"{check.onnx_path}: exported from {check.keras_path}")
    print(f"equivalence: {check.describe()}")
    print(f"record: {sidecar_path(check.onnx_path)}")
    return 0
