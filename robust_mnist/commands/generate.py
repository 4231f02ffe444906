"""``robust-mnist generate mnist-c --out DIR``: write the MNIST-C dataset offline.

Writes MNIST-C's published layout (``<corruption>/{train,test}_{images,labels}.npy``) from the
bundled MNIST with :func:`robust_mnist.mnist_c.generate_mnist_c`, seeded and reproducible, with
a progress bar on stderr. Run again after an interruption, it finishes what is missing and
ends with the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .arguments import non_negative_int, positive_int

#: Datasets this command writes.
DATASETS = ("mnist-c",)
#: MNIST-C's folders (those of :data:`robust_mnist.mnist_c.CORRUPTIONS` and identity, which
#: is not imported here so that ``--help`` stays fast; a test checks they agree).
CORRUPTIONS = (
    "identity", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
    "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write a dataset offline (mnist-c: the MNIST-C benchmark's files)",
        description="Write MNIST-C in its published layout (one folder per corruption with "
        "train_images.npy (60000, 28, 28, 1) uint8, train_labels.npy, test_images.npy, "
        "test_labels.npy) from the bundled MNIST, each corruption at the severity of the "
        "published set; seeded and reproducible, and resumable: run it again after an "
        "interruption to finish.",
    )
    parser.add_argument("dataset", choices=DATASETS, help="the dataset to write")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the dataset folder")
    parser.add_argument("--corruptions", nargs="+", choices=CORRUPTIONS, metavar="NAME",
                        help="only these folders (default: identity and the 15 corruptions): "
                        + ", ".join(CORRUPTIONS))
    parser.add_argument("--splits", nargs="+", choices=("train", "test"), default=["train", "test"],
                        help="which splits (default: both)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="only the first N digits of each split (a quick look; default all)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="the seed every corruption derives from (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..mnist_c import generate_mnist_c

    started = time.perf_counter()
    bar = None if args.quiet else _Bar()
    try:
        out = generate_mnist_c(args.out, args.corruptions, n=args.limit, splits=args.splits, seed=args.seed,
                               progress=bar)
    finally:
        if bar is not None:
            bar.stop()
    print(f"mnist-c: {out} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    print(out)
    return 0


class _Bar:
    """A rich progress bar on stderr, fed by :class:`robust_mnist.mnist_c.GenerationProgress`."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description:<22.22}"), BarColumn(bar_width=24), TaskProgressColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True))
        self.task = None

    def __call__(self, event) -> None:
        if self.task is None:
            self.task = self.bar.add_task("", total=event.total)
            self.bar.start()
        description = f"{event.corruption} {event.split}" + (" (done)" if event.skipped else "")
        self.bar.update(self.task, completed=event.done, description=description)

    def stop(self) -> None:
        if self.task is not None:
            self.bar.stop()
