"""Benchmark ``robust-mnist explore`` against a running server: slider round trips and a full sweep.

The bench starts the explorer itself on a free loopback port (in a thread of this process,
Uvicorn as the command runs it) with two models: the article CNN (``article`` seed 0: bundled,
or your retrained copy) and a second one, ``mlp`` if you trained it into the cache, else the
article's cached ONNX export (ONNX Runtime); ``--fake`` uses two numpy template models
instead. Then, as the page does, over one keep-alive HTTP connection:

- slider round trip: 200 ``POST /api/predict`` requests (request sent to JSON parsed), the
  rotation slider stepping through -60..60 degrees on an MNIST test digit, after a warm-up;
  p50 and p95. Target (issue 14): p95 under 50 ms.
- full sweep: ``POST /api/sweep``, every slider family's grid on one digit in one batch with
  both models; the median of ``--sweeps`` runs. Target: under 1 s.

Usage::

    python bench/explore.py
    python bench/explore.py --fake          # without TensorFlow: two numpy models
    python bench/explore.py --json
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import time
from urllib.parse import urlparse

import numpy as np

from robust_mnist import models
from robust_mnist.classifier import TemplateClassifier
from robust_mnist.data import load_mnist, to_float
from robust_mnist.explore.server import Explorer
from robust_mnist.explore.session import ExploreModel, ExploreSession, load_models


def bench_models(fake: bool) -> list:
    if fake:
        mnist = load_mnist()
        template = TemplateClassifier.fit(to_float(mnist.x_train[:10_000]), mnist.y_train[:10_000])
        return [("template", template), ("template-sharp", TemplateClassifier(template.templates, 600.0))]
    article = load_models(archs=["article"])
    if models.model_path("mlp", 0).is_file():
        return article + load_models(archs=["mlp"])
    onnx = load_models(archs=["article"], engine="onnx")[0]
    return article + [ExploreModel("article-onnx", onnx.classifier, onnx.source)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="two numpy template models (no TensorFlow)")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--index", type=int, default=0, help="MNIST test digit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    session = ExploreSession(bench_models(args.fake), digits_dir="/nonexistent-bench-digits")
    session.warm_up()
    explorer = Explorer(session, "127.0.0.1", 0).start()
    url = urlparse(explorer.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.connect()
    # As browsers do: no Nagle delay on the client's side of the connection.
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    digit, label = session.mnist_digit(args.index)

    def post(path: str, body: dict) -> dict:
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        payload = json.loads(reply.read())
        if reply.status != 200:
            raise RuntimeError(f"{path}: {reply.status} {payload}")
        return payload

    try:
        pixels = [float(v) for v in digit.ravel()]
        angles = np.linspace(-60, 60, args.updates)
        for angle in angles[:20]:  # warm-up: connection, TensorFlow's traces
            post("/api/predict", {"digit": pixels, "settings": {"rotate": float(angle)}, "label": label})
        round_trips, server_times = [], []
        for angle in angles:
            started = time.perf_counter()
            reply = post("/api/predict", {"digit": pixels, "settings": {"rotate": round(float(angle), 1)}, "label": label})
            round_trips.append(1000 * (time.perf_counter() - started))
            server_times.append(reply["milliseconds"])
        sweeps = []
        for _ in range(args.sweeps):
            started = time.perf_counter()
            result = post("/api/sweep", {"digit": pixels, "label": label})
            sweeps.append(time.perf_counter() - started)
    finally:
        connection.close()
        explorer.stop()

    figures = {
        "models": [m.name for m in session.models],
        "updates": len(round_trips),
        "round_trip_ms_p50": float(np.percentile(round_trips, 50)),
        "round_trip_ms_p95": float(np.percentile(round_trips, 95)),
        "compute_ms_p50": float(np.percentile(server_times, 50)),
        "sweep_families": len(result["families"]),
        "sweep_images": sum(len(f["magnitudes"]) - 1 for f in result["families"]) + 1,
        "sweep_s_median": statistics.median(sweeps),
        "sweep_s_min": min(sweeps),
        "headline": result["headline"],
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"models: {', '.join(figures['models'])}")
    print(f"slider round trip over {figures['updates']} updates: p50 {figures['round_trip_ms_p50']:.1f} ms, "
          f"p95 {figures['round_trip_ms_p95']:.1f} ms (target p95 < 50 ms); "
          f"perturb + predict inside the server p50 {figures['compute_ms_p50']:.1f} ms")
    print(f"full sweep: {figures['sweep_families']} families, {figures['sweep_images']} digits per model: "
          f"median {figures['sweep_s_median']:.2f} s, best {figures['sweep_s_min']:.2f} s of {len(sweeps)} (target < 1 s)")
    print(f"headline: {figures['headline']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
