"""MNIST-C's noise corruptions: shot (Poisson), impulse (salt-and-pepper), Gaussian, speckle.

Each pixel is corrupted on its own, from noise seeded per image (``seed`` param), and the
result clipped to [0, 1] as in MNIST-C. Two of them are our own families under MNIST-C's
names and tables: MNIST-C's ``impulse_noise`` is ``skimage.util.random_noise(mode="s&p")``,
which replaces each pixel with probability ``amount`` by 0 or 1 (half each), exactly our
``salt_pepper``; its ``gaussian_noise`` adds N(0, c) and clips, exactly our
``gaussian_noise``. Shot noise samples the Poisson law by inversion of its distribution
function (SciPy's ``pdtr``) at one uniform per pixel, so it needs no per-pixel loop.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..images import check_images
from ._shared import draw_seeds, param_column, seed_column
from .base import register
from .mnistc import MnistcFamily
from .mnistc_ops import finish, image_bits, levels64, normals, uniforms
from .noise import GaussianNoise, SaltPepper


def poisson_quantile(rate: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The ``probability`` quantile of Poisson(``rate``): the least ``k`` with P(K <= k) >= p.

    A Cornish-Fisher guess is corrected by walking the distribution function one count at a
    time (usually zero or one step), so the cost does not grow with the rate.

    Parameters
    ----------
    rate : ndarray of float64 > 0
    probability : ndarray of float64 in (0, 1), same shape

    Returns
    -------
    ndarray of float64
        Non-negative integers.
    """
    z = special.ndtri(probability)
    count = np.maximum(np.floor(rate + np.sqrt(rate) * z + (z * z - 1.0) / 6.0), 0.0)
    cdf = special.pdtr(count, rate)
    pmf = np.exp(count * np.log(rate) - rate - special.gammaln(count + 1.0))
    up = np.flatnonzero((cdf < probability) & (pmf > 0))
    while up.size:
        count[up] += 1.0
        pmf[up] *= rate[up] / count[up]
        cdf[up] += pmf[up]
        up = up[(cdf[up] < probability[up]) & (pmf[up] > 0)]
    down = np.flatnonzero((count > 0) & (cdf - pmf >= probability))
    while down.size:
        cdf[down] -= pmf[down]
        pmf[down] *= count[down] / rate[down]
        count[down] -= 1.0
        down = down[(count[down] > 0) & (cdf[down] - pmf[down] >= probability[down])]
    return count


@register
class ShotNoise(MnistcFamily):
    """Shot (photon) noise: each pixel becomes ``Poisson(x c) / c``, clipped to [0, 1].

    ``c`` is the number of photons a fully bright pixel collects; the magnitude is its
    inverse ``1 / c``, so 0 (infinitely many photons) is the identity and the noise grows
    with the magnitude: before clipping, a pixel of intensity ``x`` keeps its mean ``x``
    and gets variance ``x / c = x * magnitude``. Background pixels (0) stay 0.

    MNIST-C's ``shot_noise``: ``c = [60, 25, 12, 5, 3]``, so ``SEVERITIES = (1/60, 1/25,
    1/12, 1/5, 1/3)``; the published set uses level 5 (c = 3).

    Params: ``inverse_photons`` (the magnitude) and ``seed`` (per image).
    """

    name = "shot_noise"
    mnistc_name = "shot_noise"
    unit = "1/photons"
    description = "Poisson noise: Poisson(x c)/c with c = 1/magnitude photons at full intensity (MNIST-C shot_noise)"
    SEVERITIES = (1 / 60, 1 / 25, 1 / 12, 1 / 5, 1 / 3)
    default_severity = 5
    magnitude_range = (0.0, 1.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        return {"inverse_photons": np.full(n, magnitude), "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        inverse = param_column(params, "inverse_photons", n, self.name)
        seeds = seed_column(params, n, self.name)
        if (inverse < 0).any():
            raise ValueError(f"{self.name}: param 'inverse_photons' must be >= 0")
        out = images.copy()
        noisy = np.flatnonzero(inverse > 0)
        if not noisy.size:
            return out
        # Rounded so that 1 / (1/60) is MNIST-C's integer 60, not 60.000000000000007.
        photons = np.round(1.0 / inverse[noisy], 9)[:, None, None]
        rate = levels64(images[noisy]) * photons
        probability = uniforms(image_bits(seeds[noisy], 784)).reshape(rate.shape)
        counts = np.zeros_like(rate)
        lit = rate > 0
        counts[lit] = poisson_quantile(rate[lit], probability[lit])
        out[noisy] = finish(counts / photons)
        return out


@register
class ImpulseNoise(MnistcFamily, SaltPepper):
    """Impulse (salt-and-pepper) noise: MNIST-C's ``impulse_noise``, our ``salt_pepper``.

    ``skimage.util.random_noise(x, mode="s&p", amount=c)`` replaces each pixel, with
    probability ``c``, by 0 or 1 (half each): the same definition as ``salt_pepper``, whose
    code this family runs. MNIST-C's ``c = [.03, .06, .09, .17, .27]``; the published set
    uses level 4 (0.17).

    Params: ``fraction`` (the magnitude) and ``seed`` (per image).
    """

    name = "impulse_noise"
    mnistc_name = "impulse_noise"
    description = (
        "fraction of pixels replaced by 0 or 1, half each (MNIST-C impulse_noise = salt_pepper)"
    )
    SEVERITIES = (0.03, 0.06, 0.09, 0.17, 0.27)
    default_severity = 4


@register
class MnistcGaussianNoise(MnistcFamily, GaussianNoise):
    """Additive Gaussian noise: MNIST-C's ``gaussian_noise``, our ``gaussian_noise``.

    MNIST-C adds N(0, c) per pixel and clips to [0, 1], the definition of our
    ``gaussian_noise``, whose code this family runs, with MNIST-C's table
    ``c = [.08, .12, .18, .26, .38]`` and its default level 5 (not in the published set).

    Params: ``sd`` (the magnitude) and ``seed`` (per image).
    """

    name = "mnistc_gaussian_noise"
    mnistc_name = "gaussian_noise"
    description = "additive Gaussian noise of this sd, clipped (MNIST-C gaussian_noise = gaussian_noise)"
    SEVERITIES = (0.08, 0.12, 0.18, 0.26, 0.38)
    default_severity = 5


@register
class SpeckleNoise(MnistcFamily):
    """Speckle (multiplicative) noise: ``x + x * N(0, sd)``, clipped to [0, 1].

    The noise is proportional to the intensity, so the background stays blank and bright
    strokes are hit hardest. MNIST-C's ``speckle_noise``: ``sd = [.15, .2, .35, .45, .6]``,
    default level 5 (not in the published set).

    Params: ``sd`` (the magnitude) and ``seed`` (per image).
    """

    name = "speckle_noise"
    mnistc_name = "speckle_noise"
    unit = "multiplicative sd"
    description = "multiplicative Gaussian noise x + x N(0, sd), clipped (MNIST-C speckle_noise)"
    SEVERITIES = (0.15, 0.2, 0.35, 0.45, 0.6)
    default_severity = 5
    magnitude_range = (0.0, 5.0)
    random = True

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        return {"sd": np.full(n, magnitude), "seed": draw_seeds(n, rng)}

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        sd = param_column(params, "sd", n, self.name)
        seeds = seed_column(params, n, self.name)
        out = images.copy()
        noisy = np.flatnonzero(sd != 0)
        if noisy.size:
            values = levels64(images[noisy])
            noise = normals(seeds[noisy], 784).reshape(values.shape) * sd[noisy, None, None]
            out[noisy] = finish(values + values * noise)
        return out
