"""TensorFlow and Keras, imported once, on first use, without their native start-up noise.

:func:`tensorflow_and_keras` is the one place the package imports them (import-linter checks
it), so that ``robust-mnist --help``, ``summary``, ``report`` and ``compare`` never pay the
3.5-5 s and 550 MB of ``import tensorflow``, and so that the lines TensorFlow's C++ writes on
start-up stay off the user's terminal unless ``robust-mnist -v`` asks for everything.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

#: TensorFlow's C++ log threshold unless the user set one (or passed ``-v``): 3 keeps only
#: fatal lines. Its INFO, WARNING and ERROR lines here are noise (oneDNN notices, CPU-feature
#: advice, "NodeDef mentions attribute ..." while training); real failures reach Python as
#: exceptions.
TF_LOG_LEVEL = "3"


def tensorflow_and_keras() -> tuple[Any, Any]:
    """``(tensorflow, keras)``, imported on first use: the one place this package imports them.

    The CUDA-enabled TensorFlow wheel writes start-up lines (CUDA stub, cpu_feature_guard,
    oneDNN, and cuInit when it first looks for devices) from C++ straight to file descriptor 2,
    some of them before ``TF_CPP_MIN_LOG_LEVEL`` is even read. Unless debug logging is on
    (``robust-mnist -v``), that descriptor points at ``/dev/null`` while TensorFlow is imported
    and lists its devices, and the log level defaults to :data:`TF_LOG_LEVEL`; Python's
    ``sys.stderr`` is flushed first and the descriptor restored after, errors included.
    """
    # One thread at a time: two threads swapping descriptor 2 could leave it on /dev/null.
    with _TENSORFLOW_LOCK:
        return _import_tensorflow()


_TENSORFLOW_LOCK = threading.Lock()


@functools.cache
def _import_tensorflow() -> tuple[Any, Any]:
    if logger.isEnabledFor(logging.DEBUG):
        import keras  # noqa: PLC0415  (heavy: TensorFlow is imported only when a model is needed)
        import tensorflow as tf  # noqa: PLC0415

        return tf, keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    with _native_stderr_silenced():
        import keras  # noqa: PLC0415
        import tensorflow as tf  # noqa: PLC0415

        tf.config.list_physical_devices()  # the CUDA probe (cuInit) logs here, not at import
    return tf, keras


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the ``with`` block (C and C++ writes too)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2: nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
