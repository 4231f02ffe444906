"""``robust-mnist train``: train a registered architecture and save it with its record."""

from __future__ import annotations

import argparse

from .. import models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (the article's CNN by default) and save it as .keras",
        description="Train a registered architecture on MNIST and save the model (.keras) with "
        "a JSON training record beside it. Keras's progress goes to stderr; one summary "
        "line goes to stdout.",
    )
    parser.add_argument(
        "--arch", default="article", choices=models.architectures(),
        help="architecture to train (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--out", metavar="PATH.keras",
        help="where to save the model (default: the model cache, "
        "$ROBUST_MNIST_HOME/models/<arch>-seed<S>.keras)",
    )
    parser.add_argument(
        "--epochs", type=int, metavar="N",
        help="maximum number of epochs (default: the architecture's, 50 for article)",
    )
    parser.add_argument(
        "--data", metavar="NPZ",
        help="an MNIST npz in Keras's layout instead of the bundled copy",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out else models.model_path(args.arch, args.seed)
    record = models.train(args.arch, args.seed, out, data=args.data, epochs=args.epochs)
    print(
        f"{args.arch} seed {args.seed}: val_accuracy {record['val_accuracy']:.4f}  "
        f"val_loss {record['val_loss']:.4f}  stopped after epoch {record['stopped_epoch']}"
        f"/{record['max_epochs']}  test_accuracy {record['test_accuracy']:.4f}  "
        f"{record['wall_time_s']:.0f} s  -> {out}"
    )
    return 0
