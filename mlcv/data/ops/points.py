"""Feature maps of points: ops on examples whose ``image`` holds coordinates ``(..., 2)`` of the plane.

``polar``: the course's polar features (§5). A point ``(x, y)`` becomes ``(r, θ)`` with ``r = sqrt(x² + y²)`` and
``θ = atan2(y, x)`` in ``(-π, π]``. Classes that differ only in their distance from the origin, such as two
concentric circles (the ``circles`` dataset), are not separable by a line of the (x, y) plane, but are by the line
``r = t`` of the (r, θ) plane: a linear classifier on polar features thresholds ``r`` and can ignore ``θ``.
"""

from __future__ import annotations

import numpy as np

from mlcv.data.ops.registry import Example, Op, register


def polar_coordinates(points: np.ndarray) -> np.ndarray:
    """``(r, θ)`` of each ``(x, y)`` along the last axis, as float32: ``r = hypot(x, y)``, ``θ = atan2(y, x)``.

    Raises:
      ValueError: the last axis does not have length 2.
    """
    points = np.asarray(points, np.float32)
    if points.shape[-1:] != (2,):
        raise ValueError(f"polar: needs (x, y) points on the last axis, got an array of shape {points.shape}")
    x, y = points[..., 0], points[..., 1]
    return np.stack([np.hypot(x, y), np.arctan2(y, x)], axis=-1)


@register("polar", moves=("image",))
def polar() -> Op:
    """Replaces the ``(x, y)`` of ``image`` by its polar coordinates ``(r, θ)`` (:func:`polar_coordinates`)."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return {**ex, "image": polar_coordinates(ex["image"])}

    return op
