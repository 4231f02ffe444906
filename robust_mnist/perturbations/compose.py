"""Composition: several perturbation families applied in sequence (for example rotate, then thin).

The composite magnitude is a dimensionless strength ``m``: each step is configured with its
own magnitude in its own unit (the step's strength at ``m = 1``) and runs at ``m`` times that,
so ``m = 0`` is the identity and ``m = 0.5`` runs every step at half strength. A step marked
``"fixed": true`` runs at its own magnitude whatever ``m`` is (a fixed context, for example
"rotate 20 degrees" while noise grows); with a fixed step, ``m = 0`` is no longer the identity.

Example::

    get("compose", steps=[
        {"family": "rotate", "magnitude": 30},            # 30 degrees at m = 1
        {"family": "thin", "magnitude": 1},               # 1 px thinner at m = 1
        {"family": "occlude", "magnitude": 4, "fixed": True, "shape": "patch"},
    ])

Any other key of a step is an option of that family. Params are the steps' params prefixed
with the step number: ``s0_angle``, ``s1_...``, ``s2_x``...

A step whose params depend on the digit (occlude places its bar on ink; morph picks a target
near the digit) samples them on the digit as the earlier steps left it, so ``sample_params``
applies those earlier steps when it is given the images. A family declares it does not need
this with the class attribute ``needs_images = False`` (the base class says True).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..images import check_images
from .base import Perturbation, get, register

#: Largest composite magnitude accepted, unless the steps' ranges allow less.
MAX_STRENGTH = 10.0


@register
class Compose(Perturbation):
    """Apply several families in sequence at a common strength.

    Options
    -------
    steps : sequence of mappings
        Each ``{"family": NAME, "magnitude": M, "fixed": False, **options}``: the step's
        family, its magnitude at composite magnitude 1 (in the family's unit), whether it
        ignores the composite magnitude, and that family's options.
    """

    name = "compose"
    unit = "x each step's magnitude"
    description = (
        "steps applied in sequence (option steps=[{family, magnitude, fixed, ...}]), "
        "each at this multiple of its own magnitude"
    )
    default_magnitudes = (0.0, 0.25, 0.5, 0.75, 1.0)
    magnitude_range = (0.0, MAX_STRENGTH)
    # Whether a composition is random depends on its steps; the instance says exactly.
    random = True

    def __init__(self, steps: Sequence[Mapping] | None = None) -> None:
        if not steps or isinstance(steps, (str, Mapping)):
            raise InvalidArgumentError(
                "compose needs steps=[{'family': NAME, 'magnitude': M, ...options}, ...]; "
                f"got {steps!r}"
            )
        self.steps: list[tuple[Perturbation, float, bool]] = []
        low, high = 0.0, MAX_STRENGTH
        for number, step in enumerate(steps):
            if not isinstance(step, Mapping) or "family" not in step or "magnitude" not in step:
                raise InvalidArgumentError(
                    f"compose: step {number} must be a mapping with 'family' and 'magnitude'; got {step!r}"
                )
            options = {k: v for k, v in step.items() if k not in ("family", "magnitude", "fixed")}
            perturbation = get(step["family"], **options)
            fixed = bool(step.get("fixed", False))
            magnitude = float(step["magnitude"])
            if fixed:
                perturbation.check_magnitude(magnitude)
            elif magnitude != 0:
                # Strengths m >= 0 keeping m * magnitude inside the step's range.
                bounds = sorted(limit / magnitude for limit in perturbation.magnitude_range)
                low, high = max(low, bounds[0]), min(high, bounds[1])
            self.steps.append((perturbation, magnitude, fixed))
        if low > high:
            raise InvalidArgumentError(f"compose: no strength satisfies every step's magnitude range ({steps!r})")
        self.magnitude_range = (low, high)
        self.random = any(perturbation.random for perturbation, _, _ in self.steps)
        self.needs_images = any(p.needs_images for p, _, _ in self.steps)
        self.options = {"steps": [dict(step) for step in steps]}

    def step_magnitudes(self, magnitude: float) -> list[float]:
        """The magnitude each step runs at, at composite ``magnitude``."""
        magnitudes = []
        for perturbation, own, fixed in self.steps:
            value = own if fixed else magnitude * own
            # m * own can overshoot a range edge by one rounding step at the edge itself.
            magnitudes.append(float(np.clip(value, *perturbation.magnitude_range)))
        return magnitudes

    def sample_params(self, n, magnitude, rng, *, images=None, labels=None, draw=0):
        magnitude = self.check_magnitude(magnitude)
        current = None if images is None else check_images(images)
        params: dict[str, np.ndarray] = {}
        for number, ((perturbation, _, _), step_magnitude) in enumerate(
            zip(self.steps, self.step_magnitudes(magnitude))
        ):
            step_params = perturbation.sample_params(
                n, step_magnitude, rng, images=current, labels=labels, draw=draw
            )
            # Later steps that look at the digit (occlude, morph) must see it as the earlier
            # steps left it, not the clean one. Families declare ``needs_images = False``
            # when their params ignore the digit.
            later_need_images = any(
                later.needs_images for later, _, _ in self.steps[number + 1 :]
            )
            if current is not None and later_need_images:
                current = perturbation.apply(current, step_params)
            params.update({f"s{number}_{key}": value for key, value in step_params.items()})
        return params

    def apply(self, images, params):
        images = check_images(images)
        for number, (perturbation, _, _) in enumerate(self.steps):
            prefix = f"s{number}_"
            step_params = {
                key[len(prefix):]: value for key, value in params.items() if key.startswith(prefix)
            }
            images = perturbation.apply(images, step_params)
        return images
