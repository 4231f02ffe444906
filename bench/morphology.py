"""Throughput of the stroke-morphology and morph perturbations, against the issue's targets.

    python bench/morphology.py [--n 10000] [--repeats 2]

Times, on the first ``n`` MNIST test digits (best of ``repeats`` runs):

- ``thin`` and ``thicken`` at 1 px through ``perturb`` (``sample_params``, which measures the
  thickness before and after, plus ``apply``), in images/s: in this process (two threads),
  and with the batch split over two single-threaded processes, as a process executor would
  run it (parts of the work hold the GIL, so threads overlap less);
- morph with ``method="flow"``: the target search (``sample_params``: nearest training digit
  of every class for each source, against all 60,000 after centring) in sources/s, the
  flow-field estimation in source-target pairs/s (with scikit-image's own optical-flow
  functions, called pair by pair on 200 pairs, for comparison), and ``apply`` at a further
  ``t`` once the fields are cached, in images/s.

One-time costs (loading and centring the target pool) are reported apart. The machine's
load average is printed first: other processes on these 2 cores slow every figure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from robust_mnist.data import load_mnist, to_float  # noqa: E402
from robust_mnist.perturbations import get, perturb  # noqa: E402
from robust_mnist.perturbations import morph as morph_module  # noqa: E402

TARGETS = {
    "thin 1 px (images/s)": 2_500,
    "thicken 1 px (images/s)": 2_500,
    "morph flow: field estimation (pairs/s)": 100,
    "morph flow: per extra t (images/s)": 10_000,
}


CPU_SECONDS: dict[str, float] = {}


def best_time(function, repeats: int, before=None, label: str | None = None) -> float:
    """Shortest wall-clock time of ``function()`` over ``repeats`` runs.

    With ``label``, also records the CPU time (all threads) of that fastest run.
    """
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start, cpu = time.perf_counter(), time.process_time()
        function()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, cpu = min(times)
    if label is not None:
        CPU_SECONDS[label] = cpu
    return wall


def _half_batch(job: tuple[str, int, int]) -> float:
    """In a worker process: perturb one half of the digits single-threaded; wall seconds."""
    from robust_mnist.perturbations import morphology

    name, part, n = job
    morphology._workers = lambda: 1  # one process per core: no threads on top
    images = to_float(load_mnist().x_test[:n])[part::2]
    perturb(name, images[:256], 1.0)  # warm up
    start = time.perf_counter()
    perturb(name, images, 1.0)
    return time.perf_counter() - start


def two_processes(name: str, n: int) -> float:
    """Images/s of ``name`` at 1 px with the batch split over two single-threaded processes."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        seconds = list(pool.map(_half_batch, [(name, 0, n), (name, 1, n)]))
    # Both halves run at the same time; the batch is done when the slower one is.
    return n / max(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="test digits (default 10000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure; the best counts")
    args = parser.parse_args(argv)

    mnist = load_mnist()
    images = to_float(mnist.x_test[: args.n])
    labels = mnist.y_test[: args.n].astype(np.int64)
    n = len(images)
    print(f"{n} MNIST test digits; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")

    results: dict[str, float] = {}
    for name in ("thin", "thicken"):
        label = f"{name} 1 px (images/s)"
        seconds = best_time(lambda: perturb(name, images, 1.0), args.repeats, label=label)
        results[label] = n / seconds
        results[f"  ({name}, one process per core: images/s)"] = two_processes(name, n)

    family = get("morph", method="flow")
    start = time.perf_counter()
    pool = family.pool
    pool._search_arrays()
    print(f"one-time: load and centre the 60,000-digit target pool: {time.perf_counter() - start:.1f} s")
    rng = np.random.default_rng(0)
    params = {}

    def search():
        params.update(family.sample_params(n, 0.5, rng, images=images, labels=labels))

    seconds = best_time(search, args.repeats)
    results["morph: target search (sources/s)"] = n / seconds
    targets = pool.digits(params["target_index"])
    seconds = best_time(lambda: morph_module.estimate_flow(images, targets), args.repeats)
    results["morph flow: field estimation (pairs/s)"] = n / seconds
    # The alternatives weighed for the fields, called pair by pair as scikit-image offers them.
    from skimage.registration import optical_flow_ilk, optical_flow_tvl1

    few = min(n, 200)
    for label, flow in (("ilk", optical_flow_ilk), ("tvl1", optical_flow_tvl1)):
        seconds = best_time(lambda: [flow(images[i], targets[i]) for i in range(few)], 1)
        results[f"  (skimage optical_flow_{label}, pair by pair: pairs/s)"] = few / seconds
    seconds = best_time(lambda: family.apply(images, params), 1, before=morph_module._FIELDS.clear)
    results["morph flow: first t, fields included (images/s)"] = n / seconds
    later = dict(params, t=np.full(n, 0.3))
    seconds = best_time(lambda: family.apply(images, later), args.repeats)
    results["morph flow: per extra t (images/s)"] = n / seconds
    crossfade = get("morph", method="crossfade")
    seconds = best_time(lambda: crossfade.apply(images, later), args.repeats)
    results["morph crossfade: apply (images/s)"] = n / seconds

    width = max(map(len, results))
    print(f"{'':{width}}  {'measured':>10}  {'target':>8}  {'ratio':>6}")
    for label, value in results.items():
        target = TARGETS.get(label)
        tail = f"{target:>8,}  {value / target:>6.2f}" if target else ""
        print(f"{label:{width}}  {value:>10,.0f}  {tail}")
    # CPU time leaves out the time other processes held the cores: on a shared machine it
    # is the steadier figure to compare between runs.
    for label, cpu in CPU_SECONDS.items():
        print(f"{label.split(' (')[0]}: {1e3 * cpu / n:.2f} ms of CPU per image (both threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
