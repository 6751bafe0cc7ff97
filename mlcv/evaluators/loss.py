"""The mean per-example loss over the real examples of a split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.evaluators.base import SummingEvaluator
from mlcv.evaluators.registry import register


@register("loss")
class LossEvaluator(SummingEvaluator):
    """``loss``: the mean of ``outputs[loss_key]`` (one value per example) over unpadded examples.

    The device sums ``loss * mask`` over the batch in float32; the host adds the batch sums in
    float64 and divides by the number of real examples: the arithmetic evaluation has always used,
    so losses stay bit-identical across the change to evaluators. NaN for an empty split.
    """

    directions = {"loss": "min"}
    must_be_finite = frozenset({"loss"})

    def __init__(self, loss_key: str = "loss"):
        self.loss_key = loss_key
        self.reset()

    def zeros(self) -> dict[str, np.ndarray]:
        return {"sum": np.float64(0.0), "count": np.float64(0.0)}

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        mask = batch["mask"]
        return {"sum": jnp.sum(outputs[self.loss_key] * mask), "count": jnp.sum(mask)}

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        total, count = self.totals["sum"], self.totals["count"]
        return {"loss": float(total / count) if count else float("nan")}, {}
