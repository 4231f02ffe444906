"""MNIST-C's intensity and digital corruptions: brightness, contrast, saturate, JPEG,
pixelate, quantize, inverse and stripe.

All act on intensities pixel by pixel, or on 8-bit images through PIL as MNIST-C does:

- brightness and saturate go through scikit-image's HSV conversion of a grey image, which
  reduces to closed forms (a grey pixel has hue 0, saturation 0 and value ``x``): brightness
  adds its shift to the value, saturate scales and offsets all three channels, and the
  grey of the resulting colour is a fixed multiple of its value (:func:`saturate_grey`).
- JPEG compresses each 8-bit digit with PIL at a quality (one PIL call per image: the 8x8
  blocks make digits interact if tiled); pixelate resizes with PIL's box filter down and up
  again, every image at once (:func:`pil_box_resize`).
- quantize, inverse and stripe are exact arithmetic on the 8-bit levels.

Magnitude 0 is the identity for every family; for inverse, stripe and the lines the
magnitude scales MNIST-C's own corruption, which has no severity levels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..images import check_images
from ._shared import param_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import finish, interpolate_levels, levels64, to_bytes


def _constant(self, name: str, magnitude: float, n: int) -> dict[str, np.ndarray]:
    return {name: np.full(n, self.check_magnitude(magnitude))}


@register
class Brightness(MnistcFamily):
    """MNIST-C's brightness: HSV value raised by ``magnitude``, i.e. ``min(x + magnitude, 1)``.

    MNIST-C converts the grey digit to RGB, then HSV, adds ``c`` to the value channel,
    clips, and converts back to grey; for a grey pixel that is exactly ``min(x + c, 1)``:
    the background becomes grey ``c`` and the strokes saturate. MNIST-C: ``c = [.1, .2, .3,
    .4, .5]``; the published set uses level 5 (0.5).

    Params: ``shift`` (the magnitude).
    """

    name = "brightness"
    mnistc_name = "brightness"
    unit = "HSV value shift"
    description = (
        "MNIST-C brightness: HSV value + magnitude, clipped (min(x + magnitude, 1) on grey digits)"
    )
    SEVERITIES = (0.1, 0.2, 0.3, 0.4, 0.5)
    default_severity = 5
    magnitude_range = (0.0, 1.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return _constant(self, "shift", magnitude, n)

    def apply(self, images, params):
        images = check_images(images)
        shift = param_column(params, "shift", len(images), self.name)
        out = images.copy()
        lit = np.flatnonzero(shift != 0)
        if lit.size:
            out[lit] = finish(levels64(images[lit]) + shift[lit, None, None])
        return out


@register
class Contrast(MnistcFamily):
    """MNIST-C's contrast: intensities pulled towards the image's mean.

    ``(x - mean) * factor + mean``, clipped, with ``factor = 1 - magnitude``: the magnitude
    is the fraction of contrast removed (0 the identity, 1 a flat image at its mean).
    MNIST-C: ``factor = [.4, .3, .2, .1, .05]``, so ``SEVERITIES = (.6, .7, .8, .9, .95)``;
    default level 4 (not in the published set).

    Params: ``factor`` (1 - the magnitude, rounded to 12 decimals so that the table gives
    MNIST-C's exact factors).
    """

    name = "contrast"
    mnistc_name = "contrast"
    unit = "contrast removed"
    description = "MNIST-C contrast: (x - mean) (1 - magnitude) + mean, clipped"
    SEVERITIES = (0.6, 0.7, 0.8, 0.9, 0.95)
    default_severity = 4
    magnitude_range = (0.0, 1.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"factor": np.full(n, np.round(1.0 - self.check_magnitude(magnitude), 12))}

    def apply(self, images, params):
        images = check_images(images)
        factor = param_column(params, "factor", len(images), self.name)
        out = images.copy()
        changed = np.flatnonzero(factor != 1)
        if changed.size:
            values = levels64(images[changed])
            means = values.mean(axis=(1, 2), keepdims=True)
            out[changed] = finish((values - means) * factor[changed, None, None] + means)
        return out


def saturate_grey(hue: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """The grey (``skimage.color.rgb2gray``) of the HSV colour ``(hue, saturation, 1)``.

    ``hsv2rgb`` gives, in sector ``i = floor(6 h) mod 6`` with ``f = 6 h - floor(6 h)``,
    channels among ``1``, ``p = 1 - s``, ``q = 1 - f s`` and ``t = 1 - (1 - f) s``;
    ``rgb2gray`` weighs R, G, B by 0.2125, 0.7154, 0.0721. Every channel is proportional to
    the value, so the grey of ``(h, s, v)`` is ``v`` times this.
    """
    sector = np.floor(hue * 6.0)
    f = hue * 6.0 - sector
    sector = sector.astype(np.int64) % 6
    one = np.ones_like(f)
    p, q, t = 1.0 - saturation, 1.0 - f * saturation, 1.0 - (1.0 - f) * saturation
    red = np.choose(sector, [one, q, p, p, t, one])
    green = np.choose(sector, [t, one, one, q, p, p])
    blue = np.choose(sector, [p, p, t, one, one, q])
    return 0.2125 * red + 0.7154 * green + 0.0721 * blue


#: Saturate's (gain, offset): the identity, then MNIST-C's levels 1 to 5.
SATURATE_LEVELS = ((1.0, 0.0), (0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))


@register
class Saturate(MnistcFamily):
    """MNIST-C's saturate: every HSV channel scaled by ``gain`` and offset by ``offset``.

    On a grey digit (hue 0, saturation 0, value ``x``) the colour becomes hue ``offset``,
    saturation ``offset``, value ``clip(gain x + offset)``, and its grey is that value times
    :func:`saturate_grey` ``(offset, offset)``. MNIST-C's table (gain, offset): (0.3, 0),
    (0.1, 0), (2, 0), (5, 0.1), (20, 0.2): levels 1-2 darken, 3-5 brighten until the
    strokes saturate and the background turns grey; default level 5 (not in the published
    set). No single number orders these, so the magnitude is the severity, continuous
    (gain and offset linear between levels, from (1, 0) at 0: the identity).

    Params: ``gain`` and ``offset``.
    """

    name = "saturate"
    mnistc_name = "saturate"
    unit = "MNIST-C severity"
    description = (
        "MNIST-C saturate: HSV channels times gain plus offset; magnitude = severity, continuous"
    )
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)
    default_severity = 5
    magnitude_range = (0.0, 5.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        gain, offset = interpolate_levels(np.array(SATURATE_LEVELS), np.full(n, magnitude)).T
        return {"gain": gain, "offset": offset}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        gain = param_column(params, "gain", n, self.name)
        offset = param_column(params, "offset", n, self.name)
        out = images.copy()
        changed = np.flatnonzero((gain != 1) | (offset != 0))
        if changed.size:
            channel = np.clip(offset[changed], 0.0, 1.0)
            grey = saturate_grey(channel, channel)[:, None, None]
            value = np.clip(
                levels64(images[changed]) * gain[changed, None, None] + offset[changed, None, None],
                0.0,
                1.0,
            )
            out[changed] = finish(value * grey)
        return out


@register
class JpegCompression(MnistcFamily):
    """MNIST-C's JPEG compression: each 8-bit digit saved by PIL as JPEG and read back.

    The quality is ``100 - magnitude`` (rounded to an integer); magnitude 0 skips the
    compression altogether (a JPEG at quality 100 is still lossy). MNIST-C: quality
    ``[25, 18, 15, 10, 7]``, so ``SEVERITIES = (75, 82, 85, 90, 93)``; default level 5
    (not in the published set).

    Params: ``compression`` (``100 - quality``; 0 = none).
    """

    name = "jpeg_compression"
    mnistc_name = "jpeg_compression"
    unit = "100 - JPEG quality"
    description = "MNIST-C jpeg_compression: PIL JPEG at quality 100 - magnitude (0: no compression)"
    SEVERITIES = (75.0, 82.0, 85.0, 90.0, 93.0)
    default_severity = 5
    magnitude_range = (0.0, 99.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"compression": np.full(n, float(np.round(self.check_magnitude(magnitude))))}

    def apply(self, images, params):
        images = check_images(images)
        compression = param_column(params, "compression", len(images), self.name)
        if ((compression != np.round(compression)) | (compression < 0) | (compression > 99)).any():
            raise ValueError(f"{self.name}: param 'compression' must be an integer in [0, 99]")
        out = images.copy()
        chosen = np.flatnonzero(compression > 0)
        values = to_bytes(images[chosen])
        for row, index in enumerate(chosen):
            # PIL's encoder works on one image; its 8x8 blocks would straddle tiled digits.
            buffer = io.BytesIO()
            Image.fromarray(values[row]).save(buffer, "JPEG", quality=int(100 - compression[index]))
            buffer.seek(0)
            out[index] = np.asarray(Image.open(buffer), dtype=np.float32) / np.float32(255.0)
        return out


def pil_box_resize(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL's ``resize((width, height), Image.BOX)`` of every 8-bit image of a batch at once.

    PIL resamples in two passes, horizontal then vertical, each rounding to 8 bits, with
    the same arithmetic in both. The horizontal pass of a stack of images laid one above
    the other is each image's horizontal pass; the vertical pass is a horizontal pass of the
    transposed images. Four PIL calls instead of two per image, with PIL's bits.

    Parameters
    ----------
    values : (N, H, W) ndarray of uint8
    width, height : int

    Returns
    -------
    (N, height, width) ndarray of uint8
    """
    n, rows, columns = values.shape
    if not n:
        return np.zeros((0, height, width), np.uint8)
    if width != columns:
        stacked = Image.fromarray(np.ascontiguousarray(values.reshape(n * rows, columns)))
        values = np.asarray(stacked.resize((width, n * rows), Image.Resampling.BOX)).reshape(
            n, rows, width
        )
    if height != rows:
        turned = np.ascontiguousarray(values.transpose(0, 2, 1).reshape(n * width, rows))
        resized = np.asarray(Image.fromarray(turned).resize((height, n * width), Image.Resampling.BOX))
        values = resized.reshape(n, width, height).transpose(0, 2, 1)
    return np.ascontiguousarray(values)


@register
class Pixelate(MnistcFamily):
    """MNIST-C's pixelate: box-filtered down to ``int(28 (1 - magnitude))`` pixels and back.

    PIL's box filter (:func:`pil_box_resize`) averages the pixels each low-resolution pixel
    covers and copies it back over them, rounding to 8 bits at each pass: at half
    resolution (14 px) the digit becomes 2x2 blocks of their means. The magnitude is the
    fraction of resolution lost. MNIST-C: ``c = [.6, .5, .4, .3, .25]`` (16, 14, 11, 8 and 7
    px), so ``SEVERITIES = (.4, .5, .6, .7, .75)``; default level 3 (not in the published
    set).

    Params: ``size`` (the low resolution, in pixels; 28 = the identity).
    """

    name = "pixelate"
    mnistc_name = "pixelate"
    unit = "resolution lost"
    description = "MNIST-C pixelate: PIL box resize to int(28 (1 - magnitude)) px and back"
    SEVERITIES = (0.4, 0.5, 0.6, 0.7, 0.75)
    default_severity = 3
    magnitude_range = (0.0, 0.95)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        fraction_kept = np.round(1.0 - self.check_magnitude(magnitude), 12)
        return {"size": np.full(n, float(int(28 * fraction_kept)))}

    def apply(self, images, params):
        images = check_images(images)
        size = param_column(params, "size", len(images), self.name)
        if ((size != np.round(size)) | (size < 1) | (size > 28)).any():
            raise ValueError(f"{self.name}: param 'size' must be an integer in [1, 28]")
        out = images.copy()
        for value in np.unique(size[size < 28]):
            chosen = np.flatnonzero(size == value)
            small = pil_box_resize(to_bytes(images[chosen]), int(value), int(value))
            out[chosen] = pil_box_resize(small, 28, 28).astype(np.float32) / np.float32(255.0)
        return out


@register
class Quantize(MnistcFamily):
    """MNIST-C's quantize: intensities rounded to ``2**bits`` levels, ``bits = 8 - magnitude``.

    ``round(x (2**bits - 1)) / (2**bits - 1)`` (NumPy's rounding, half to even). The
    magnitude is the number of bits removed, rounded to an integer; 0 keeps the image as it
    is. MNIST-C: ``bits = [5, 4, 3, 2, 1]``, so ``SEVERITIES = (3, 4, 5, 6, 7)``; default
    level 5 (1 bit: black and white), not in the published set.

    Params: ``bits`` (the bit depth kept, 1 to 8).
    """

    name = "quantize"
    mnistc_name = "quantize"
    unit = "bits removed"
    description = "MNIST-C quantize: intensities rounded to 2**(8 - magnitude) levels"
    SEVERITIES = (3.0, 4.0, 5.0, 6.0, 7.0)
    default_severity = 5
    magnitude_range = (0.0, 7.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return {"bits": np.full(n, 8.0 - np.round(self.check_magnitude(magnitude)))}

    def apply(self, images, params):
        images = check_images(images)
        bits = param_column(params, "bits", len(images), self.name)
        if ((bits != np.round(bits)) | (bits < 1) | (bits > 8)).any():
            raise ValueError(f"{self.name}: param 'bits' must be an integer in [1, 8]")
        out = images.copy()
        chosen = np.flatnonzero(bits < 8)
        if chosen.size:
            top = (2.0 ** bits[chosen] - 1.0)[:, None, None]
            out[chosen] = finish(np.round(levels64(images[chosen]) * top) / top)
        return out


@register
class Inverse(MnistcFamily):
    """MNIST-C's inverse, as a blend: ``x + t (1 - 2 x)``, so ``t = 1`` is the negative ``1 - x``.

    MNIST-C has no levels: its ``inverse`` is ``255 - x``, magnitude 1 here
    (``published_magnitude``). Between 0 (the identity) and 1 the image fades to its
    negative (at 0.5 every pixel is 0.5).

    Params: ``weight`` (the magnitude).
    """

    name = "inverse"
    mnistc_name = "inverse"
    unit = "weight (1 = MNIST-C)"
    description = "MNIST-C inverse: blend towards the negative 1 - x (1 = MNIST-C's inverse)"
    published_magnitude = 1.0
    default_magnitudes = (0.0, 0.25, 0.5, 0.75, 1.0)
    magnitude_range = (0.0, 1.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return _constant(self, "weight", magnitude, n)

    def apply(self, images, params):
        images = check_images(images)
        weight = param_column(params, "weight", len(images), self.name)[:, None, None]
        values = levels64(images)
        out = finish(values + weight * (1.0 - 2.0 * values))
        return np.where(weight == 0, images, out)


@register
class Stripe(MnistcFamily):
    """MNIST-C's stripe: the leftmost and rightmost ``magnitude`` columns inverted.

    MNIST-C inverts columns 0-6 and 21-27 (``255 - x``): magnitude 7 here
    (``published_magnitude``), with no levels. A width of ``w`` pixels inverts columns
    ``[0, w)`` and ``[28 - w, 28)``; a fractional width inverts the edge column partly
    (``x + f (1 - 2 x)`` for the covered fraction ``f``); 14 inverts the whole image.

    Params: ``width`` (the magnitude, in pixels).
    """

    name = "stripe"
    mnistc_name = "stripe"
    unit = "px (band width)"
    description = (
        "MNIST-C stripe: invert the leftmost and rightmost columns (7 = MNIST-C's columns 0-6 and 21-27)"
    )
    published_magnitude = 7.0
    default_magnitudes = (0.0, 1.0, 3.0, 5.0, 7.0)
    magnitude_range = (0.0, 14.0)

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        return _constant(self, "width", magnitude, n)

    def apply(self, images, params):
        images = check_images(images)
        width = param_column(params, "width", len(images), self.name)[:, None]
        if (width < 0).any() or (width > 14).any():
            raise ValueError(f"{self.name}: param 'width' must lie in [0, 14]")
        columns = np.arange(28, dtype=np.float64)[None, :]
        left = np.clip(width - columns, 0.0, 1.0)
        right = np.clip(width - (27.0 - columns), 0.0, 1.0)
        cover = np.minimum(left + right, 1.0)[:, None, :]
        values = levels64(images)
        out = finish(values + cover * (1.0 - 2.0 * values))
        return np.where(cover == 0, images, out)
