"""Throughput of every registered perturbation family, next to the article CNN's prediction.

Run from the repository root::

    python bench/perturbations.py            # 10,000 MNIST test digits, best of 3
    python bench/perturbations.py --n 2000 --repeats 5 --families rotate blur

Each family is timed for ``sample_params`` + ``apply`` (what the study runner calls) on the
digits at a mid magnitude of its default grid, best of ``--repeats``. The model is the
article model (``models.ensure_model("article", 0)``: the bundled one unless you retrained it;
throughput does not depend on the weights). Several ways of calling it
are timed and the fastest is the reference; it is measured before and after the families and
the best is kept, since other work on the machine makes single figures noisy.

The last column, images per CPU-second, is what single-threaded NumPy code would reach on an
idle core; the wall-clock figures move with whatever else runs on the machine.

Families too slow to finish ``--n`` digits in about ``--budget`` seconds are timed on fewer
digits (the ``digits`` column says how many).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robust_mnist.data import load_mnist, to_float  # noqa: E402
from robust_mnist.perturbations import available, family, get  # noqa: E402

#: Options for families that cannot run on their defaults.
OPTIONS = {
    "compose": {
        "steps": [
            {"family": "rotate", "magnitude": 30.0},
            {"family": "gaussian_noise", "magnitude": 0.2},
        ]
    },
}


def mid_magnitude(name: str) -> float:
    """The middle of the positive magnitudes of the default grid (or of |m| if none)."""
    grid = family(name).default_magnitudes
    positive = sorted(m for m in grid if m > 0) or sorted(abs(m) for m in grid if m != 0)
    return positive[len(positive) // 2]


def best_time(function, repeats: int) -> float:
    """Best wall-clock seconds of ``repeats`` calls."""
    return best_times(function, repeats)[0]


def best_times(function, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process CPU seconds of ``repeats`` calls.

    CPU time is barely affected by other processes competing for the cores, so for
    single-threaded NumPy code it estimates the wall time on an idle machine.
    """
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def time_family(name, images, labels, repeats, budget):
    perturbation = get(name, **OPTIONS.get(name, {}))
    magnitude = mid_magnitude(name)

    def run(batch, batch_labels):
        params = perturbation.sample_params(
            len(batch), magnitude, np.random.default_rng(0), images=batch, labels=batch_labels
        )
        return perturbation.apply(batch, params)

    probe = min(len(images), 500)
    estimate = best_time(lambda: run(images[:probe], labels[:probe]), 1) / probe
    n = int(min(len(images), max(probe, budget / max(estimate, 1e-9))))
    wall, cpu = best_times(lambda: run(images[:n], labels[:n]), repeats)
    return magnitude, n, n / wall, n / cpu


def model_throughputs(images, repeats):
    """``{method: images/s}`` for the article CNN on ``images``, and where the model came from."""
    import keras

    from robust_mnist import models

    path = models.ensure_model("article", 0)  # the user's retrained copy, else the bundled one
    if path.is_file():
        model, source = keras.saving.load_model(path), f"trained ({path})"
    else:
        model, _ = models.build_article()
        source = "untrained article architecture (no cached model)"
    batch = images[..., None]

    def call_in_batches(size):
        return lambda: [
            np.asarray(model(batch[i : i + size], training=False)) for i in range(0, len(batch), size)
        ]

    methods = {
        "model.predict(x, batch_size=1000)": lambda: model.predict(batch, batch_size=1000, verbose=0),
        "model.predict(x, batch_size=128)": lambda: model.predict(batch, batch_size=128, verbose=0),
        "model(x, training=False), batches of 1000": call_in_batches(1000),
        "model(x, training=False), batches of 5000": call_in_batches(5000),
        "KerasClassifier.predict_proba (the runner's path)": lambda: models.KerasClassifier(model).predict_proba(images),
    }
    rates = {}
    for label, method in methods.items():
        method()  # warm-up: tracing and graph building are not throughput
        rates[label] = len(images) / best_time(method, repeats)
    return rates, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="test digits (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per repeat before a family is timed on fewer digits")
    parser.add_argument("--families", nargs="+", default=None, help="only these families")
    parser.add_argument("--no-model", action="store_true", help="skip the TensorFlow model")
    args = parser.parse_args()

    mnist = load_mnist()
    images = to_float(mnist.x_test[: args.n])
    labels = mnist.y_test[: args.n].astype(np.int64)
    names = args.families or available()

    before = {} if args.no_model else model_throughputs(images, args.repeats)[0]
    results = {name: time_family(name, images, labels, args.repeats, args.budget) for name in names}
    if args.no_model:
        rates, source = {}, "skipped"
    else:
        rates, source = model_throughputs(images, args.repeats)
        rates = {label: max(rate, before[label]) for label, rate in rates.items()}

    print(f"{len(images)} MNIST test digits, best of {args.repeats}; model: {source}")
    for label, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"  model {label:52s} {rate:10,.0f} images/s")
    reference = max(rates.values()) if rates else float("nan")
    print()
    print(f"{'family':16s} {'magnitude':>10s} {'digits':>7s} {'images/s':>12s} {'/ model':>8s} {'per CPU-s':>12s}")
    for name, (magnitude, n, rate, cpu_rate) in results.items():
        print(
            f"{name:16s} {magnitude:10g} {n:7d} {rate:12,.0f} {rate / reference:8.2f} {cpu_rate:12,.0f}"
        )
    print(f"{'article CNN':16s} {'':>10s} {len(images):7d} {reference:12,.0f} {1.0:8.2f}")
    print("(images/s: wall clock; per CPU-s: images per second of this process's CPU time, which")
    print(" other load on the machine barely affects; the model, thin and thicken use both cores,")
    print(" the other families one)")


if __name__ == "__main__":
    main()
