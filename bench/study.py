"""Benchmark a study: pipeline throughput against the model's bare predict, and memory.

Runs a study (default studies/article.toml) into a temporary run directory and reports:

- the pipeline's throughput: digit evaluations (perturbed digits x models) per second over
  the cells, from the first cell to the last one written;
- the same model's bare ``predict_proba`` throughput on pre-generated inputs (the MNIST test
  digits, in the runner's blocks of ``MODEL_BATCH``), measured before and after the study in
  the same process, and the ratio of the two (target: at least 0.5);
- per family: evaluations per second (the slow families stand out);
- memory: peak RSS (``resource.getrusage``) of the run and with the summary, and the
  resident size after each cell: per family, and its growth while cells of one family
  repeat (families load one-time state such as morph's target pool, which is not growth);
- the time to consolidate results.parquet and exemplars.npz, and to compute the summary.

Usage::

    python bench/study.py                          # the full article study
    python bench/study.py --digits 2000            # a representative slice: 2,000 digits
    python bench/study.py --study studies/quick.toml --families rotate,thin
    python bench/study.py --json                   # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from robust_mnist.runner import DEFAULT_CHUNK_SIZE  # noqa: E402
from robust_mnist.runner.cells import MODEL_BATCH, Progress  # noqa: E402
from robust_mnist.runner.executors import PREFETCH_CELLS  # noqa: E402
from robust_mnist.runner.inputs import DEFAULT_ENGINE, ENGINES, load_model  # noqa: E402
from robust_mnist.runner.run import run_study  # noqa: E402
from robust_mnist.data import load_mnist, to_float  # noqa: E402
from robust_mnist.study import load_study  # noqa: E402


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder(Progress):
    """Times each cell and samples memory after it."""

    def __init__(self) -> None:
        self.first = self.last = None
        self.cell_start = None
        self.family_time: dict[str, float] = defaultdict(float)
        self.family_evaluations: dict[str, int] = defaultdict(int)
        self.memory: list[float] = []
        self.family_memory: dict[str, list[float]] = defaultdict(list)
        self.stages: dict[str, float] = {}
        self.current_stage = None

    def stage(self, text: str) -> None:
        now = time.perf_counter()
        if self.current_stage is not None:
            self.stages[self.current_stage[0]] = now - self.current_stage[1]
        self.current_stage = (text, now)

    def start(self, total: int, cells: int) -> None:
        self.first = self.cell_start = time.perf_counter()
        self.stage("cells")

    def cell_started(self, cell, evaluations: int) -> None:
        self.family_evaluations[cell.label] += evaluations

    def cell_finished(self, cell) -> None:
        now = time.perf_counter()
        self.family_time[cell.label] += now - self.cell_start
        self.cell_start = self.last = now
        self.memory.append(rss_mb())
        self.family_memory[cell.label].append(self.memory[-1])

    def finish(self) -> None:
        self.stage("done")


def bare_predict_rate(classifier, images: np.ndarray, repeats: int = 3) -> float:
    """Digits per second of predict_proba alone, in the runner's blocks (best of repeats)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(images), MODEL_BATCH):
            classifier.predict_proba(images[start : start + MODEL_BATCH])
        best = max(best, len(images) / (time.perf_counter() - started))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "article.toml")
    parser.add_argument("--digits", type=int, help="run on a class-stratified subset of this many digits")
    parser.add_argument("--families", help="comma-separated spec labels to keep (default: all)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                        help="what runs the Keras models (keras: TensorFlow; onnx: ONNX Runtime on the export)")
    parser.add_argument("--out", type=Path, help="run directory to keep (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)

    spec = load_study(args.study)
    if args.digits:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, n=args.digits))
        spec = dataclasses.replace(spec, perturbations=tuple(
            dataclasses.replace(p, n=None if p.n is None or p.n >= args.digits else p.n)
            for p in spec.perturbations
        ))
    if args.families:
        keep = args.families.split(",")
        spec = dataclasses.replace(spec, perturbations=tuple(p for p in spec.perturbations if p.label in keep))

    started = time.perf_counter()
    loaded = {model.name: load_model(model, engine=args.engine) for model in spec.models}
    load_seconds = time.perf_counter() - started
    memory_after_load = rss_mb()
    first = next(iter(loaded.values())).classifier
    inputs = to_float(load_mnist().x_test)
    first.predict_proba(inputs[:256])  # warm-up (graph tracing)
    bare_before = bare_predict_rate(first, inputs)

    recorder = Recorder()
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.out or Path(scratch) / "run"
        outcome = run_study(
            spec, run_dir, force=True, chunk_size=args.chunk_size,
            model_loader=lambda model: loaded[model.name], progress=recorder,
        )
        recorder.finish()
        peak_after_cells = peak_rss_mb()
        summary_started = time.perf_counter()
        from robust_mnist.summary import summary_frame

        summary_frame(run_dir)
        summary_seconds = time.perf_counter() - summary_started
        results_mb = (Path(run_dir) / "results.parquet").stat().st_size / 2**20
    bare_after = bare_predict_rate(first, inputs)

    cell_seconds = recorder.last - recorder.first
    evaluations = outcome.evaluations
    pipeline = evaluations / cell_seconds
    bare = (bare_before + bare_after) / 2
    memory = recorder.memory
    tenth = max(1, len(memory) // 10)
    figures = {
        "study": spec.name,
        "engine": args.engine,
        "digits": int(spec.data.n or 10_000),
        "models": len(spec.models),
        "cells": outcome.cells_computed,
        "evaluations": evaluations,
        "model_load_s": round(load_seconds, 2),
        "cells_s": round(cell_seconds, 2),
        "run_study_s": round(outcome.seconds, 2),
        "consolidate_s": round(recorder.stages.get("writing results.parquet", 0.0), 2),
        "exemplars_s": round(recorder.stages.get("writing exemplars.npz", 0.0), 2),
        "summary_s": round(summary_seconds, 2),
        "stages_s": {stage: round(seconds, 2) for stage, seconds in recorder.stages.items()},
        "pipeline_per_s": round(pipeline),
        "bare_predict_per_s_before": round(bare_before),
        "bare_predict_per_s_after": round(bare_after),
        "ratio": round(pipeline / bare, 3),
        "per_family_per_s": {
            label: round(recorder.family_evaluations[label] / seconds)
            for label, seconds in recorder.family_time.items() if seconds > 0
        },
        "rss_after_model_mb": round(memory_after_load),
        "rss_first_tenth_of_cells_mb": round(max(memory[:tenth])),
        "rss_last_tenth_of_cells_mb": round(max(memory[-tenth:])),
        # Families load one-time state (morph's target pool, caches): the growth that matters
        # is while cells of one family repeat. A family's last PREFETCH_CELLS cells overlap
        # the perturbation of the next family's first cells, so they are left out.
        "rss_growth_within_a_family_mb": round(max(
            (values[-1 - PREFETCH_CELLS] - values[0]
             for values in recorder.family_memory.values() if len(values) > PREFETCH_CELLS + 1),
            default=0.0)),
        "rss_after_each_family_mb": {label: round(values[-1]) for label, values in recorder.family_memory.items()},
        "peak_rss_run_mb": round(peak_after_cells),
        "peak_rss_with_summary_mb": round(peak_rss_mb()),
        "results_parquet_mb": round(results_mb, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"{key:<{width}}")
            for label, number in value.items():
                print(f"  {label:<{width - 2}} {number:>10,}")
        else:
            print(f"{key:<{width}} {value:>10,}" if isinstance(value, (int, float)) else f"{key:<{width}} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
