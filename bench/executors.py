"""Benchmark the executors: throughput of one fixed study slice on serial, process and Dask.

The slice: ``--digits`` MNIST test digits (class-stratified), rotate at 6 angles and Gaussian
noise at 2 levels with 2 draws (10 perturbed cells), one model. Throughput is perturbed digit
evaluations per second over the whole ``run_study`` call minus the clean cell, so it includes
what a user waits for: spawning workers, importing TensorFlow and loading the model in each,
and sending the digits. Every run's table is checked against the serial one.

Usage::

    python bench/executors.py                      # article model (bundled, or your retrained copy)
    python bench/executors.py --model template     # numpy model: no TensorFlow anywhere
    python bench/executors.py --digits 4000 --workers 1 2 4

On a 2-core machine, serial is expected to be fastest: TensorFlow already uses both cores in
one process, and every worker pays its own start-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from robust_mnist.runner.cells import Progress  # noqa: E402
from robust_mnist.runner.executors import DaskExecutor, ProcessExecutor  # noqa: E402
from robust_mnist.runner.inputs import LoadedModel, load_model  # noqa: E402
from robust_mnist.runner.run import run_study  # noqa: E402
from robust_mnist.study import parse_study  # noqa: E402


def slice_study(digits: int) -> dict:
    return {
        "name": "bench-executors",
        "seed": 0,
        "models": [{"arch": "article", "seed": 0}],
        "data": {"source": "mnist-test", "n": digits},
        "perturbations": [
            {"family": "rotate", "magnitudes": [-45, -30, -15, 15, 30, 45]},
            {"family": "gaussian_noise", "magnitudes": [0.2, 0.4], "draws": 2},
        ],
    }


def template_loader():
    """Serve the numpy TemplateClassifier (sent to workers as a pickled object)."""
    from robust_mnist.classifier import TemplateClassifier
    from robust_mnist.data import load_mnist, to_float

    mnist = load_mnist()
    classifier = TemplateClassifier.fit(to_float(mnist.x_train[:10_000]), mnist.y_train[:10_000])

    def load(model):
        return LoadedModel(classifier, {"arch": "template", "seed": 0, "path": None,
                                               "checksum": "template", "training": None})

    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=int, default=2000, help="digits in the slice (default 2000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--model", choices=("article", "template"), default="article")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args(argv)

    spec = parse_study(slice_study(args.digits))
    loader = template_loader() if args.model == "template" else load_model
    loader(spec.models[0])  # load (or, if neither cached nor bundled, train) once, outside the timings
    evaluations = 10 * args.digits
    candidates = [("serial", None)]
    for workers in args.workers:
        candidates.append((f"process x{workers}", ProcessExecutor(workers)))
        if not args.skip_dask:
            candidates.append((f"dask x{workers}", DaskExecutor(workers=workers)))

    results, reference = [], None
    with tempfile.TemporaryDirectory() as folder:
        for name, executor in candidates:
            progress = CleanTimer()
            started = time.perf_counter()
            outcome = run_study(spec, Path(folder) / name.replace(" ", "-"), model_loader=loader,
                                       executor=executor, progress=progress)
            seconds = time.perf_counter() - started - progress.clean_seconds
            table = pd.read_parquet(outcome.run_dir / "results.parquet")
            if reference is None:
                reference = table
            same = table.equals(reference)
            close = same or bool(
                (table[["pred"]].to_numpy() == reference[["pred"]].to_numpy()).all()
                and abs(table["p_true"].to_numpy() - reference["p_true"].to_numpy()).max() < 1e-5
            )
            results.append((name, seconds, evaluations / seconds, same, close))
            print(f"{name:>12}: {evaluations / seconds:9,.0f} digits/s  ({seconds:6.2f} s)  "
                  f"table {'identical' if same else 'within 1e-5' if close else 'DIFFERENT'}",
                  file=sys.stderr)

    serial_rate = results[0][2]
    print(f"executor throughput, model {args.model}, {args.digits} digits x 10 perturbed cells "
          f"= {evaluations:,} evaluations (wall time incl. worker start-up, clean cell excluded)")
    print(f"{'executor':>12}  {'digits/s':>10}  {'seconds':>8}  {'vs serial':>9}  table")
    for name, seconds, rate, same, close in results:
        verdict = "identical" if same else ("within 1e-5" if close else "DIFFERENT")
        print(f"{name:>12}  {rate:10,.0f}  {seconds:8.2f}  {rate / serial_rate:9.2f}  {verdict}")
    return 0 if all(close for *_, close in results) else 1


class CleanTimer(Progress):
    """Measures the clean cell (computed by the client whatever the executor)."""

    def __init__(self) -> None:
        self.clean_seconds = 0.0
        self._started = None

    def cell_started(self, cell, evaluations: int) -> None:
        if cell.label == "clean":
            self._started = time.perf_counter()

    def cell_finished(self, cell) -> None:
        if cell.label == "clean" and self._started is not None:
            self.clean_seconds = time.perf_counter() - self._started


if __name__ == "__main__":
    sys.exit(main())
