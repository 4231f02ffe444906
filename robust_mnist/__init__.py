"""robust_mnist: measure how unstable a digit classifier's probabilities are.

The package reproduces the Keras tutorial CNN trained on MNIST, perturbs digits in
controlled, physically meaningful ways and measures how the predicted probabilities move.

The public API, for notebooks and scripts:

- :func:`perturb` perturbs a batch of digits with a named family at one magnitude;
- :func:`run_study` runs a perturbation study into a run directory;
- :func:`load_run` reads a run directory back (results, digits, exemplars...);
- :func:`compare_runs` compares runs of several models on the same digits;
- :func:`write_report` writes a run's HTML report.

They are imported on first use (PEP 562), so ``import robust_mnist`` stays fast and loads
neither TensorFlow nor numba nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Where each public name lives; imported by :func:`__getattr__` on first access.
_LAZY = {
    "perturb": "robust_mnist.perturbations",
    "run_study": "robust_mnist.runner.run",
    "load_run": "robust_mnist.rundir",
    "compare_runs": "robust_mnist.compare",
    "write_report": "robust_mnist.html.study_report",
}

__all__ = ["__version__", "compare_runs", "load_run", "perturb", "run_study", "write_report"]

if TYPE_CHECKING:
    from .compare import compare_runs
    from .html.study_report import write_report
    from .perturbations import perturb
    from .rundir import load_run
    from .runner.run import run_study


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
