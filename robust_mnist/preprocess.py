"""The user's own digits, turned into MNIST-style 28x28 inputs the way MNIST itself was made.

Steps (:func:`preprocess_array`): grayscale; make the ink bright (invert dark ink on light
paper); suppress the paper (subtract its level, estimated robustly, and scale the ink to 1);
drop specks far smaller than the digit; crop to the ink's bounding box; scale so the longer
side is 20 px keeping the aspect ratio, anti-aliased; place in 28x28 with the centre of mass
at the centre.

MNIST's centre convention, measured on its training digits with
``scipy.ndimage.center_of_mass`` in array indices (pixel centres at integers): the mean
centre of mass is (14.0, 14.0), i.e. half a pixel below and right of the geometric centre
(13.5, 13.5), with a per-axis spread of 0.29 px, which is the spread of a rounding error
(1/sqrt(12) = 0.289). So MNIST shifted each 20 px digit by a whole number of pixels, and so do
we: an integer shift keeps the digit exactly as resampled (no extra blur) and keeps its
bounding box at 20 px, at the cost of at most 0.5 px of centring error per axis, which is
MNIST's own.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage
from skimage import filters, measure

from .errors import DataError, InvalidArgumentError, RobustMnistError

#: Side of the model's input and of the box the digit's longer side is scaled to (MNIST's).
SIZE = 28
DIGIT_SIZE = 20
#: Where MNIST's digits have their centre of mass, in array indices (see the module docstring).
CENTRE = (14.0, 14.0)
#: File types accepted inside folders (files named explicitly are tried whatever their suffix).
SUFFIXES = (".png", ".jpg", ".jpeg")
#: Larger photos are reduced (box filter) to this longer side first: the output has 20 px,
#: and a pen stroke on a 1000 px image is still several pixels wide.
WORKING_SIZE = 1000
#: Ink must stand out from the paper by this fraction of the full intensity range.
MIN_CONTRAST = 0.1
#: Connected ink blobs smaller than this fraction of the largest blob are specks (dust,
#: JPEG artefacts) and are dropped; separate strokes of a digit are far larger.
SPECK_FRACTION = 0.02
#: Ink fainter than this fraction of the ink-paper contrast counts as paper: JPEG ringing and
#: paper texture leave a faint halo around strokes that would otherwise widen the bounding
#: box and shrink the digit (measured on enlarged, JPEG-compressed MNIST digits: 0.03-0.06
#: recovers them best; MNIST's own faintest edge pixels are the price).
FLOOR = 0.05


def preprocess_array(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Turn a grayscale picture of one digit into an MNIST-style input.

    Parameters
    ----------
    image : (H, W) array_like
        Grayscale intensities of any size: integer types are scaled by their type's maximum
        (255 for uint8), floats are taken as intensities in [0, 1]. Either polarity (dark ink
        on light paper or light on dark).
    name : str
        What to call the image in error messages (usually its file).

    Returns
    -------
    (28, 28) ndarray of float32 in [0, 1]
        Bright ink on a black background, longer side 20 px, centre of mass at (14, 14).

    Raises
    ------
    InvalidArgumentError
        A ValueError, if the array is not 2-D, empty, not numeric or not finite.
    DataError
        A ValueError, if the image is blank (no ink stands out).
    """
    gray = _as_intensity(image, name)
    if np.ptp(gray) < MIN_CONTRAST:
        raise DataError(f"{name}: blank image (no ink stands out from the background)")

    # Polarity: the border is mostly paper. If it is lighter than the middle of the image's
    # range, the ink is dark: invert so that ink is bright, as in MNIST.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > (gray.min() + gray.max()) / 2:
        gray = 1.0 - gray

    # Paper suppression: Otsu splits paper from ink. The paper's level plus three robust
    # standard deviations of its texture/noise (at least FLOOR of the contrast) becomes 0,
    # the ink's 90th percentile becomes 1: a high percentile rather than the maximum, so a
    # few noisy pixels do not set the scale, yet the grey levels of the ink's edges survive
    # as MNIST's anti-aliased edges do.
    threshold = filters.threshold_otsu(gray)
    paper, ink = gray[gray <= threshold], gray[gray > threshold]
    paper_level = np.median(paper)
    ink_level = np.percentile(ink, 90)
    if ink_level - paper_level < MIN_CONTRAST:
        raise DataError(f"{name}: blank image (no ink stands out from the background)")
    noise = 1.4826 * np.median(np.abs(paper - paper_level))
    zero = paper_level + max(3 * noise, FLOOR * (ink_level - paper_level))
    zero = min(zero, (paper_level + threshold) / 2)
    digit = np.clip((gray - zero) / (ink_level - zero), 0.0, 1.0)

    labels = measure.label(digit > 0, connectivity=2)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= SPECK_FRACTION * sizes.max()
    keep[0] = False
    digit = np.where(keep[labels], digit, 0.0)

    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    digit = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = digit.shape
    scale = DIGIT_SIZE / max(height, width)
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    # Area averaging (PIL's box filter) when shrinking: each output pixel is the mean ink
    # over its footprint, the anti-aliasing that reproduces a pixel grid exactly when the
    # picture is an enlarged 28x28 digit; bilinear when enlarging a tiny picture.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(
        Image.fromarray(digit.astype(np.float32)).resize(shape[::-1], resample),
        dtype=np.float64,
    )
    small = np.clip(small, 0.0, None)
    # A thin pen stroke blurs to grey when shrunk; MNIST's strokes reach full intensity.
    small /= small.max()

    centre_row, centre_col = ndimage.center_of_mass(small)
    # Whole-pixel offsets, as MNIST (module docstring); kept inside the frame for very
    # lopsided digits, whose centre of mass then misses the centre by a little more.
    top = int(np.clip(np.round(CENTRE[0] - centre_row), 0, SIZE - shape[0]))
    left = int(np.clip(np.round(CENTRE[1] - centre_col), 0, SIZE - shape[1]))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top : top + shape[0], left : left + shape[1]] = small
    return out


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG or JPEG picture of one digit and preprocess it (:func:`preprocess_array`).

    EXIF orientation is applied; transparent images are flattened onto a background that
    contrasts with their opaque pixels (so ink drawn on a transparent canvas survives
    whatever its colour).

    Returns
    -------
    (28, 28) ndarray of float32 in [0, 1]

    Raises
    ------
    DataError
        A ValueError with a one-line message naming the file, if it is missing, empty, not an
        image, corrupt, suspiciously huge (a decompression bomb) or blank.
    """
    return preprocess_array(read_grayscale(path), name=str(path))


def read_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a 2-D float64 array of intensities in [0, 1].

    Raises
    ------
    DataError
        A ValueError with a one-line message naming the file (see :func:`load_digit`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                picture = ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{path}: image too large ({_one_line(error)})") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image PIL can read (expected PNG or JPEG)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: corrupt or truncated image ({_one_line(error)})") from None

    if picture.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(picture, dtype=np.float32)
        peak = 65535.0 if picture.mode.startswith("I;16") else max(float(array.max()), 1.0)
        return np.asarray(_reduce(Image.fromarray(np.clip(array / peak, 0.0, 1.0))), dtype=np.float64)
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        return _flatten_transparency(_reduce(picture.convert("RGBA")))
    return np.asarray(_reduce(picture.convert("L")), dtype=np.float64) / 255.0


def _reduce(picture):
    """Shrink a picture larger than WORKING_SIZE by area averaging (after conversion, so
    palette images are not shrunk by nearest neighbour)."""
    if max(picture.size) <= WORKING_SIZE:
        return picture
    factor = max(picture.size) / WORKING_SIZE
    size = (max(1, round(picture.width / factor)), max(1, round(picture.height / factor)))
    return picture.resize(size, Image.Resampling.BOX)


def load_digits(
    paths: Iterable[str | os.PathLike],
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Load and preprocess many digit pictures; folders contribute their PNG/JPEG files.

    Parameters
    ----------
    paths : iterable of path-like
        Files (tried whatever their suffix) and folders (their ``.png``, ``.jpg``, ``.jpeg``
        files, not recursive, sorted by name).

    Returns
    -------
    images : (N, 28, 28) ndarray of float32 in [0, 1]
        The digits that loaded, in input order.
    names : list of str
        The file of each image.
    errors : list of (str, str)
        ``(path, message)`` for each file that failed and each folder without images; the
        message is one line and names the path.
    """
    images: list[np.ndarray] = []
    names: list[str] = []
    errors: list[tuple[str, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(
                child for child in path.iterdir()
                if child.is_file() and child.suffix.lower() in SUFFIXES
            )
            if not files:
                errors.append((str(path), f"{path}: folder has no PNG or JPEG files"))
        else:
            files = [path]
        for file in files:
            try:
                images.append(load_digit(file))
                names.append(str(file))
            except RobustMnistError as error:
                errors.append((str(file), str(error)))
    stacked = np.stack(images) if images else np.zeros((0, SIZE, SIZE), np.float32)
    return stacked, names, errors


def _as_intensity(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2 or array.size == 0:
        raise InvalidArgumentError(f"{name}: expected a non-empty 2-D grayscale image; got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(array.astype(np.float64) / info.max, 0.0, 1.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidArgumentError(f"{name}: expected numeric intensities; got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InvalidArgumentError(f"{name}: image contains NaN or infinite values")
    return np.clip(array, 0.0, 1.0)


def _flatten_transparency(rgba) -> np.ndarray:
    """Composite onto white or black, whichever contrasts with the opaque pixels.

    Drawing apps export ink on a transparent canvas; the ink may be black or white, and the
    colour stored under fully transparent pixels is arbitrary, so compositing on a fixed
    colour could erase the ink.
    """
    array = np.asarray(rgba, dtype=np.float64) / 255.0
    alpha = array[..., 3]
    luma = array[..., :3] @ np.array([0.299, 0.587, 0.114])
    if alpha.min() == alpha.max() or alpha.sum() == 0:
        background = 1.0
    else:
        opaque_luma = float((luma * alpha).sum() / alpha.sum())
        background = 1.0 if opaque_luma < 0.5 else 0.0
    return luma * alpha + background * (1.0 - alpha)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
