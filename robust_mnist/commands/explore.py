"""``robust-mnist explore``: a local page where you draw a digit and watch the probabilities swing.

The work is :func:`robust_mnist.explore.server.serve` (models loaded once, then a Starlette
app on Uvicorn, bound to 127.0.0.1 by default); this module parses the arguments, prints the
URL once the server listens, and opens the browser with ``--open``.
"""

from __future__ import annotations

import argparse
import sys
import webbrowser

DEFAULT_PORT = 8765


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explore",
        help="a local web page: draw a digit, push it, watch every model's probabilities",
        description="Start a local web server with one page: draw a digit (or upload a photo, "
        "or pick an MNIST test digit), see the 28x28 input each model gets and its ten "
        "probabilities, push the digit with one slider per perturbation family, and sweep "
        "every family to see where the prediction flips. Stop it with Ctrl-C.",
    )
    parser.add_argument(
        "--model", metavar="PATH", action="append", default=[],
        help="a .keras or .onnx model (repeat for several, shown side by side)",
    )
    parser.add_argument(
        "--arch", metavar="NAME", action="append", default=[],
        help="an architecture of seed 0, as bundled (or as you retrained it) (article, "
        "article-aug, mlp, lenet; repeatable). Default with neither: the article CNN",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; anything else "
        "exposes the page to the network)",
    )
    parser.add_argument(
        "--digits", metavar="DIR", default="studies/own_digits",
        help='where "Save this digit" writes <label>_<n>.png (default studies/own_digits/, '
        "which studies/own_digits.toml reads)",
    )
    parser.add_argument("--run", metavar="RUN_DIR", help='a study run: "surprise me" shows one of its most unstable digits')
    parser.add_argument("--engine", choices=("keras", "onnx"), default="keras",
                        help="run Keras models on TensorFlow (default) or on ONNX Runtime through their checked export")
    parser.add_argument("--trust-model", action="store_true",
                        help="load a Keras --model file this tool did not train (Keras files can run code)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..explore.server import serve

    def ready(url: str) -> None:
        print(f"robust-mnist explore: serving on {url} (Ctrl-C to stop)", flush=True)
        if args.open:
            webbrowser.open(url)

    if not 0 <= args.port <= 65535:
        print(f"robust-mnist: error: --port {args.port} is not a port number (0-65535)", file=sys.stderr)
        return 2
    serve(
        args.model, args.arch, host=args.host, port=args.port, digits_dir=args.digits,
        run_dir=args.run, engine=args.engine, trust_model=args.trust_model, on_ready=ready,
    )
    return 0
