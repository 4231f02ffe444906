"""MNIST-C's weather corruptions: fog, snow and spatter, and the plasma fractal behind fog.

Their severity tables have several parameters that do not all grow with the level (fog's
amplitude is 2.5 at levels 3 and 4, which differ in roughness; spatter's blob size shrinks
while its threshold drops), so no single physical number orders them. Their magnitude is
therefore MNIST-C's severity itself, continuous: at an integer ``k`` every parameter is
MNIST-C's level ``k``; between levels each parameter is interpolated linearly; between 0 and
1 the level-1 corruption fades in from the identity (fog's amplitude grows from 0; snow's
and spatter's layers gain opacity while snow's brightening blend leaves 1)
(:func:`~.mnistc_ops.interpolate_levels`). The realised parameters are stored.
"""

from __future__ import annotations

import numpy as np

from ..images import check_images
from ._shared import draw_seeds, param_column, seed_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import (
    blocks,
    clipped_zoom,
    finish,
    gaussian_along,
    image_bits,
    interpolate_levels,
    levels64,
    motion_blur_bytes,
    normals,
)

PLASMA_SIZE = 256
#: Uniform draws of one 256x256 plasma map: 3 per cell of each of its 8 refinements.
PLASMA_DRAWS = 3 * sum(4**level for level in range(8))


def plasma_fractal(seeds: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """MNIST-C's ``plasma_fractal``: 256x256 diamond-square height maps scaled to [0, 1].

    The map starts at 0 and is refined from step 256 down to 2: each new square centre,
    then each new diamond point, is the mean of its four neighbours (wrapping around the
    map, as ``np.roll`` does) plus ``w * uniform(-w, w)``, with ``w = 100`` at the first
    step, divided by ``decay`` ("wibbledecay") at each next one. The map is shifted and
    scaled to span [0, 1] over all 256x256 points. Computed in float32 (MNIST-C: float64):
    the 65,535 draws per map dominate the cost, and the scaled map differs by about 1e-7.

    Parameters
    ----------
    seeds : (N,) ndarray of int
        Each map's uniforms (24 bits, two per word of the image's stream, :func:`image_bits`).
    decay : (N,) ndarray of float > 0

    Returns
    -------
    (N, 256, 256) ndarray of float32
    """
    n = len(seeds)
    words = image_bits(seeds, (PLASMA_DRAWS + 1) // 2)
    half_words = words.shape[1]
    draws = np.empty((n, 2 * half_words), np.float32)
    draws[:, :half_words] = (words >> np.uint64(40)).astype(np.float32)
    draws[:, half_words:] = ((words >> np.uint64(8)) & np.uint64(0xFFFFFF)).astype(np.float32)
    draws *= np.float32(2.0**-24)
    used = 0
    maps = np.zeros((n, PLASMA_SIZE, PLASMA_SIZE), np.float32)
    wibble = np.full((n, 1, 1), 100.0, np.float32)
    decay = np.asarray(decay, dtype=np.float32)[:, None, None]

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        nonlocal used
        count = total.shape[1] * total.shape[2]
        uniform = draws[:, used : used + count].reshape(total.shape)
        used += count
        return total / 4 + wibble * (-wibble + 2 * wibble * uniform)

    step = PLASMA_SIZE
    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares += np.roll(squares, -1, axis=2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        left = centres + np.roll(centres, 1, axis=1) + (corners + np.roll(corners, -1, axis=2))
        maps[:, 0::step, half::step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=2) + (corners + np.roll(corners, -1, axis=1))
        maps[:, half::step, 0::step] = wibbled_mean(top)
        step //= 2
        wibble = wibble / decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


#: Fog's (amplitude, wibble decay): the identity, then MNIST-C's levels 1 to 5.
FOG_LEVELS = ((0.0, 2.0), (1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))


@register
class Fog(MnistcFamily):
    """MNIST-C's fog: a plasma-fractal haze added, then the whole image dimmed.

    ``x + amplitude * plasma`` (the top-left 28x28 of a 256x256 fractal,
    :func:`plasma_fractal`), scaled by ``max(x) / (max(x) + amplitude)`` and clipped: the
    digit keeps its shape but loses contrast against an uneven bright background. A blank
    image stays blank (its maximum is 0). MNIST-C's table (amplitude, wibble decay): (1.5,
    2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4); a smaller decay gives a rougher haze.
    The published set uses level 5.

    The magnitude is the severity, continuous (see the module note): the amplitude grows
    from 0 at magnitude 0 (the identity) to 1.5 at 1, and both parameters are linear in
    between levels.

    Params: ``amplitude``, ``decay`` and ``seed`` (per image).
    """

    name = "fog"
    mnistc_name = "fog"
    unit = "MNIST-C severity"
    description = "MNIST-C fog: plasma-fractal haze, then dimmed; magnitude = severity, continuous (levels 1-5 exact)"
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)
    default_severity = 5
    magnitude_range = (0.0, 5.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        amplitude, decay = interpolate_levels(np.array(FOG_LEVELS), np.full(n, magnitude)).T
        return {"amplitude": amplitude, "decay": decay, "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        amplitude = param_column(params, "amplitude", n, self.name)
        decay = param_column(params, "decay", n, self.name)
        seeds = seed_column(params, n, self.name)
        if (amplitude < 0).any() or (decay <= 0).any():
            raise ValueError(f"{self.name}: params need amplitude >= 0 and decay > 0")
        out = images.copy()
        foggy = np.flatnonzero(amplitude > 0)
        for block in blocks(len(foggy), 32):  # 32 maps of 256x256 (8 MB) at a time
            chosen = foggy[block]
            values = levels64(images[chosen])
            strength = amplitude[chosen, None, None]
            brightest = values.max(axis=(1, 2), keepdims=True)
            haze = plasma_fractal(seeds[chosen], decay[chosen])[:, :28, :28]
            out[chosen] = finish((values + strength * haze) * brightest / (brightest + strength))
        return out


#: Spatter's (loc, scale, sigma, threshold, mask sigma, opacity): identity, levels 1 to 5.
#: MNIST-C's sixth column (0, 0, 0, 1, 1) is unused by its code and left out.
SPATTER_LEVELS = (
    (0.65, 0.3, 4.0, 0.69, 0.6, 0.0),
    (0.65, 0.3, 4.0, 0.69, 0.6, 1.0),
    (0.65, 0.3, 3.0, 0.68, 0.6, 1.0),
    (0.65, 0.3, 2.0, 0.68, 0.5, 1.0),
    (0.65, 0.3, 1.0, 0.65, 1.5, 1.0),
    (0.67, 0.4, 1.0, 0.65, 1.5, 1.0),
)
MUD = 63.0 / 255.0


@register
class Spatter(MnistcFamily):
    """MNIST-C's spatter: blobs of grey mud (63/255) painted over the digit.

    A field of N(loc, scale) noise is smoothed by a Gaussian of ``sigma`` (isotropic,
    edge-repeating border), cut at ``threshold``; the pixels above it form a mask, smoothed
    by ``mask sigma``, and mask values below 0.8 dropped. Where the mask is ``m``, the image
    becomes ``x (1 - m) + 63/255 m``. MNIST-C's table (loc, scale, sigma, threshold, mask
    sigma): (.65, .3, 4, .69, .6), (.65, .3, 3, .68, .6), (.65, .3, 2, .68, .5), (.65, .3, 1,
    .65, 1.5), (.67, .4, 1, .65, 1.5); the published set uses level 4. Computed in float32 as
    MNIST-C does after its first float64 smoothing.

    The magnitude is the severity, continuous (see the module note); below 1 the level-1
    mud is painted with opacity equal to the magnitude (0: the identity).

    Params: ``loc``, ``scale``, ``sigma``, ``threshold``, ``mask_sigma``, ``opacity`` and
    ``seed`` (per image).
    """

    name = "spatter"
    mnistc_name = "spatter"
    unit = "MNIST-C severity"
    description = "MNIST-C spatter: grey mud blobs; magnitude = severity, continuous (levels 1-5 exact)"
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)
    default_severity = 4
    magnitude_range = (0.0, 5.0)
    random = True
    KEYS = ("loc", "scale", "sigma", "threshold", "mask_sigma", "opacity")

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        values = interpolate_levels(np.array(SPATTER_LEVELS), np.full(n, magnitude))
        return {key: values[:, k] for k, key in enumerate(self.KEYS)} | {"seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        columns = {key: param_column(params, key, n, self.name) for key in self.KEYS}
        seeds = seed_column(params, n, self.name)
        if (columns["sigma"] < 0).any() or (columns["mask_sigma"] < 0).any():
            raise ValueError(f"{self.name}: params 'sigma' and 'mask_sigma' must be >= 0")
        out = images.copy()
        muddy = np.flatnonzero(columns["opacity"] > 0)
        if not muddy.size:
            return out
        liquid = normals(seeds[muddy], 784).reshape(-1, 28, 28)
        liquid = columns["loc"][muddy, None, None] + columns["scale"][muddy, None, None] * liquid
        keys = np.stack([columns["sigma"][muddy], columns["mask_sigma"][muddy]], axis=1)
        for sigma, mask_sigma in np.unique(keys, axis=0):
            chosen = np.flatnonzero((keys[:, 0] == sigma) & (keys[:, 1] == mask_sigma))
            images_chosen = muddy[chosen]
            threshold = columns["threshold"][images_chosen, None, None]
            smooth = gaussian_along(liquid[chosen], float(sigma), (0, 1), "nearest")
            smooth[smooth < threshold] = 0
            mask = np.where(smooth > threshold, 1, 0).astype(np.float32)
            mask = gaussian_along(mask, float(mask_sigma), (0, 1), "nearest")
            mask[mask < 0.8] = 0
            mask *= columns["opacity"][images_chosen, None, None].astype(np.float32)
            values = levels64(images[images_chosen]).astype(np.float32)
            mud = np.float32(MUD) * mask
            out[images_chosen] = finish(values * (1 - mask) + mud)
        return out


#: Snow's (loc, scale, zoom, threshold, blur radius, blur sigma, blend, opacity): the
#: identity, then MNIST-C's levels 1 to 5 (its first seven columns).
SNOW_LEVELS = (
    (0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 1.0, 0.0),
    (0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 0.8, 1.0),
    (0.2, 0.3, 2.0, 0.5, 12.0, 4.0, 0.7, 1.0),
    (0.55, 0.3, 4.0, 0.9, 12.0, 8.0, 0.7, 1.0),
    (0.55, 0.3, 4.5, 0.85, 12.0, 8.0, 0.65, 1.0),
    (0.55, 0.3, 2.5, 0.85, 12.0, 12.0, 0.55, 1.0),
)


@register
class Snow(MnistcFamily):
    """MNIST-C's snow: flakes streaked by a motion blur, over a brightened digit.

    A field of N(loc, scale) noise is zoomed by ``zoom`` about the centre (MNIST-C's
    ``clipped_zoom``), cut below ``threshold``, truncated to 8 bits and streaked with
    ImageMagick's motion blur (``blur radius``, ``blur sigma``) at an angle uniform in
    [-135, -45] degrees (flakes falling); the digit becomes ``blend x + (1 - blend)
    max(x, 1.5 x + 0.5)``, and the layer and its 180-degree rotation are added; clipped.
    MNIST-C's table: (.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7), (.55, .3, 4,
    .9, 12, 8, .7), (.55, .3, 4.5, .85, 12, 8, .65), (.55, .3, 2.5, .85, 12, 12, .55);
    default level 5 (not in the published set).

    The magnitude is the severity, continuous (see the module note); below 1 the snow layer
    has opacity equal to the magnitude and the blend moves from 1 (the identity).

    Params: ``loc``, ``scale``, ``zoom``, ``threshold``, ``blur_radius``, ``blur_sigma``,
    ``blend``, ``opacity``, ``angle`` (degrees) and ``seed`` (per image).
    """

    name = "snow"
    mnistc_name = "snow"
    unit = "MNIST-C severity"
    description = (
        "MNIST-C snow: motion-blurred flakes over a brightened digit; magnitude = severity, continuous"
    )
    SEVERITIES = (1.0, 2.0, 3.0, 4.0, 5.0)
    default_severity = 5
    magnitude_range = (0.0, 5.0)
    random = True
    KEYS = ("loc", "scale", "zoom", "threshold", "blur_radius", "blur_sigma", "blend", "opacity")

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        values = interpolate_levels(np.array(SNOW_LEVELS), np.full(n, magnitude))
        params = {key: values[:, k] for k, key in enumerate(self.KEYS)}
        return params | {"angle": rng.uniform(-135.0, -45.0, size=n), "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        columns = {key: param_column(params, key, n, self.name) for key in (*self.KEYS, "angle")}
        seeds = seed_column(params, n, self.name)
        if (
            (columns["zoom"] < 1).any()
            or (columns["blur_radius"] <= 0).any()
            or (columns["blur_radius"] > 40).any()
        ):
            raise ValueError(f"{self.name}: params need zoom >= 1 and blur_radius in (0, 40]")
        out = images.copy()
        snowy = np.flatnonzero((columns["opacity"] > 0) | (columns["blend"] != 1))
        if not snowy.size:
            return out
        noise = normals(seeds[snowy], 784).reshape(-1, 28, 28)
        layer = columns["loc"][snowy, None, None] + columns["scale"][snowy, None, None] * noise
        flakes = np.empty_like(layer)
        keys = np.stack([columns[key][snowy] for key in ("zoom", "blur_radius", "blur_sigma")], axis=1)
        for zoom, radius, sigma in np.unique(keys, axis=0):
            chosen = np.flatnonzero((keys == (zoom, radius, sigma)).all(axis=1))
            zoomed = clipped_zoom(layer[chosen], float(zoom))
            zoomed[zoomed < columns["threshold"][snowy[chosen], None, None]] = 0
            # MNIST-C's PNG of the layer: (clip * 255).astype(uint8) truncates.
            layer_bytes = np.floor(np.clip(zoomed, 0, 1) * 255.0)
            angles = columns["angle"][snowy[chosen]]
            flakes[chosen] = motion_blur_bytes(layer_bytes, float(radius), float(sigma), angles) / 255.0
        flakes *= columns["opacity"][snowy, None, None]
        values = levels64(images[snowy]).astype(np.float32)
        blend = columns["blend"][snowy, None, None].astype(np.float32)
        brightened = blend * values + (1 - blend) * np.maximum(
            values, values * np.float32(1.5) + np.float32(0.5)
        )
        out[snowy] = finish(brightened + flakes + np.rot90(flakes, k=2, axes=(1, 2)))
        return out
