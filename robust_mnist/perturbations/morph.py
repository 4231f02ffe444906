"""Morph a digit toward a digit of another class.

Magnitude ``t`` in [0, 1]: ``t = 0`` is the digit itself and ``t = 1`` the target digit, both
exactly. Family ``morph``, options:

``method``
    ``"flow"`` (default): a deformation morph. A dense displacement field ``f`` from the
    source ``S`` to the target ``T`` (``T(x + f(x)) ~ S(x)``) is estimated by the iterative
    Lucas-Kanade optical flow of scikit-image's ``optical_flow_ilk``, run batched and coarse
    to fine (:func:`estimate_flow`); the source is warped forward by ``t f`` and the
    target backward by ``(1 - t) f``, and the two are blended::

        M_t(y) = (1 - t) S(y - t f(y)) + t T(y + (1 - t) f(y))

    (the field is read at the output pixel: the usual approximation of its inverse for a
    smooth field, exact for a uniform one), so the ink *moves* from the source's strokes to
    the target's rather than fading. ``"crossfade"``: the pixel blend ``(1 - t) S + t T``.
``target``
    Which class to morph toward. ``"nearest"`` (default): the most confusable class in pixel
    space, the class other than the source's own whose nearest pool digit is closest.
    An int 0-9: that class (a source of that very class morphs toward another example of it).
    ``"all"``: draw ``k`` morphs toward the ``k``-th class other than the source's (in
    increasing order, modulo 9), so ``draws = 9`` covers every other class.
``pool``
    Which digit of the target class. ``"nearest"`` (default): the pool digit of that class
    nearest to the source (squared Euclidean distance of the flattened images, both centred
    on their centre of mass first; in the source's own class, copies of the source are
    skipped: a digit is never its own target).
    ``"medoid"``: the class medoid (the digit with the least summed distance to the others)
    among the first 1,000 pool digits of the class.
``pool_images``, ``pool_labels``
    The digits to choose targets from: (P, 28, 28) uint8 or float in [0, 1], and (P,)
    classes. Default: the bundled MNIST training set, loaded on first use and cached.

Source labels: ``sample_params`` uses ``labels`` when given; otherwise each source takes the
class of its nearest pool digit (1-nearest-neighbour, about 97% right on MNIST test digits).

Params: ``target_index`` (index of the target digit in the pool: the MNIST training index by
default), ``target_class``, ``t``. ``apply`` looks the target up by index, so a stored row
regenerates its image given the same pool.

Flow fields are the costly part (about a millisecond of CPU per pair), so they are cached
per (source image, target digit) in a bounded LRU (:data:`FIELD_CACHE_SIZE` fields of 6 kB):
every further ``t`` on the same pairs only warps and blends, for the whole batch at once.
The default pool costs about 235 MB of memory once loaded (see :class:`TargetPool`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache
from numbers import Integral

import numpy as np
from scipy import ndimage

from ..data import load_mnist
from ..errors import InvalidArgumentError
from ..images import check_images
from ._shared import bilinear, centre_of_mass, param_column, warp_affine
from .base import Perturbation, register

#: Flow fields kept for reuse across magnitudes (about 6 kB each).
FIELD_CACHE_SIZE = 20_000
#: Sources compared with the pool at a time (the distance block is CHUNK x P floats).
CHUNK = 256
#: Digits per class among which the medoid is chosen.
MEDOID_SUBSET = 1000
#: Where centring puts each digit's centre of mass, (x, y) in array indices (MNIST's own).
CENTRE = (14.0, 14.0)
#: Tikhonov term of the optical flow's local systems (see :func:`lucas_kanade`).
REGULARISATION = 1e-3
#: Blur of the coarse optical-flow stage (see :func:`estimate_flow`), in pixels.
COARSE_SIGMA = 1.5
#: Squared distance below which a pool digit counts as a copy of the source.
_DUPLICATE = 1e-3

_GRID_Y, _GRID_X = np.mgrid[0:28, 0:28].astype(np.float32)


def centre(images: np.ndarray) -> np.ndarray:
    """Shift each image (bilinearly) so that its centre of mass sits at :data:`CENTRE`.

    Parameters
    ----------
    images : (N, 28, 28) ndarray of float32 in [0, 1]

    Returns
    -------
    (N, 28, 28) ndarray of float32 in [0, 1]
    """
    offset = centre_of_mass(images) - np.asarray(CENTRE)
    return warp_affine(images, np.zeros((len(images), 2, 2)), offset)


class TargetPool:
    """The digits that morphs aim at, with what the nearest-digit search needs.

    Parameters
    ----------
    images : (P, 28, 28) ndarray of uint8, or of float in [0, 1]
        Kept as given (uint8 MNIST stays 47 MB); the search adds a centred float32 copy
        (188 MB for the 60,000 training digits), built on first use.
    labels : (P,) ndarray of int in 0-9
    key : str
        Identifies the pool in the flow-field cache.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, key: str) -> None:
        images = np.asarray(images)
        if images.dtype == np.uint8:
            if images.ndim != 3 or images.shape[1:] != (28, 28):
                raise InvalidArgumentError(f"pool_images must have shape (P, 28, 28); got {images.shape}")
        else:
            images = check_images(images, "pool_images")
        self._images = images
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidArgumentError(
                f"pool_labels must be {len(images)} integers; "
                f"got shape {labels.shape}, dtype {labels.dtype}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise InvalidArgumentError("pool_labels must lie in 0-9")
        self.labels = labels.astype(np.int64)
        self.key = key
        self._lock = threading.Lock()
        self._search = None
        self._medoids = None

    def __len__(self) -> int:
        return len(self._images)

    def digits(self, index: np.ndarray) -> np.ndarray:
        """The pool digits at ``index``, as (K, 28, 28) float32 in [0, 1]."""
        chosen = self._images[index]
        if chosen.dtype == np.uint8:
            return chosen.astype(np.float32) / np.float32(255.0)
        return chosen

    def _search_arrays(self):
        """Centred, flattened pool sorted by class, its squared norms, and class bounds."""
        with self._lock:
            if self._search is None:
                order = np.argsort(self.labels, kind="stable")
                flat = np.empty((len(order), 28 * 28), dtype=np.float32)
                for start in range(0, len(order), 4096):
                    block = order[start : start + 4096]
                    flat[start : start + len(block)] = centre(self.digits(block)).reshape(len(block), -1)
                bounds = np.searchsorted(self.labels[order], np.arange(11))
                self._search = (order, flat, (flat**2).sum(axis=1), bounds)
            return self._search

    def nearest(
        self, sources: np.ndarray, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest pool digit of each class to each source, after centring.

        Parameters
        ----------
        sources : (N, 28, 28) ndarray of float32 in [0, 1]
        labels : (N,) ndarray of int, optional
            The sources' classes; when missing, each source takes the class of its nearest
            pool digit.

        Returns
        -------
        distance : (N, 10) ndarray of float32
            Squared distance to the nearest digit of each class (inf for a class the pool
            lacks). In the source's own class, copies of the source (distance below
            ``_DUPLICATE`` after centring) are skipped: a digit is never its own target.
        index : (N, 10) ndarray of int64
            That digit's index in the pool (-1 for a class the pool lacks).
        labels : (N,) ndarray of int64
            The sources' classes, as given or inferred.
        """
        # A study samples the same sources at every magnitude t, and the targets do not
        # depend on t: remember the last search instead of repeating it.
        key = hashlib.blake2b(np.ascontiguousarray(sources).tobytes(), digest_size=16)
        key.update(b"-" if labels is None else np.asarray(labels, dtype=np.int64).tobytes())
        cached = getattr(self, "_last_nearest", None)
        if cached is not None and cached[0] == key.digest():
            return tuple(array.copy() for array in cached[1])
        result = self._nearest(sources, labels)
        self._last_nearest = (key.digest(), result)
        return tuple(array.copy() for array in result)

    def _nearest(self, sources, labels):
        order, flat, norms, bounds = self._search_arrays()
        n = len(sources)
        distance = np.full((n, 10), np.inf, dtype=np.float32)
        index = np.full((n, 10), -1, dtype=np.int64)
        inferred = labels is None
        labels = np.zeros(n, dtype=np.int64) if inferred else np.asarray(labels, dtype=np.int64)
        centred = centre(sources).reshape(n, -1)
        classes = [k for k in range(10) if bounds[k] < bounds[k + 1]]
        for start in range(0, n, CHUNK):
            block = slice(start, min(start + CHUNK, n))
            query = centred[block]
            # ||q - p||^2 = ||q||^2 + ||p||^2 - 2 q.p: one matrix product for the block.
            squared = query @ flat.T
            squared *= np.float32(-2.0)
            squared += (query**2).sum(axis=1)[:, None]
            squared += norms[None, :]
            if inferred:
                minima = np.stack(
                    [squared[:, bounds[k] : bounds[k + 1]].min(axis=1) for k in classes], axis=1
                )
                labels[block] = np.asarray(classes)[minima.argmin(axis=1)]
            for k in classes:
                part = squared[:, bounds[k] : bounds[k + 1]]
                own = labels[block] == k
                if own.any():
                    part[own] = np.where(part[own] < _DUPLICATE, np.inf, part[own])
                best = part.argmin(axis=1)
                distance[block, k] = part[np.arange(len(part)), best]
                index[block, k] = np.where(np.isfinite(distance[block, k]), order[bounds[k] + best], -1)
        return distance, index, labels

    def medoids(self) -> np.ndarray:
        """(10,) pool index of each class's medoid (-1 for a class the pool lacks)."""
        with self._lock:
            if self._medoids is None:
                medoids = np.full(10, -1, dtype=np.int64)
                for k in range(10):
                    members = np.flatnonzero(self.labels == k)[:MEDOID_SUBSET]
                    if not len(members):
                        continue
                    flat = self.digits(members).reshape(len(members), -1).astype(np.float64)
                    norms = (flat**2).sum(axis=1)
                    squared = norms[:, None] + norms[None, :] - 2.0 * flat @ flat.T
                    summed = np.sqrt(np.maximum(squared, 0.0)).sum(axis=1)
                    medoids[k] = members[summed.argmin()]
                self._medoids = medoids
            return self._medoids


@lru_cache(maxsize=1)
def default_pool() -> TargetPool:
    """The bundled MNIST training set as a target pool (loaded once)."""
    mnist = load_mnist()
    return TargetPool(mnist.x_train, mnist.y_train, key=f"mnist-train:{mnist.checksum}")


def _pool_key(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in (np.ascontiguousarray(images), np.ascontiguousarray(labels)):
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.data)
    return "custom:" + digest.hexdigest()


_FIELDS: OrderedDict[tuple, np.ndarray] = OrderedDict()
_FIELDS_LOCK = threading.Lock()


def clear_caches() -> None:
    """Forget the default target pool and the cached flow fields (a few hundred MB after a
    study): what the next morph needs is made again."""
    default_pool.cache_clear()
    with _FIELDS_LOCK:
        _FIELDS.clear()


def flow_fields(sources: np.ndarray, targets: np.ndarray, keys: list[tuple] | None = None) -> np.ndarray:
    """Displacement field from each source to its target, ``T(x + f(x)) ~ S(x)``.

    Estimated by :func:`estimate_flow`; fields are cached under ``keys`` (one hashable per
    pair) when given, and only the missing ones are computed, in one batch.

    Parameters
    ----------
    sources, targets : (N, 28, 28) ndarray of float32
    keys : list of N hashables, optional

    Returns
    -------
    (N, 2, 28, 28) ndarray of float32
        Row (down) and column (right) components, in pixels.
    """
    n = len(sources)
    fields = np.empty((n, 2) + sources.shape[1:], dtype=np.float32)
    missing = []
    with _FIELDS_LOCK:
        for i in range(n):
            cached = _FIELDS.get(keys[i]) if keys is not None else None
            if cached is None:
                missing.append(i)
            else:
                _FIELDS.move_to_end(keys[i])
                fields[i] = cached
    if missing:
        fields[missing] = estimate_flow(sources[missing], targets[missing])
        if keys is not None:
            with _FIELDS_LOCK:
                for i in missing:
                    _FIELDS[keys[i]] = fields[i].copy()
                while len(_FIELDS) > FIELD_CACHE_SIZE:
                    _FIELDS.popitem(last=False)
    return fields


def estimate_flow(sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Displacement fields ``f`` with ``target(x + f(x)) ~ source(x)``, coarse to fine.

    A 28x28 digit is too small for scikit-image's pyramid (one level), and Lucas-Kanade
    alone loses track of strokes displaced by more than about their width (3-4 px). So a
    first :func:`lucas_kanade` runs on both images blurred by a Gaussian of sigma
    :data:`COARSE_SIGMA`, where strokes are wide, and a second one refines its field on the
    images themselves. A digit shifted by 4 px is then tracked to within 0.1 px on MNIST,
    and by 6 px to within about 0.3 px.

    Parameters
    ----------
    sources, targets : (N, 28, 28) ndarray of float32

    Returns
    -------
    (N, 2, 28, 28) ndarray of float32
        Row (down) and column (right) components, in pixels.
    """
    sigma = (0, COARSE_SIGMA, COARSE_SIGMA)
    fields = np.empty((len(sources), 2) + sources.shape[1:], dtype=np.float32)
    # Blocks small enough for the intermediate arrays to stay in cache.
    for start in range(0, len(sources), CHUNK):
        block = slice(start, start + CHUNK)
        coarse = lucas_kanade(
            ndimage.gaussian_filter(sources[block], sigma),
            ndimage.gaussian_filter(targets[block], sigma),
            # Blurred strokes have weaker gradients; scale the Tikhonov term with them.
            regularisation=REGULARISATION / 10,
        )
        fields[block] = lucas_kanade(sources[block], targets[block], initial=coarse)
    return fields


def lucas_kanade(
    reference: np.ndarray,
    moving: np.ndarray,
    radius: int = 7,
    num_warp: int = 10,
    regularisation: float = REGULARISATION,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """Iterative Lucas-Kanade optical flow of a batch of image pairs.

    The algorithm of ``skimage.registration.optical_flow_ilk`` (same defaults: a uniform
    window of radius 7, 10 warps, bilinear warping with edge values; a 28x28 image is too
    small for its pyramid, so a single level), written for a whole batch at once: about ten
    times faster than calling it pair by pair. With ``regularisation=0`` it is that
    algorithm; a positive value adds ``regularisation * I`` to every local 2x2 system
    (Tikhonov), which leaves the field on and near the ink essentially unchanged but makes
    it fall to zero far from any ink, where scikit-image returns displacements of
    thousands of pixels from nearly singular systems.

    Parameters
    ----------
    reference, moving : (N, H, W) ndarray of float
        The field registers ``moving`` onto ``reference``: ``moving(x + f(x)) ~ reference(x)``.
    radius, num_warp : int
    regularisation : float
    initial : (N, 2, H, W) ndarray, optional
        Starting field (default zero).

    Returns
    -------
    (N, 2, H, W) ndarray of the inputs' float type
        Row and column components.
    """
    dtype = np.result_type(reference.dtype, moving.dtype, np.float32)
    reference = reference.astype(dtype, copy=False)
    moving = moving.astype(dtype, copy=False)
    n, height, width = reference.shape
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(dtype)
    flow_y = np.zeros(reference.shape, dtype) if initial is None else initial[:, 0].astype(dtype)
    flow_x = np.zeros(reference.shape, dtype) if initial is None else initial[:, 1].astype(dtype)
    size = (1, 2 * radius + 1, 2 * radius + 1)

    def window(a):
        return ndimage.uniform_filter(a, size=size, mode="mirror")

    for _ in range(num_warp):
        warped = _sample_edge(moving, grid_y + flow_y, grid_x + flow_x)
        grad_y, grad_x = np.gradient(warped, axis=(1, 2))
        error = grad_y * flow_y + grad_x * flow_x + reference - warped
        a_yy = window(grad_y * grad_y) + regularisation
        a_yx = window(grad_y * grad_x)
        a_xx = window(grad_x * grad_x) + regularisation
        b_y = window(grad_y * error)
        b_x = window(grad_x * error)
        det = a_yy * a_xx - a_yx * a_yx
        # As scikit-image: a singular system gives no displacement.
        solvable = np.abs(det) >= 1e-14
        det = np.where(solvable, det, 1)
        flow_y = np.where(solvable, (a_xx * b_y - a_yx * b_x) / det, 0).astype(dtype)
        flow_x = np.where(solvable, (a_yy * b_x - a_yx * b_y) / det, 0).astype(dtype)
    return np.stack([flow_y, flow_x], axis=1)


def _sample_edge(images: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear samples of each image, coordinates clamped to the frame (edge values)."""
    n, height, width = images.shape
    y = np.clip(y, 0, height - 1)
    x = np.clip(x, 0, width - 1)
    y0 = np.minimum(np.floor(y), height - 2)
    x0 = np.minimum(np.floor(x), width - 2)
    fy, fx = y - y0, x - x0
    index = (np.arange(n)[:, None, None] * height + y0.astype(np.intp)) * width + x0.astype(np.intp)
    flat = images.reshape(-1)
    top_left, top_right = flat[index], flat[index + 1]
    bottom_left, bottom_right = flat[index + width], flat[index + width + 1]
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    return top + (bottom - top) * fy


def flow_morph(sources: np.ndarray, targets: np.ndarray, fields: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(1 - t) S(y - t f(y)) + t T(y + (1 - t) f(y))`` for the whole batch at once.

    Parameters
    ----------
    sources, targets : (N, 28, 28) ndarray of float32 in [0, 1]
    fields : (N, 2, 28, 28) ndarray of float32
        From :func:`flow_fields`.
    t : (N,) ndarray of float in [0, 1]

    Returns
    -------
    (N, 28, 28) ndarray of float32 in [0, 1]; exactly the source where t = 0 and the target
    where t = 1.
    """
    out = np.empty_like(sources)
    for start in range(0, len(sources), CHUNK):
        block = slice(start, start + CHUNK)
        w = t[block].astype(np.float32)[:, None, None]
        dy, dx = fields[block, 0], fields[block, 1]
        moved_source = bilinear(sources[block], _GRID_Y - w * dy, _GRID_X - w * dx)
        moved_target = bilinear(targets[block], _GRID_Y + (1 - w) * dy, _GRID_X + (1 - w) * dx)
        out[block] = np.clip((1 - w) * moved_source + w * moved_target, 0.0, 1.0)
    out[t == 0] = sources[t == 0]
    out[t == 1] = targets[t == 1]
    return out


@register
class Morph(Perturbation):
    """Morph toward a digit of another class (see the module docstring for the options).

    Params: ``target_index`` (pool index), ``target_class``, ``t``.
    """

    name = "morph"
    unit = "t"
    description = (
        "interpolation weight toward a digit of another class (0 = the digit, 1 = the target); "
        "method=flow moves the ink along an optical-flow field, crossfade blends pixels"
    )
    default_magnitudes = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    magnitude_range = (0.0, 1.0)
    random = False

    METHODS = ("flow", "crossfade")
    POOLS = ("nearest", "medoid")

    def __init__(
        self,
        method: str = "flow",
        target: str | int = "nearest",
        pool: str = "nearest",
        pool_images: np.ndarray | None = None,
        pool_labels: np.ndarray | None = None,
    ) -> None:
        if method not in self.METHODS:
            raise InvalidArgumentError(f"morph: method must be one of {self.METHODS}; got {method!r}")
        if isinstance(target, bool) or not (
            target in ("nearest", "all") or (isinstance(target, Integral) and 0 <= target <= 9)
        ):
            raise InvalidArgumentError(f"morph: target must be 'nearest', 'all' or a class 0-9; got {target!r}")
        if pool not in self.POOLS:
            raise InvalidArgumentError(f"morph: pool must be one of {self.POOLS}; got {pool!r}")
        if (pool_images is None) != (pool_labels is None):
            raise InvalidArgumentError("morph: give both pool_images and pool_labels, or neither")
        target = target if isinstance(target, str) else int(target)
        self.options = {"method": method, "target": target, "pool": pool}
        # Draws pick different target classes only when cycling through them.
        self.random = target == "all"
        self._pool = None
        if pool_images is not None:
            self._pool = TargetPool(pool_images, pool_labels, _pool_key(pool_images, pool_labels))
            self.options["pool_size"] = len(self._pool)

    @property
    def pool(self) -> TargetPool:
        """The target pool (the MNIST training set unless one was given)."""
        if self._pool is None:
            self._pool = default_pool()
        return self._pool

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        t = self.check_magnitude(magnitude)
        if images is None:
            raise ValueError("morph: sample_params needs the source images (targets depend on them)")
        images = check_images(images)
        if len(images) != n:
            raise ValueError(f"morph: got {len(images)} images for n={n}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or (
                n and (labels.min() < 0 or labels.max() > 9)
            ):
                raise InvalidArgumentError(f"morph: labels must be {n} integers in 0-9; got shape {labels.shape}")
            labels = labels.astype(np.int64)
        target, pool_kind = self.options["target"], self.options["pool"]
        if labels is None or target == "nearest" or pool_kind == "nearest":
            distance, nearest_index, labels = self.pool.nearest(images, labels)
        if target == "nearest":
            others = np.where(np.arange(10)[None, :] == labels[:, None], np.inf, distance)
            target_class = others.argmin(axis=1)
        elif target == "all":
            # The k-th class other than the label: skip the label by adding one past it.
            k = int(draw) % 9
            target_class = np.where(k >= labels, k + 1, k)
        else:
            target_class = np.full(n, target, dtype=np.int64)
        if pool_kind == "nearest":
            target_index = nearest_index[np.arange(n), target_class]
        else:
            target_index = self.pool.medoids()[target_class]
        if n and target_index.min() < 0:
            missing = sorted(set(target_class[target_index < 0].tolist()))
            raise InvalidArgumentError(f"morph: the target pool has no digits of class {missing}")
        return {
            "target_index": target_index.astype(np.int64),
            "target_class": target_class.astype(np.int64),
            "t": np.full(n, t),
        }

    def apply(self, images, params):
        images = check_images(images)
        n = len(images)
        t = param_column(params, "t", n, self.name)
        if n and (t.min() < 0 or t.max() > 1):
            raise ValueError(f"morph: param 't' must lie in [0, 1]; got [{t.min():g}, {t.max():g}]")
        if not t.any():
            return images.copy()
        index = param_column(params, "target_index", n, self.name)
        target_class = param_column(params, "target_class", n, self.name)
        pool = self.pool
        if n and (index.min() < 0 or index.max() >= len(pool) or (index != np.floor(index)).any()):
            raise ValueError(f"morph: param 'target_index' must hold pool indices in [0, {len(pool)})")
        index = index.astype(np.int64)
        if (pool.labels[index] != target_class).any():
            raise ValueError(
                "morph: param 'target_class' disagrees with the pool's labels at 'target_index' "
                "(params from a different target pool?)"
            )
        targets = pool.digits(index)
        if self.options["method"] == "crossfade":
            w = t.astype(np.float32)[:, None, None]
            out = np.clip((1 - w) * images + w * targets, 0.0, 1.0)
            out[t == 0] = images[t == 0]
            out[t == 1] = targets[t == 1]
            return out
        out = np.empty_like(images)
        moving = (t > 0) & (t < 1)
        out[~moving] = np.where((t[~moving] == 0)[:, None, None], images[~moving], targets[~moving])
        chosen = np.flatnonzero(moving)
        if len(chosen):
            keys = [
                (pool.key, hashlib.blake2b(images[i].tobytes(), digest_size=16).digest(), int(index[i]))
                for i in chosen
            ]
            fields = flow_fields(images[chosen], targets[chosen], keys)
            out[chosen] = flow_morph(images[chosen], targets[chosen], fields, t[chosen])
        return out
