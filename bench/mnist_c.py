"""Time generating MNIST-C's published test set (15 corruptions of the 10,000 test digits).

Run from the repository root::

    python bench/mnist_c.py                      # all 10,000 test digits
    python bench/mnist_c.py --n 2000 --reference-n 100

Each of the 15 published corruptions is generated at MNIST-C's published magnitude
(``published_magnitude``): ``sample_params`` + ``apply``, what a study or the dataset
generator calls. Then, for a few corruptions that MNIST-C writes in NumPy (no Wand or
OpenCV), the per-image loop MNIST-C's own generator runs is re-written here (its steps, one
image at a time, drawing from a Generator instead of the global ``np.random``; the same
cost) and timed on ``--reference-n`` digits; the ratio is ours over theirs, in images per
second, measured side by side in this one run.

Wall-clock figures move with whatever else runs on the machine; the CPU column (images per
second of this process's CPU time) barely does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage.filters import gaussian

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robust_mnist.data import load_mnist, to_float  # noqa: E402
from robust_mnist.perturbations import get, published_magnitude  # noqa: E402
from robust_mnist.perturbations.mnistc import PUBLISHED  # noqa: E402


def timed(function, *args) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call ``function(*args)``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - start, time.process_time() - start_cpu


def generate(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    perturbation = get(name)
    params = perturbation.sample_params(
        len(images), published_magnitude(name), np.random.default_rng(seed)
    )
    return perturbation.apply(images, params)


# MNIST-C's per-image corruptions, as its generator runs them (x: one uint8 digit).


def reference_shot_noise(x, rng, c=3):
    x = np.array(x) / 255.0
    return (np.clip(rng.poisson(x * c) / float(c), 0, 1) * 255).astype(np.float32)


def reference_glass_blur(x, rng, c=(0.7, 1, 2)):
    x = np.uint8(gaussian(np.array(x) / 255.0, sigma=c[0], channel_axis=-1) * 255)
    for _ in range(c[2]):
        for h in range(28 - c[1], c[1], -1):
            for w in range(28 - c[1], c[1], -1):
                if rng.choice([True, False], 1)[0]:
                    dx, dy = rng.integers(-c[1], c[1], size=(2,))
                    h_prime, w_prime = h + dy, w + dx
                    x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return (np.clip(gaussian(x / 255.0, sigma=c[0], channel_axis=-1), 0, 1) * 255).astype(np.float32)


def plasma(rng, mapsize=256, wibbledecay=3.0):
    maparray = np.empty((mapsize, mapsize))
    maparray[0, 0] = 0
    stepsize, wibble = mapsize, 100.0

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squares = corners + np.roll(corners, shift=-1, axis=0)
        squares += np.roll(squares, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(squares)
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(top)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def reference_fog(x, rng, c=(3.0, 1.4)):
    x = np.array(x) / 255.0
    max_val = x.max()
    x = x + c[0] * plasma(rng, wibbledecay=c[1])[:28, :28]
    return (np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255).astype(np.float32)


def line_from_points(c0, r0, c1, r1):
    cc, rr = np.meshgrid(np.linspace(0, 27, 28), np.linspace(0, 27, 28), sparse=True)
    m = (r1 - r0) / (c1 - c0)
    dist = np.clip(np.abs(rr - (m * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    corruption = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    corruption[:, : int(np.floor(c0))] = 0
    corruption[:, int(np.ceil(c1)) :] = 0
    return corruption


def reference_dotted_line(x, rng):
    x = np.array(x) / 255.0
    r0, r1 = rng.integers(0, 27, size=2)
    corruption = line_from_points(0, r0, 27, r1)
    idx = np.arange(0, 30, 2)
    off = True
    for i in range(1, len(idx)):
        if off:
            corruption[:, idx[i - 1] : idx[i]] = 0
        off = not off
    return (np.clip(x + corruption, 0, 1) * 255).astype(np.float32)


def reference_stripe(x, rng):
    x = np.array(x).astype(np.float32)
    x[:, :7] = 255.0 - x[:, :7]
    x[:, 21:] = 255.0 - x[:, 21:]
    return x


#: (MNIST-C name, our family, per-image reference, digits it is timed on by default).
REFERENCES = (
    ("shot_noise", "shot_noise", reference_shot_noise, None),
    ("glass_blur", "glass_blur", reference_glass_blur, 200),
    ("fog", "fog", reference_fog, 500),
    ("dotted_line", "dotted_line", reference_dotted_line, None),
    ("stripe", "stripe", reference_stripe, None),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="test digits (default 10000)")
    parser.add_argument(
        "--reference-n",
        type=int,
        default=None,
        help="digits for MNIST-C's per-image loops (default: all, 200 for glass blur, 500 for fog)",
    )
    args = parser.parse_args()

    mnist = load_mnist()
    uint8 = mnist.x_test[: args.n]
    images = to_float(uint8)

    print(
        f"MNIST-C's published set: 15 corruptions of {len(images)} test digits, at the published magnitudes"
    )
    print(
        f"{'corruption':14s} {'family':18s} {'magnitude':>10s} {'seconds':>8s} {'images/s':>10s} {'per CPU-s':>10s}"
    )
    ours = {}
    total = total_cpu = 0.0
    for corruption, name in PUBLISHED:
        wall, cpu = timed(generate, name, images)
        ours[name] = len(images) / wall, len(images) / cpu
        total, total_cpu = total + wall, total_cpu + cpu
        print(
            f"{corruption:14s} {name:18s} {published_magnitude(name):10.4g} {wall:8.2f} {len(images) / wall:10,.0f} {len(images) / cpu:10,.0f}"
        )
    print(
        f"{'all 15':33s} {'':>10s} {total:8.2f} {15 * len(images) / total:10,.0f} {15 * len(images) / total_cpu:10,.0f}"
    )
    print(f"(target: under 60 s for all 15 on 2 cores; CPU time {total_cpu:.1f} s)")

    print()
    print("MNIST-C's own per-image loop (re-written here, same steps) against ours, images/s:")
    print(
        f"{'corruption':14s} {'digits':>7s} {'MNIST-C':>10s} {'ours':>10s} {'ratio':>8s} {'ratio CPU':>10s}"
    )
    rng = np.random.default_rng(0)
    for corruption, name, reference, default_n in REFERENCES:
        n = min(len(uint8), args.reference_n or default_n or len(uint8))
        wall, cpu = timed(
            lambda digits, corrupt: [corrupt(x, rng) for x in digits], uint8[:n], reference
        )
        rate, cpu_rate = ours[name]
        print(
            f"{corruption:14s} {n:7d} {n / wall:10,.0f} {rate:10,.0f} {rate / (n / wall):8.1f} {cpu_rate / (n / cpu):10.1f}"
        )


if __name__ == "__main__":
    main()
