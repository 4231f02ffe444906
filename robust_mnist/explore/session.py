"""The explorer's state and computations: models loaded once, digits in, perturbed probabilities out.

An :class:`ExploreSession` holds the classifiers (loaded once, at start, by :func:`load_models`:
the article CNN by default, trained on first use as ``study`` does), the bundled MNIST test
digits, the most unstable digits of a run directory for "surprise me", and the folder where
saved digits go. Its computations are the library's own: an uploaded picture or the page's
canvas becomes the model's 28x28 input through :func:`robust_mnist.preprocess.load_digit`
(exactly ``predict``'s path); the sliders are one ``compose`` perturbation whose steps follow
:data:`ORDER` (documented below), seeded with the session's seed, so that one slider alone is
bit-for-bit ``robust_mnist.perturb(family, digit, magnitude, seed)``; every model's
probabilities come from ``predict_proba``, checked. Model calls are serialised by one lock
(TensorFlow already uses every core), so concurrent requests queue instead of racing.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import models, rundir
from ..classifier import Classifier, check_probabilities
from ..data import Mnist, load_mnist, to_float
from ..errors import DataError, InvalidArgumentError, RobustMnistError
from ..export import cached_onnx_export
from ..perturbations import available, family, get, perturb
from ..preprocess import load_digit

logger = logging.getLogger(__name__)

#: The order in which the sliders compose (each non-zero slider is one ``compose`` step at its
#: own magnitude, composite strength 1): the writer's stroke first (morph toward another
#: digit, stroke thickness), then the digit's pose on the page (size, slant, rotation, shifts,
#: elastic distortions), then how it is imaged (blurs, compression, intensity changes,
#: weather), then marks over it, and sensor noise last. Families not named here (registered
#: later) follow in alphabetical order.
ORDER = (
    "morph", "thin", "thicken",
    "scale", "shear", "rotate", "translate_x", "translate_y", "translate",
    "mnistc_scale", "mnistc_shear", "mnistc_rotate", "mnistc_translate", "elastic", "elastic_transform",
    "blur", "gaussian_blur", "defocus_blur", "motion_blur", "glass_blur", "zoom_blur",
    "pixelate", "jpeg_compression", "quantize",
    "brightness", "contrast", "saturate", "inverse", "fog", "snow", "spatter", "canny_edges", "stripe",
    "occlude", "line", "dotted_line", "zigzag",
    "gaussian_noise", "mnistc_gaussian_noise", "shot_noise", "speckle_noise", "impulse_noise", "salt_pepper",
)
#: Families that are not sliders: compose is how the sliders combine.
NOT_SLIDERS = ("compose",)
#: Where saved digits go when ``--digits`` is not given (``studies/own_digits.toml`` reads it).
DEFAULT_DIGITS_DIR = Path("studies") / "own_digits"
#: Pictures with more pixels than this are refused before they are decoded.
MAX_PIXELS = 40_000_000
#: Number of pixels of a digit.
PIXELS = 28 * 28


def slider_families() -> list[str]:
    """Every registered family but compose, in :data:`ORDER`."""
    names = [name for name in available() if name not in NOT_SLIDERS]
    known = [name for name in ORDER if name in names]
    return known + sorted(set(names) - set(known))


def slider_extent(name: str) -> tuple[float, float]:
    """The slider's range: the span of the family's default grid (within its allowed range)."""
    cls = family(name)
    grid = [float(m) for m in cls.default_magnitudes]
    low, high = cls.magnitude_range
    return max(low, min(grid)), min(high, max(grid))


@dataclass
class ExploreModel:
    """A loaded model: the name the page shows, the classifier, where it came from."""

    name: str
    classifier: Classifier
    source: str = ""


def load_models(
    paths: Sequence[str | os.PathLike] = (),
    archs: Sequence[str] = (),
    *,
    engine: str = "keras",
    trust_model: bool = False,
) -> list[ExploreModel]:
    """Load the explorer's models once: model files, then architectures (cached, else bundled).

    With neither, the article CNN of seed 0 (``models.ensure_model("article", 0)``). With
    ``engine="onnx"``, Keras models run on ONNX Runtime through their cached, checked export.

    Raises
    ------
    ModelError, InvalidArgumentError
        One line naming the model file or architecture that cannot be used.
    """
    if engine not in ("keras", "onnx"):
        raise InvalidArgumentError(f"unknown engine {engine!r}; allowed: keras, onnx")
    sources: list[tuple[str, Path, bool]] = []
    for path in paths:
        models.check_trusted(path, trust_model)
        sources.append((Path(path).stem, Path(path), trust_model))
    for arch in archs:
        sources.append((arch, models.ensure_model(arch, 0), True))
    if not sources:
        sources.append(("article", models.ensure_model("article", 0), True))
    loaded: list[ExploreModel] = []
    used: set[str] = set()
    for name, path, trusted in sources:
        if engine == "onnx" and not models.is_onnx(path):
            path = cached_onnx_export(path, trust_model=trusted)
        unique, count = name, 1
        while unique in used:
            count += 1
            unique = f"{name}-{count}"
        used.add(unique)
        loaded.append(ExploreModel(unique, models.load_classifier(path), str(path)))
    return loaded


@dataclass
class Prediction:
    """A perturbed digit and every model's probabilities for it."""

    image: np.ndarray
    probabilities: list[np.ndarray]
    steps: list[dict[str, Any]] = field(default_factory=list)


class ExploreSession:
    """The explorer's models, digit sources and computations (see the module docstring).

    Parameters
    ----------
    models : sequence of ExploreModel, or of (name, classifier) pairs
        Loaded once; tests pass numpy fakes.
    digits_dir : path-like
        Where "Save this digit" writes ``<label>_<n>.png``.
    run_dir : path-like, optional
        A study's run directory: "surprise me" draws from its most unstable digits.
    seed : int
        The seed of every random family's draw (the same slider position, the same noise).
    mnist : Mnist, optional
        The MNIST arrays (default: the bundled file, loaded on first use).
    """

    def __init__(
        self,
        models: Sequence[ExploreModel | tuple[str, Classifier]],
        digits_dir: str | os.PathLike = DEFAULT_DIGITS_DIR,
        run_dir: str | os.PathLike | None = None,
        seed: int = 0,
        mnist: Mnist | None = None,
    ) -> None:
        self.models = [m if isinstance(m, ExploreModel) else ExploreModel(m[0], m[1]) for m in models]
        if not self.models:
            raise InvalidArgumentError("the explorer needs at least one model")
        self.digits_dir = Path(digits_dir)
        self.seed = int(seed)
        self._mnist = mnist
        self.lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._random = np.random.default_rng()
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._unstable = self._read_unstable(self.run_dir) if self.run_dir is not None else None

    # ---------------------------------------------------------------- what the page offers
    def describe(self) -> dict[str, Any]:
        """What the page builds its controls from: models, sliders in ORDER, the run, the folder."""
        sliders = []
        for name in slider_families():
            cls = family(name)
            low, high = slider_extent(name)
            sliders.append({
                "name": name, "unit": cls.unit, "description": cls.description,
                "min": low, "max": high, "step": _nice_step((high - low) / 100),
                "range": list(cls.magnitude_range), "random": bool(cls.random),
            })
        return {
            "models": [m.name for m in self.models],
            "sliders": sliders,
            "order": slider_families(),
            "surprise": self._unstable is not None,
            "digits_dir": str(self.digits_dir),
            "seed": self.seed,
        }

    @property
    def mnist(self) -> Mnist:
        with self.lock:
            if self._mnist is None:
                self._mnist = load_mnist()
            return self._mnist

    # ---------------------------------------------------------------- digits in
    def digit_from_picture(self, data: bytes, name: str = "upload") -> np.ndarray:
        """A picture's bytes (PNG, JPEG...) as the model's 28x28 input, exactly as ``predict``.

        Raises
        ------
        DataError
            One line naming ``name``: not an image, corrupt, too large, blank.
        """
        if not data:
            raise DataError(f"{name}: empty picture (0 bytes)")
        with tempfile.TemporaryDirectory(prefix="robust-mnist-explore-") as folder:
            path = Path(folder) / "picture"
            path.write_bytes(data)
            try:
                with Image.open(path) as opened:
                    size = opened.size
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                size = (0, 0)  # load_digit below says what is wrong with it, in predict's words
            if size[0] * size[1] > MAX_PIXELS:
                raise DataError(f"{name}: picture too large ({size[0]}x{size[1]} pixels)")
            try:
                return load_digit(path)
            except RobustMnistError as error:
                raise type(error)(str(error).replace(str(path), name)) from None

    def mnist_digit(self, index: int) -> tuple[np.ndarray, int]:
        """MNIST test digit ``index`` (0-9999) and its label."""
        count = len(self.mnist.x_test)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
            raise InvalidArgumentError(f"MNIST test index {index!r} outside 0-{count - 1}")
        return to_float(self.mnist.x_test[index : index + 1])[0], int(self.mnist.y_test[index])

    def surprise(self) -> tuple[np.ndarray, int, str]:
        """One of the run's most unstable digits, at random: (digit, label, where it is from)."""
        if self._unstable is None:
            raise InvalidArgumentError("no run directory: start the explorer with --run RUN_DIR")
        images, labels, where = self._unstable
        pick = int(self._random.integers(len(images)))
        return images[pick], int(labels[pick]), where[pick]

    @staticmethod
    def _read_unstable(run_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The run's gallery of unstable digits, read through rundir (exemplars.npz)."""
        exemplars = rundir.load_exemplars(run_dir)
        if not exemplars:
            raise InvalidArgumentError(f"{run_dir}: no exemplars.npz (is the study finished?)")
        digits = rundir.load_digits(run_dir)
        chosen: dict[int, str] = {}
        for label in exemplars.get("labels", []):
            key = f"{label}/unstable"
            if key in exemplars:
                for index in np.unique(exemplars[key]):
                    if index >= 0:
                        chosen.setdefault(int(index), f"{run_dir.name}: unstable under {label}, digit {int(index)}")
        if not chosen:
            raise InvalidArgumentError(f"{run_dir}: its exemplars name no unstable digit")
        indices = np.array(sorted(chosen))
        images = to_float(np.asarray(digits.images)[indices])
        return images, np.asarray(digits.labels)[indices], [chosen[i] for i in indices]

    # ---------------------------------------------------------------- perturb and predict
    def steps(self, settings: Mapping[str, float], target: int | None = None) -> list[dict[str, Any]]:
        """The ``compose`` steps of the sliders: every non-zero one, in :data:`ORDER`.

        Raises
        ------
        InvalidArgumentError
            An unknown family, compose itself, a magnitude outside the family's range, or a
            morph target that is not a digit.
        """
        if target is not None and (isinstance(target, bool) or target not in range(10)):
            raise InvalidArgumentError(f"morph target {target!r} is not a digit 0-9")
        magnitudes: dict[str, float] = {}
        for name, magnitude in settings.items():
            if name in NOT_SLIDERS:
                raise InvalidArgumentError(f"{name!r} is not a slider; the sliders compose through it")
            options = {"target": target} if name == "morph" and target is not None else {}
            magnitudes[name] = get(name, **options).check_magnitude(magnitude)
        steps = []
        for name in slider_families():
            if magnitudes.get(name, 0.0) != 0.0:
                step = {"family": name, "magnitude": magnitudes[name]}
                if name == "morph" and target is not None:
                    step["target"] = int(target)
                steps.append(step)
        return steps

    def perturb(
        self, digit: np.ndarray, settings: Mapping[str, float], target: int | None = None,
        label: int | None = None,
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The digit under every slider, composed through ``compose`` at strength 1."""
        digit = check_digit(digit)
        steps = self.steps(settings, target)
        if not steps:
            return digit.copy(), steps
        labels = None if label is None else np.array([label])
        with self.lock:
            images, _ = perturb("compose", digit[None], 1.0, seed=self.seed, labels=labels, steps=steps)
        return images[0], steps

    def predict(self, images: np.ndarray) -> list[np.ndarray]:
        """Every model's (N, 10) probabilities for ``images`` (N, 28, 28), checked."""
        with self.lock:
            return [
                check_probabilities(m.classifier.predict_proba(images), len(images), source=f"model {m.name!r}")
                for m in self.models
            ]

    def explore(
        self, digit: np.ndarray, settings: Mapping[str, float], target: int | None = None,
        label: int | None = None,
    ) -> Prediction:
        """The perturbed digit and every model's ten probabilities for it."""
        image, steps = self.perturb(digit, settings, target, label)
        return Prediction(image, [p[0] for p in self.predict(image[None])], steps)

    # ---------------------------------------------------------------- keep
    def save_digit(self, digit: np.ndarray, label: int) -> Path:
        """Write the digit as ``<label>_<n>.png`` (8-bit grey) into the digits folder.

        ``n`` is one more than the largest already there for that label; the file is created
        exclusively, so two saves never overwrite each other or anything else.
        """
        digit = check_digit(digit)
        if isinstance(label, bool) or label not in range(10):
            raise InvalidArgumentError(f"label {label!r} is not a digit 0-9")
        pattern = re.compile(rf"^{int(label)}_(\d+)\.png$")
        with self._save_lock:
            self.digits_dir.mkdir(parents=True, exist_ok=True)
            taken = [int(m.group(1)) for m in map(pattern.match, os.listdir(self.digits_dir)) if m]
            number = max(taken, default=0) + 1
            pixels = Image.fromarray(np.round(digit * 255).astype(np.uint8))
            while True:
                path = self.digits_dir / f"{int(label)}_{number}.png"
                try:
                    with open(path, "xb") as handle:
                        pixels.save(handle, format="PNG")
                    return path
                except FileExistsError:
                    number += 1

    def warm_up(self) -> None:
        """Run every family and model once, so the first slider drag is as fast as the next
        (morph loads its target pool, numba compiles, TensorFlow traces)."""
        digit, label = self.mnist_digit(0)
        for name in slider_families():
            low, high = slider_extent(name)
            try:
                self.perturb(digit, {name: high if high else low}, label=label)
            except RobustMnistError as error:  # a family that cannot run here is reported, not fatal
                logger.warning("warm-up of %s failed: %s", name, error)
        self.predict(np.repeat(digit[None], 2, axis=0))


def check_digit(digit: Any) -> np.ndarray:
    """A digit as (28, 28) float32 in [0, 1], from an array or 784 (or 28x28) numbers.

    Raises
    ------
    InvalidArgumentError
        Anything else: another size, non-numbers, NaN, values outside [0, 1].
    """
    try:
        array = np.asarray(digit, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError("digit must be 784 numbers in [0, 1]") from None
    if array.size != PIXELS or array.ndim not in (1, 2):
        raise InvalidArgumentError(f"digit must be 784 numbers in [0, 1]; got shape {array.shape}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise InvalidArgumentError("digit values must be finite numbers in [0, 1]")
    return array.reshape(28, 28).astype(np.float32)


def _nice_step(raw: float) -> float:
    """The largest of 1, 2 or 5 times a power of ten not above ``raw`` (a slider's step)."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** np.floor(np.log10(raw))
    for factor in (5.0, 2.0, 1.0):
        if factor * power <= raw:
            return float(factor * power)
    return float(power)
