"""Writing an MNIST-C dataset offline: the published layout from the bundled MNIST, seeded, resumable.

MNIST-C (Mu and Gilmer 2019) is published as one folder per corruption (the static dataset of
zenodo record 3239543, read as such by TensorFlow Datasets' ``mnist_corrupted``, whose images
are ``(28, 28, 1)`` uint8)::

    OUT/<corruption>/train_images.npy   (60000, 28, 28, 1) uint8
    OUT/<corruption>/train_labels.npy   (60000,) uint8
    OUT/<corruption>/test_images.npy    (10000, 28, 28, 1) uint8
    OUT/<corruption>/test_labels.npy    (10000,) uint8

for ``identity`` (the clean digits) and the 15 corruptions of the published set
(:data:`CORRUPTIONS`). :func:`generate_mnist_c` writes that layout from the MNIST bundled with
the package (:func:`robust_mnist.data.load_mnist`), with our perturbation families at the
severity the published set uses (the family's ``default_severity``), and records what it wrote
in ``OUT/generation.json`` (seed, digits, each corruption's family and magnitude, and the
SHA-256 of every file).

Reproducible: the randomness of a corruption and split comes from one generator, ::

    rng = numpy.random.default_rng(numpy.random.SeedSequence([seed, k]))
    k = int.from_bytes(sha256(f"mnist-c/{corruption}/{split}".encode()).digest()[:16], "little")

from which the family draws every image's parameters of the split at once
(``sample_params``); the images are then perturbed in chunks (``apply`` is a pure function of
each image and its parameters), turned into uint8 by ``rint(255 x)``, and saved with
``numpy.save``. The same seed, digits and code give the same bytes, whatever the chunking.

Resumable: each file is written to a temporary name, fsynced and renamed over its final name
(:func:`write_atomically`), and a split counts as done once ``generation.json`` lists its two
files with their checksums. A generation killed at any point and run again skips what is done,
regenerates the rest, and ends with the same bytes as an uninterrupted one. Progress goes to a
callback (the command line draws it), never to the terminal from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import perturbations
from .data import Mnist, load_mnist, to_float
from .errors import InvalidArgumentError, RobustMnistError
from .perturbations import mnistc
from .rundir import write_bytes_atomically
from .severities import published

#: The corruptions of MNIST-C's published set, as it names them, in its order.
CORRUPTIONS = tuple(name for name, _ in mnistc.PUBLISHED)
#: The unperturbed digits, a folder of the published layout too.
IDENTITY = "identity"
#: The splits and the MNIST arrays they come from.
SPLITS = ("train", "test")
#: Images perturbed per call (results do not depend on it).
CHUNK = 2000
#: The record of a generation, in the output folder.
MANIFEST = "generation.json"
#: Version of :data:`MANIFEST`'s content.
FORMAT = 1


class GenerationError(RobustMnistError, ValueError):
    """An output folder that holds another generation (another seed, other digits)."""


@dataclass(frozen=True)
class DatasetCorruption:
    """One folder of the dataset: MNIST-C's corruption name, our family and its magnitude.

    ``family`` None is the identity (the clean digits).
    """

    name: str
    family: str | None
    magnitude: float = 0.0
    severity: int | None = None
    options: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "magnitude": self.magnitude, "severity": self.severity,
                "options": dict(self.options or {})}


@dataclass(frozen=True)
class GenerationProgress:
    """What a progress callback is told: the images done of all, and where the work is."""

    corruption: str
    split: str
    done: int
    total: int
    skipped: bool = False


def published_corruption(name: str) -> DatasetCorruption:
    """MNIST-C's corruption ``name`` as our family at the severity of the published set.

    The family is the one :data:`robust_mnist.perturbations.mnistc.PUBLISHED` pairs with the
    name; its magnitude is MNIST-C's value at the family's ``default_severity``
    (:func:`robust_mnist.perturbations.mnistc.severity_magnitude`), or for a corruption MNIST-C
    defines without levels its one setting
    (:func:`robust_mnist.perturbations.mnistc.published_magnitude`).

    Raises
    ------
    InvalidArgumentError
        For a name that is not one of :data:`CORRUPTIONS` (or ``identity``).
    """
    if name == IDENTITY:
        return DatasetCorruption(IDENTITY, None)
    if name not in CORRUPTIONS:
        raise InvalidArgumentError(f"unknown MNIST-C corruption {name!r}; known: {', '.join((IDENTITY, *CORRUPTIONS))}")
    family_name = published()[name]
    cls = perturbations.family(family_name)
    if getattr(cls, "SEVERITIES", None):
        severity = int(cls.default_severity)
        return DatasetCorruption(name, family_name, mnistc.severity_magnitude(family_name, severity), severity)
    return DatasetCorruption(name, family_name, mnistc.published_magnitude(family_name))


def split_rng(seed: int, corruption: str, split: str) -> np.random.Generator:
    """The generator of one corruption and split (the derivation in the module docstring)."""
    key = int.from_bytes(hashlib.sha256(f"mnist-c/{corruption}/{split}".encode()).digest()[:16], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed), key]))


def corrupt_split(
    corruption: DatasetCorruption,
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    on_chunk: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One split of one corruption, in MNIST-C's format.

    Parameters
    ----------
    corruption : DatasetCorruption
    images : (N, 28, 28) ndarray of uint8
    labels : (N,) ndarray of int
    rng : numpy.random.Generator
        Draws every image's parameters (:func:`split_rng`).
    on_chunk : callable, optional
        Called with the number of images of each chunk done.

    Returns
    -------
    (N, 28, 28, 1) ndarray of uint8
        ``rint(255 x)`` of the perturbed float images ``x`` in [0, 1].
    """
    out = np.empty((len(images), 28, 28, 1), np.uint8)
    if corruption.family is None:
        out[..., 0] = images
        if on_chunk is not None:
            on_chunk(len(images))
        return out
    family = perturbations.get(corruption.family, **dict(corruption.options or {}))
    magnitude = family.check_magnitude(corruption.magnitude)
    # Every image's parameters at once, from the split's own stream: the bytes do not depend
    # on the chunking. The digits are given only to a family whose parameters look at them.
    source = to_float(images) if family.needs_images else None
    params = family.sample_params(len(images), magnitude, rng, images=source, labels=np.asarray(labels, np.int64))
    for start in range(0, len(images), CHUNK):
        stop = min(start + CHUNK, len(images))
        chunk = {key: np.asarray(value)[start:stop] for key, value in params.items()}
        perturbed = family.apply(to_float(images[start:stop]), chunk)
        out[start:stop, ..., 0] = np.rint(np.clip(perturbed, 0.0, 1.0) * 255.0).astype(np.uint8)
        if on_chunk is not None:
            on_chunk(stop - start)
    return out


def generate_mnist_c(
    out: str | os.PathLike,
    corruptions: Sequence[str | DatasetCorruption] | None = None,
    *,
    n: int | None = None,
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    progress: Callable[[GenerationProgress], None] | None = None,
    mnist: Mnist | None = None,
) -> Path:
    """Write (or finish writing) an MNIST-C dataset in the published layout.

    Parameters
    ----------
    out : path-like
        The dataset folder (created).
    corruptions : sequence of str or DatasetCorruption, optional
        MNIST-C names (default ``identity`` and the 15 of :data:`CORRUPTIONS`), or explicit
        corruptions (our family and magnitude under a folder name).
    n : int, optional
        Only the first ``n`` digits of each split (for tests and quick looks); default all.
    splits : sequence of {"train", "test"}
    seed : int
        See the module docstring.
    progress : callable, optional
        Called with a :class:`GenerationProgress` as the work advances.
    mnist : Mnist, optional
        The source digits (default the bundled MNIST).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    InvalidArgumentError
        For an unknown corruption or split, or ``n`` below 1.
    GenerationError
        When ``out`` holds a generation with another seed, source or number of digits.
    """
    plan = [c if isinstance(c, DatasetCorruption) else published_corruption(c)
            for c in ((IDENTITY, *CORRUPTIONS) if corruptions is None else corruptions)]
    names = [c.name for c in plan]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"corruptions listed twice: {sorted({x for x in names if names.count(x) > 1})}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise InvalidArgumentError(f"unknown splits {unknown or list(splits)}; allowed: {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise InvalidArgumentError(f"n must be a positive number of digits; got {n}")
    mnist = load_mnist() if mnist is None else mnist
    sources = {"train": (mnist.x_train, mnist.y_train), "test": (mnist.x_test, mnist.y_test)}
    sources = {split: (images[:n], labels[:n]) for split, (images, labels) in sources.items()}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _open_manifest(out, {"format": FORMAT, "seed": int(seed), "n": n, "source": mnist.checksum})
    units = [(c, split) for c in plan for split in splits]
    total = sum(len(sources[split][0]) for _, split in units)
    done = 0
    for corruption, split in units:
        images, labels = sources[split]
        folder = out / corruption.name
        folder.mkdir(exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # a temporary file of a generation that was killed
            stale.unlink()
        if _is_done(manifest, folder, corruption, split):
            done += len(images)
            if progress is not None:
                progress(GenerationProgress(corruption.name, split, done, total, skipped=True))
            continue

        def advance(count: int, corruption=corruption, split=split) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(GenerationProgress(corruption.name, split, done, total))

        if progress is not None:
            progress(GenerationProgress(corruption.name, split, done, total))
        corrupted = corrupt_split(corruption, images, labels, split_rng(seed, corruption.name, split), advance)
        files = {}
        for name, array in ((f"{split}_images.npy", corrupted), (f"{split}_labels.npy", np.asarray(labels, np.uint8))):
            files[name] = write_atomically(folder / name, lambda handle, array=array: np.save(handle, array, allow_pickle=False))
        entry = manifest["corruptions"].setdefault(corruption.name, {"files": {}})
        if {k: v for k, v in entry.items() if k != "files"} != corruption.to_dict():
            entry.clear()
            entry.update({**corruption.to_dict(), "files": {}})
        entry["files"].update(files)
        _write_manifest(out, manifest)
    return out


def _open_manifest(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The folder's generation record, new or resumed; another generation's is refused."""
    path = out / MANIFEST
    if not path.is_file():
        if any(out.glob("*/*_images.npy")):
            raise GenerationError(f"{out}: holds dataset files but no {MANIFEST}; choose another --out")
        return {**settings, "corruptions": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise GenerationError(f"{path}: unreadable ({error}); remove the folder or choose another --out") from None
    differing = [key for key in settings if manifest.get(key) != settings[key]]
    if differing:
        said = ", ".join(f"{key} {manifest.get(key)!r} (now {settings[key]!r})" for key in differing)
        raise GenerationError(f"{out}: holds a generation with other settings: {said}; choose another --out")
    manifest.setdefault("corruptions", {})
    return manifest


def _is_done(manifest: Mapping[str, Any], folder: Path, corruption: DatasetCorruption, split: str) -> bool:
    """Whether both files of a split are recorded, for these settings, and intact on disk."""
    entry = manifest["corruptions"].get(corruption.name)
    if entry is None or {k: v for k, v in entry.items() if k != "files"} != corruption.to_dict():
        return False
    for name in (f"{split}_images.npy", f"{split}_labels.npy"):
        recorded = entry["files"].get(name)
        if recorded is None or not (folder / name).is_file() or _sha256(folder / name) != recorded:
            return False
    return True


def _write_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_atomically(out / MANIFEST, lambda handle: handle.write(text.encode()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, write: Callable[[Any], None]) -> str:
    """Write through ``write(handle)`` atomically (:func:`robust_mnist.rundir.write_bytes_atomically`:
    a temporary file, fsync, rename) and return the SHA-256 of the file written."""
    write_bytes_atomically(path, write)
    return _sha256(path)
