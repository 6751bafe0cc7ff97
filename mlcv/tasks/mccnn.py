"""MC-CNN (Zbontar & LeCun 2016, course §12.1): a learned matching cost in the classic stereo pipeline.

The network scores whether a left and a right patch correspond (``mccnn_fast``: the cosine of two feature vectors;
``mccnn_accurate``: a fully connected head on the concatenated features), run densely over both views:

- training: at every valid, non-occluded pixel the positive pair is the right pixel at the ground-truth disparity
  (rounded) and the negative one a right pixel ``o`` pixels off, ``o`` drawn in ``[neg_low, neg_high]`` with a random
  sign (the paper's ``dataset_neg_low`` / ``_high``); the fast network learns by the hinge
  ``max(0, margin + s_neg - s_pos)``, the accurate one by binary cross-entropy. Only those two disparities are
  scored (``pair_scores``; the accurate head on all D would cost 16x more), and every pixel's pair is the paper's
  patch sampling without cutting patches (the features of a pixel are those of the patch centred on it, checked in
  tests/models/test_stereo_models.py), except at the image border, where the dense features see zero padding.
  The negatives' randomness is the step's dropout key.
- evaluation: the scores of every disparity 0..D-1 at once (``match_scores``) become the cost volume of mlcv's
  block matching (higher is better, -inf where x - d < 0), then the same winner-takes-all, left-right check,
  parabola sub-pixel refinement and background fill (``config.mccnn.lr_threshold``, ``subpixel``, ``fill``).
  Before them ``config.mccnn.aggregate_radius`` > 0 averages the scores of each disparity over a ``(2r + 1)^2``
  window (``mlcv.ops.stereo.box_mean``): a fixed box where the paper grows cross-based support regions from the
  image colours. Then ``config.mccnn.sgm_p1`` > 0 smooths the volume by semi-global matching on the negated
  scores (``mlcv.ops.sgm``: four paths, penalties ``sgm_p1`` for a one-disparity step and ``sgm_p2`` for a jump;
  the paper's eight paths and its penalties modulated by image edges are not reproduced).
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
from mlcv.models import mccnn as mccnn_models
from mlcv.ops import sgm
from mlcv.ops import stereo as stereo_ops
from mlcv.tasks.base import StepContext
from mlcv.tasks.stereo import DisparityTask


class MCCNNTask(DisparityTask):
    """``{'image', 'image_right'}`` -> a disparity through MC-CNN's cost volume and the classic pipeline."""

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        mc = config.mccnn
        shape = getattr(meta, "image_shape", None)
        if shape and shape[1] and int(mc.max_disparity) >= shape[1]:
            raise ConfigError(
                f"config.mccnn.max_disparity={mc.max_disparity}: wider than the images of {config.data.name!r} "
                f"({shape[1]} px)"
            )
        if not 1 <= int(mc.neg_low) <= int(mc.neg_high):
            raise ConfigError(f"config.mccnn.neg_low={mc.neg_low}, neg_high={mc.neg_high}: need 1 <= low <= high")
        super().__init__(config, meta, runs)
        # The fast network's cosine learns by the paper's hinge, the accurate one's logit by cross-entropy.
        self.hinge = isinstance(self.model, mccnn_models.MCCNNFast)

    def build_model(self) -> nn.Module:
        return models.from_config(self.config.model)

    def init_variables(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Initialised through the dense path the task runs (the patch ``__call__`` takes patches, not images)."""
        left, right = (jnp.asarray(batch[k][:1]) for k in self.input_keys)
        d = int(self.config.mccnn.max_disparity)
        return self.model.init({"params": rng}, left, right, d, method="match_scores")

    def apply(self, variables: Mapping[str, Any], batch: Mapping[str, jax.Array], **kwargs: Any) -> Any:
        """Evaluation: the dense scores ``[B, H, W, D]`` of every pixel and disparity. Training: the scores of one
        positive and one negative disparity per pixel (``pair_scores``) and the pixels where both count."""
        rngs = kwargs.pop("rngs", None)
        kwargs.pop("train", None)  # the network has no train-time layers
        if "mutable" not in kwargs:
            d = int(self.config.mccnn.max_disparity)
            scores = self.model.apply(variables, batch["image"], batch["image_right"], d, method="match_scores")
            return {"scores": scores}
        key = rngs["dropout"] if rngs and "dropout" in rngs else jax.random.PRNGKey(int(self.config.seed))
        pos, neg, ok = self._pairs(batch, key)
        scores, updates = self.model.apply(
            variables,
            batch["image"],
            batch["image_right"],
            jnp.stack([pos, neg], -1),
            method="pair_scores",
            **kwargs,
        )
        return {"pair_scores": scores, "pair_ok": ok}, updates

    def _pairs(self, batch: Mapping[str, jax.Array], key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per pixel: the ground-truth disparity (rounded), a negative ``neg_low``-``neg_high`` px off it with a
        random sign, and where both are usable (valid, non-occluded, in the volume, inside the right view)."""
        mc = self.config.mccnn
        d = int(mc.max_disparity) + 1
        gt = batch["disparity"].astype(jnp.float32)
        b, h, w = gt.shape[:3]
        ok = (batch["disparity_mask"] > 0) & jnp.isfinite(gt)
        if "occlusion" in batch:
            ok &= batch["occlusion"] == 0
        pos = jnp.round(jnp.where(ok, gt, 0.0)).astype(jnp.int32)
        k1, k2 = jax.random.split(key)
        offset = jax.random.randint(k1, (b, h, w), int(mc.neg_low), int(mc.neg_high) + 1)
        neg = pos + jnp.where(jax.random.bernoulli(k2, 0.5, (b, h, w)), offset, -offset)
        x = jnp.arange(w)[None, None, :]
        ok &= (pos < d) & (neg >= 0) & (neg < d) & (x - jnp.maximum(pos, neg) >= 0)
        return jnp.clip(pos, 0, d - 1), jnp.clip(neg, 0, d - 1), ok

    def losses(self, outputs: Any, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """Hinge (fast) or cross-entropy (accurate) of one positive and one negative disparity per pixel."""
        del batch, context  # the pairs were drawn in ``apply``
        scores = outputs["pair_scores"].astype(jnp.float32)
        s_pos, s_neg = scores[..., 0], scores[..., 1]
        ok = outputs["pair_ok"]
        if self.hinge:
            per_pixel = jnp.maximum(0.0, float(self.config.mccnn.margin) + s_neg - s_pos)
        else:
            per_pixel = jax.nn.softplus(-s_pos) + jax.nn.softplus(s_neg)
        loss = jnp.sum(per_pixel * ok) / jnp.maximum(jnp.sum(ok), 1.0)
        return {"hinge" if self.hinge else "bce": loss}

    def predict(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """WTA, left-right check, sub-pixel and fill on the learned volume; NaN where no estimate is left."""
        del batch
        mc = self.config.mccnn
        scores = outputs["scores"].astype(jnp.float32)
        w, d = scores.shape[2], scores.shape[3]
        defined = jnp.arange(w)[:, None] - jnp.arange(d)[None, :] >= 0  # [W, D]: x - d inside the right view
        volume = jnp.moveaxis(scores, -1, 1)  # [B, D, H, W]
        mask = jnp.moveaxis(defined, -1, 0)[None, :, None, :]  # [1, D, 1, W]
        volume = stereo_ops.box_mean(volume, mask, int(mc.get("aggregate_radius", 0)))
        volume = jnp.where(mask, volume, -jnp.inf)
        if float(mc.get("sgm_p1", 0.0)) > 0:
            p1, p2 = float(mc.sgm_p1), float(mc.sgm_p2)
            volume = jax.vmap(lambda v: sgm.semi_global(v, p1=p1, p2=p2))(volume)
        lr = float(mc.lr_threshold) if float(mc.lr_threshold) >= 0 else None
        disp = jax.vmap(
            lambda v: stereo_ops.disparity_from_volume(
                v, min_disparity=0, lr_threshold=lr, subpixel=bool(mc.subpixel), fill=bool(mc.fill)
            )
        )(volume)
        return {"disparity": disp}
