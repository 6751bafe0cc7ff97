"""A trained stereo run on a pair it never saw: another size, another disparity range, timed.

The learned stereo models of issue 14 train on 64 x 128 synthetic pairs with disparities up to 24 px; the real
Middlebury Motorcycle pair is 500 x 741 with disparities 7-60 px. :func:`predict_pair` runs a run's network on any
pair through the run's own evaluation preprocessing, optionally at ``1 / downscale`` of the resolution (block
means), padded at the right and bottom to a multiple the network needs, and brings the disparity back to the full
resolution (bilinear, values times ``downscale``). Settings of the run's config can be overridden first (MC-CNN's
``mccnn.max_disparity`` for a wider range). The time is the best of ``repeats`` calls after one compiling call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlcv import data
from mlcv.config import ConfigError
from mlcv.data import ops as ops_lib
from mlcv.orchestration import sweep
from mlcv.training import runs


def with_overrides(run: runs.Run, overrides: Mapping[str, Any], dataset: str) -> runs.Run:
    """``run`` with config ``overrides`` and its task rebuilt for ``dataset`` (its checks see that image size)."""
    config = sweep.apply(run.config, dict(overrides))
    task = runs.build_task(config, data.meta(data.get(dataset)))
    return runs.Run(workdir=run.workdir, step=run.step, config=config, task=task, variables=run.variables)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """``[H, W, ...]`` averaged over ``factor x factor`` blocks (the border rows and columns that do not fill a
    block are dropped)."""
    if factor == 1:
        return np.asarray(image, np.float32)
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    x = np.asarray(image[:h, :w], np.float32)
    return x.reshape(h // factor, factor, w // factor, factor, *x.shape[2:]).mean(axis=(1, 3))


def predict_pair(
    run: runs.Run,
    left: np.ndarray,
    right: np.ndarray,
    *,
    downscale: int = 1,
    multiple: int = 64,
    repeats: int = 3,
) -> tuple[np.ndarray, float]:
    """The left disparity ``[H, W]`` (px of the full resolution, NaN where none) of ``run`` on one grey pair
    ``[H, W, 1]`` (0-255), and the seconds per call (best of ``repeats``, compilation excluded)."""
    if left.shape != right.shape or left.ndim != 3:
        raise ConfigError(f"expected two [H, W, C] views of one size, got {left.shape} and {right.shape}")
    h, w = left.shape[:2]
    small = [block_mean(v, downscale) for v in (left, right)]
    sh, sw = small[0].shape[:2]
    ph, pw = -sh % multiple, -sw % multiple
    # Edge padding: zeros would be a black band that the right view's matcher could latch on to.
    padded = [np.pad(v, ((0, ph), (0, pw), (0, 0)), mode="edge") for v in small]
    op = ops_lib.parse(run.config.data.pp_eval, data.get(run.config.data.name).op_defaults)
    example = op({"image": padded[0], "image_right": padded[1]}, np.random.default_rng(0))
    batch = {k: np.asarray(example[k])[None] for k in run.task.input_keys}
    disparity = np.asarray(jax.block_until_ready(run.predict(batch))["disparity"])  # compiles
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run.predict(batch))
        best = min(best, time.perf_counter() - t)
    disparity = disparity[0, :sh, :sw]
    if downscale > 1:
        finite = np.isfinite(disparity)
        # Missing estimates stay missing: resize the values and the mask, keep pixels wholly inside estimates.
        up = np.asarray(jax.image.resize(jnp.where(finite, disparity, 0.0), (sh * downscale, sw * downscale), "linear"))
        ok = np.asarray(jax.image.resize(finite.astype(np.float32), up.shape, "linear")) > 0.999
        disparity = np.where(ok, up * downscale, np.nan)
    out = np.full((h, w), np.nan, np.float32)
    out[: disparity.shape[0], : disparity.shape[1]] = disparity
    return out, best
