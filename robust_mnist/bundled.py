"""The trained models that ship inside the package: the zoo in ``robust_mnist/zoo/``.

Each bundled model is a ``<arch>-seed<S>.keras`` file with the JSON training record
``robust-mnist train`` wrote beside it (``<arch>-seed<S>.json``, holding the file's sha256 and
its test accuracy). They were trained by this tool's own trainer (the README says how, and how
to rebuild them); :func:`robust_mnist.models.ensure_model` prefers a model the user retrained
into their cache, and falls back on these, so a study needs no training on first use.

This module only knows where the files are; it imports nothing heavy.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The folder of the bundled models, inside the installed package (possibly read-only: nothing
#: is ever written here at run time; exports of these models go to the user's cache).
ZOO_DIR = Path(__file__).resolve().parent / "zoo"


def bundled_path(arch: str, seed: int) -> Path | None:
    """The bundled ``<arch>-seed<S>.keras``, or None if the package does not ship that model."""
    path = ZOO_DIR / f"{arch}-seed{int(seed)}.keras"
    return path if path.is_file() and path.stat().st_size > 0 else None


def is_bundled(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file of the bundled zoo (compared after resolving links)."""
    path = Path(path)
    return path.is_file() and path.resolve().parent == ZOO_DIR


def bundled_models() -> tuple[Path, ...]:
    """The bundled ``.keras`` files, sorted by name."""
    return tuple(sorted(ZOO_DIR.glob("*.keras")))
