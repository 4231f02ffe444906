"""The flags that declare an ONNX model's input contract, shared by ``predict`` and ``perturb``.

``--input-layout``, ``--input-scale`` and ``--output`` say what the study file's
``input_layout``, ``input_scale`` and ``output`` keys say (:mod:`robust_mnist.onnx_model`):
how an ONNX ``--model`` wants its digits, where its graph does not tell. The allowed values
are spelled out here so that ``--help`` imports nothing (a test checks them against
:mod:`robust_mnist.onnx_model`).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

#: robust_mnist.onnx_model.LAYOUTS, SCALES and OUTPUTS.
LAYOUTS = ("nhwc", "nchw", "nhw", "flat")
SCALES = ("unit", "255", "mnist")
OUTPUTS = ("probabilities", "logits")


def add_contract_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--input-layout``, ``--input-scale`` and ``--output`` to ``parser``."""
    group = parser.add_argument_group(
        "ONNX models", "how an ONNX --model wants its digits, where its graph does not say "
        "(the study file's input_layout, input_scale and output keys)",
    )
    group.add_argument(
        "--input-layout", choices=LAYOUTS, metavar="LAYOUT",
        help="nhwc (N,28,28,1), nchw (N,1,28,28), nhw (N,28,28) or flat (N,784) "
        "(default: read from the graph's input shape)",
    )
    group.add_argument(
        "--input-scale", type=input_scale, metavar="SCALE",
        help="unit: pixels in [0, 1] (the default); 255: in [0, 255]; mnist: torchvision's "
        "(x - 0.1307) / 0.3081; or MEAN,STD for (x - MEAN) / STD on [0, 1] pixels",
    )
    group.add_argument(
        "--output", choices=OUTPUTS, metavar="OUTPUT",
        help="probabilities, or logits (softmax applied) (default: probabilities if the "
        "graph ends in Softmax or its outputs sum to 1, else logits)",
    )


def contract_of(args: argparse.Namespace) -> dict[str, Any]:
    """The declared contract of the parsed flags (None: not given, detect)."""
    return {"input_layout": args.input_layout, "input_scale": args.input_scale, "output": args.output}


def input_scale(text: str) -> str | dict[str, float]:
    """``--input-scale``: a named scale, or ``MEAN,STD`` as ``{"mean": ..., "std": ...}``."""
    if text in SCALES:
        return text
    parts = text.split(",")
    try:
        mean, std = (float(part) for part in parts)
    except ValueError:
        mean = std = math.nan
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(SCALES)} or MEAN,STD (std > 0); got {text!r}"
        )
    return {"mean": mean, "std": std}
