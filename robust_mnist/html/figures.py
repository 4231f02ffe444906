"""Drawing a report's figures and digit strips into data URIs, in worker processes.

Drawing a matplotlib figure is pure Python: the study report of a large run draws sixty-odd
figures and encodes a hundred-odd digit strips as PNG, seconds of one core. A
:class:`FigurePool` with workers does that in worker processes while the report computes its
statistics and builds the rest of its page, and returns for each figure a :class:`Drawing`
that the template renders as the data URI (waiting for it if it is not ready). The workers are
spawned (a process that has run TensorFlow must not fork) and run the same code as this
process (:func:`draw`, :func:`robust_mnist.html.page.png_data_uri`): the bytes do not depend on
where a figure was drawn. :data:`HERE` is the pool without workers: everything in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure

from .. import plots
from .page import png_data_uri, svg_data_uri

#: The workers' scheduling priority below the report's process (``nice`` increment).
WORKER_NICENESS = 10
#: A function of :mod:`robust_mnist.plots`: data in, a figure out.
Plot = Callable[..., Figure]


def draw(plot: Plot, *args: Any, **kwargs: Any) -> Markup:
    """``plot(*args, **kwargs)`` as an SVG data URI (:func:`robust_mnist.html.page.svg_data_uri`), drawn here."""
    return svg_data_uri(plot(*args, **kwargs))


class Drawing:
    """Text (a data URI) a worker is making; the template renders it (``__html__``) when ready.

    Asked for before a worker has started it, it is made here instead: the page's last
    figures are then drawn by this process and the workers together.
    """

    def __init__(self, future: Future, function: Callable[..., str], args: tuple, kwargs: dict[str, Any]) -> None:
        self._future = future
        self._job = (function, args, kwargs)
        self._text: str | None = None

    def __html__(self) -> str:
        if self._text is None:
            function, args, kwargs = self._job
            self._text = function(*args, **kwargs) if self._future.cancel() else self._future.result()
        return self._text

    __str__ = __html__


class FigurePool:
    """Draws figures and encodes digit strips in ``workers`` spawned processes; with 0
    workers, here and now.

    A context manager: build *and* render the page inside it, since the workers stop at its
    end. They start at once and load matplotlib while the caller computes.
    """

    def __init__(self, workers: int) -> None:
        self._executor = None
        if workers > 0:
            self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_lower_priority)
            for _ in range(workers):  # a worker starts with the first task it is given
                self._executor.submit(_ready)

    def draw(self, plot: Plot, *args: Any, **kwargs: Any) -> str | Drawing:
        """``plot(*args, **kwargs)`` as an SVG data URI (see :func:`draw`)."""
        return self._run(draw, plot, *args, **kwargs)

    def encode(self, pixels: np.ndarray, palette: Sequence[int] | None = None) -> str | Drawing:
        """An image as a PNG data URI (:func:`robust_mnist.html.page.png_data_uri`)."""
        return self._run(png_data_uri, pixels, palette)

    def _run(self, function: Callable[..., str], *args: Any, **kwargs: Any) -> str | Drawing:
        if self._executor is None:
            return function(*args, **kwargs)
        return Drawing(self._executor.submit(function, *args, **kwargs), function, args, kwargs)

    def __enter__(self) -> FigurePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


#: Draws and encodes in this process.
HERE = FigurePool(0)


def _lower_priority() -> None:
    """Workers yield the CPU to the process computing the statistics, whose time is the report's."""
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)


def _ready() -> str:
    """A worker's first task: nothing to do once this module (and matplotlib) is imported."""
    return plots.__name__
