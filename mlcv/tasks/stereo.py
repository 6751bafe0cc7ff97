"""Deep stereo, optical flow and monocular depth (course §12.1-12.2) as tasks on the one training loop.

- ``disparity``: a network that reads both views and predicts the left view's disparity (DispNet-C, GC-Net),
  trained on ground truth: the mean L1 error over valid pixels at every scale the model predicts, the ground truth
  average-pooled to that scale and its values scaled with the width (``config.stereo.scale_weights``).
- ``flow``: the same for two frames and a flow field (FlowNet-C): the mean end-point error at every scale.
- ``monodepth``: a network that reads the LEFT image alone and predicts left and right disparities, trained without
  any ground truth from the stereo pair (Godard et al. 2017): each view rebuilt from the other by backward warping,
  the appearance (eq. 75), edge-aware smoothness (eq. 76) and left-right consistency (eq. 77) terms, summed over
  the scales (eq. 78), weighted by ``config.monodepth``. The ground truth is read by the evaluator only.

Every task predicts ``disparity`` (or ``flow``) at the input resolution in pixels, which the ``disparity`` and
``flow`` evaluators score (bad-k, EPE, density; with the dataset's occlusion map where it has one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mlcv import models
from mlcv.config import ConfigError
from mlcv.losses import depth as depth_losses
from mlcv.tasks.base import StepContext, Task


def _pool_to(x: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """``x`` [B, H, W, ...] average-pooled to ``shape`` (H and W must be multiples of it)."""
    b, h, w = x.shape[:3]
    fh, fw = h // shape[0], w // shape[1]
    if fh * shape[0] != h or fw * shape[1] != w:
        raise ValueError(f"a prediction of {shape} does not divide the input's {h}x{w}")
    return x.reshape(b, shape[0], fh, shape[1], fw, *x.shape[3:]).mean(axis=(2, 4))


def _by_size(maps: Sequence[jax.Array]) -> list[jax.Array]:
    """Multi-scale predictions, finest first, whatever order the model returns them in."""
    return sorted(maps, key=lambda m: -m.shape[2])


def _scale_weights(config: ml_collections.ConfigDict, scales: int) -> tuple[float, ...]:
    """``config.stereo.scale_weights`` finest first (empty: 1 for every scale), one per scale the model predicts."""
    weights = tuple(config.stereo.get("scale_weights") or ()) or (1.0,) * scales
    if len(weights) != scales:
        raise ConfigError(f"config.stereo.scale_weights has {len(weights)} weights for the model's {scales} scales")
    return weights


def _check_range(config: ml_collections.ConfigDict, meta: Any, key: str) -> None:
    """A disparity range wider than the image matches nothing: refused naming the key."""
    shape = getattr(meta, "image_shape", None)
    value = int(config.model.get("max_disparity", 0) or 0)
    if shape and shape[1] and value >= shape[1]:
        raise ConfigError(f"{key}={value}: wider than the images of {config.data.name!r} ({shape[1]} px)")


class DisparityTask(Task):
    """Supervised stereo: ``{'image', 'image_right'}`` -> the left disparity, trained on ``disparity``."""

    input_keys = ("image", "image_right")
    target_keys = ("disparity", "disparity_mask")
    headline = "bad2"
    also_reported = ("epe", "bad2_noc")

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        _check_range(config, meta, "config.model.max_disparity")
        features = getattr(meta, "features", {}) or {}
        # The occlusion map, where the dataset has one, only feeds the evaluator's non-occluded figures.
        self.occlusion = "occlusion" in features
        if self.occlusion:
            self.target_keys = (*type(self).target_keys, "occlusion")
        super().__init__(config, meta, runs)

    def build_model(self) -> nn.Module:
        return models.from_config(self.config.model)

    def losses(self, outputs: Any, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """Mean L1 over valid pixels at every predicted scale, weighted by ``config.stereo.scale_weights``."""
        del context  # supervised: nothing but the batch
        gt = batch["disparity"].astype(jnp.float32)
        valid = (batch["disparity_mask"] > 0) & jnp.isfinite(gt)
        gt = jnp.where(valid, gt, 0.0)
        preds = _by_size(outputs.get("disparities") or (outputs["disparity"],))
        weights = _scale_weights(self.config, len(preds))
        total = 0.0
        for weight, pred in zip(weights, preds, strict=True):
            h, w = pred.shape[1:3]
            scale = w / gt.shape[2]  # disparities are in the pixels of their own scale
            v = _pool_to(valid.astype(jnp.float32), (h, w))
            target = _pool_to(gt, (h, w)) * scale / jnp.maximum(v, 1e-6)
            err = jnp.abs(pred.astype(jnp.float32) - target) * (v > 0.99)
            total = total + weight * err.sum() / jnp.maximum((v > 0.99).sum(), 1.0)
        return {"l1": total}

    def predict(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The full-resolution left disparity, in pixels."""
        del batch  # the evaluator reads the ground truth
        return {"disparity": outputs["disparity"].astype(jnp.float32)}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """bad-1/2/4, EPE and density, non-occluded too where the dataset marks occlusions."""
        sc = self.config.stereo
        calibration = {"focal_px": sc.focal_px, "baseline": sc.baseline} if sc.get("focal_px") else {}
        occlusion = {} if self.occlusion else {"occlusion_key": None}
        return {"disparity": {"type": "disparity", **occlusion, **calibration}}


class MonodepthTask(DisparityTask):
    """Self-supervised depth from one image (Godard et al. 2017): trained on stereo pairs, no ground truth."""

    input_keys = ("image",)
    target_keys = ("image_right", "disparity", "disparity_mask")

    def _terms(self, outputs: Any, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Eq. 78 and its unweighted terms. The photometric terms compare intensities in [0, 1] (the pipeline's
        [-1, 1], normalize 127.5 / 127.5), and disparities enter as fractions of their scale's width, the units the
        paper's weights were tuned in (alpha_ds = 0.1 on pixel disparities would weigh smoothness ~W times more)."""
        mc = self.config.monodepth
        left = (batch["image"].astype(jnp.float32) + 1.0) / 2.0
        right = (batch["image_right"].astype(jnp.float32) + 1.0) / 2.0
        disp_l = [d / d.shape[2] for d in _by_size(outputs["disp_left"])]
        disp_r = [d / d.shape[2] for d in _by_size(outputs["disp_right"])]
        return depth_losses.monodepth_loss(
            [_pool_to(left, d.shape[1:3]) for d in disp_l],
            [_pool_to(right, d.shape[1:3]) for d in disp_r],
            disp_l,
            disp_r,
            alpha_ap=float(mc.alpha_ap),
            alpha_ds=float(mc.alpha_ds),
            alpha_lr=float(mc.alpha_lr),
            alpha_ssim=float(mc.alpha_ssim),
            normalised=True,
        )

    def losses(self, outputs: Any, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """Eq. 78 over the scales: appearance, smoothness and left-right terms, weighted by ``config.monodepth``."""
        del context  # self-supervised: the pair is the supervision
        return {"monodepth": self._terms(outputs, batch)[0]}

    def train_metrics(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The unweighted terms of eq. 78, so that an ablation's rows compare term by term."""
        return dict(self._terms(outputs, batch)[1])


class FlowTask(Task):
    """Optical flow: ``{'image', 'image_next'}`` -> the flow of the first frame, trained on ``flow``."""

    input_keys = ("image", "image_next")
    target_keys = ("flow", "flow_mask")
    headline = "flow_epe"
    also_reported = ("flow_outliers",)

    def build_model(self) -> nn.Module:
        return models.from_config(self.config.model)

    def losses(self, outputs: Any, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """Mean end-point error over valid pixels at every predicted scale (``config.stereo.scale_weights``)."""
        del context
        gt = batch["flow"].astype(jnp.float32)
        valid = (batch["flow_mask"] > 0) & jnp.all(jnp.isfinite(gt), -1)
        gt = jnp.where(valid[..., None], gt, 0.0)
        preds = _by_size(outputs.get("flows") or (outputs["flow"],))
        weights = _scale_weights(self.config, len(preds))
        total = 0.0
        for weight, pred in zip(weights, preds, strict=True):
            h, w = pred.shape[1:3]
            scale = jnp.array([w / gt.shape[2], h / gt.shape[1]], jnp.float32)
            v = _pool_to(valid.astype(jnp.float32), (h, w))
            target = _pool_to(gt, (h, w)) * scale / jnp.maximum(v, 1e-6)[..., None]
            epe = jnp.sqrt(jnp.sum((pred.astype(jnp.float32) - target) ** 2, -1) + 1e-12) * (v > 0.99)
            total = total + weight * epe.sum() / jnp.maximum((v > 0.99).sum(), 1.0)
        return {"epe": total}

    def predict(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The full-resolution flow, in pixels."""
        del batch
        return {"flow": outputs["flow"].astype(jnp.float32)}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """End-point error and KITTI's outlier rate."""
        return {"flow": {"type": "flow"}}
