"""Figures and strips made by worker processes are the bytes made here (robust_mnist.html.figures)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from robust_mnist import plots
from robust_mnist.html.figures import HERE, Drawing, FigurePool
from robust_mnist.html.study_report import MAX_FIGURE_WORKERS, PARALLEL_FAMILIES, figure_workers, write_report
from robust_mnist.strips import strip_palette
from test_report import make_run


def test_workers_draw_and_encode_the_same_bytes_as_this_process():
    matrix = np.arange(100.0).reshape(10, 10)
    curve = pd.DataFrame({"magnitude": [0.0, 1.0, 2.0], "accuracy": [1.0, 0.8, 0.5],
                          "accuracy_low": [0.9, 0.7, 0.4], "accuracy_high": [1.0, 0.9, 0.6]})
    pixels = np.random.default_rng(0).integers(0, 3, size=(28, 60), dtype=np.uint8)
    jobs = [
        lambda figures: figures.draw(plots.confusion_plot, matrix, title="At 3 px"),
        lambda figures: figures.draw(plots.severity_curve, curve, "accuracy", percent=True),
        lambda figures: figures.encode(pixels, strip_palette()),
    ]
    with FigurePool(1) as pool:
        made = [job(pool) for job in jobs]
        assert all(isinstance(text, Drawing) for text in made)
        texts = [str(text) for text in made]
    assert texts == [job(HERE) for job in jobs]


def test_a_report_drawn_by_workers_is_the_same_page(tmp_path):
    run = make_run(tmp_path / "run")
    here = write_report(run, tmp_path / "here.html", workers=0)
    workers = write_report(run, tmp_path / "workers.html", workers=1)
    assert workers.read_bytes() == here.read_bytes()


def test_only_a_large_study_gets_workers():
    families = {f"family{k}": {} for k in range(PARALLEL_FAMILIES)}
    assert figure_workers({"families": dict(list(families.items())[:2])}) == 0
    # One core computes the statistics; the others, if any, draw.
    assert figure_workers({"families": families}) == min(len(os.sched_getaffinity(0)) - 1, MAX_FIGURE_WORKERS)
