"""Metric learning (course §11.5-11.6): an embedding trained so that distances say "same identity or not".

The model is :class:`mlcv.models.embedding.EmbeddingNet`: any classifier of the zoo (``config.model``) built
with ``num_classes = config.embedding.dim``, so that its head is the projection, then L2 normalisation. The
loss (``config.loss.name``) is one of

- ``softmax``: a classifier over the training identities on top of the projection (the embedding is its
  penultimate layer); with ``config.embedding.relu`` the rectified representation DeepFace trains, whose
  weighted distance the ``verification`` evaluator fits (``distance="deepface"``);
- ``contrastive``: every pair of the batch through the one network (siamese pairs, shared weights), the
  margin form (eqs. 66-67) with ``config.loss.margin`` > 0, the unbounded form (eq. 65) with margin 0;
- ``triplet``: eq. 70 with on-line mining in the batch (``config.loss.mining``: ``semi_hard`` (eq. 71),
  ``batch_all``, ``batch_hard``, ``random``); the fraction of active triplets is logged;
- ``arcface``: cosine class templates, the additive angular margin ``config.loss.arcface_margin`` (radians)
  on the correct class, the scale ``config.loss.scale``, cross-entropy.

Pairs and triplets need several images of each identity in a batch: ``config.data.identities_per_batch`` (P)
and ``config.data.images_per_identity`` (K) make every training batch P identities x K images, random
images of other identities completing it. The test split's identities are never trained on (open set), so
the task is evaluated by retrieval and verification over the whole split, never by classifying.
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
from mlcv.losses import embedding as embedding_losses
from mlcv.losses import softmax_cross_entropy
from mlcv.models.embedding import EmbeddingNet, l2_normalize
from mlcv.tasks.base import StepContext, Task

LOSSES = ("softmax", "contrastive", "triplet", "arcface")
# Losses made of pairs or triplets of the batch: they need P x K batches with P >= 2.
_PAIRWISE = ("contrastive", "triplet")


class MetricLearningTask(Task):
    """An embedding trained on batches ``{'image', 'label'}`` (label: the identity); predicts ``embedding``."""

    input_keys = ("image",)
    target_keys = ("label",)
    headline = "recall_at_1"
    also_reported = ("map_at_r", "verification_accuracy", "roc_auc")

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        lc = config.loss
        if not isinstance(lc, ml_collections.ConfigDict) or lc.get("name") not in LOSSES:
            name = lc.get("name") if isinstance(lc, ml_collections.ConfigDict) else lc
            raise ConfigError(f"config.loss.name={name!r}: must be one of {', '.join(LOSSES)}")
        self.loss_name = lc.name
        ec = config.embedding
        if int(ec.dim) < 1:
            raise ConfigError(f"config.embedding.dim={ec.dim}: must be an integer >= 1")
        self.train_classes = int(ec.get("train_classes") or 0) or int(getattr(meta, "num_classes", 0) or 0)
        if self.loss_name in ("softmax", "arcface") and self.train_classes < 2:
            raise ConfigError(
                f"config.loss.name={self.loss_name!r} classifies the training identities: set "
                "config.embedding.train_classes (>= 2) or use a dataset that declares its classes"
            )
        if self.loss_name in _PAIRWISE:
            p = int(config.data.get("identities_per_batch") or 0)
            if p < 2:
                raise ConfigError(
                    f"config.loss.name={self.loss_name!r} compares identities within a batch: "
                    f"config.data.identities_per_batch={p} must be >= 2 (with config.data.images_per_identity >= 2)"
                )
        if self.loss_name == "triplet" and lc.mining not in embedding_losses.MININGS:
            raise ConfigError(f"config.loss.mining={lc.mining!r}: must be one of {', '.join(embedding_losses.MININGS)}")
        super().__init__(config, meta, runs)

    def train_range_checks(self) -> dict[str, tuple[int, int | None]]:
        """A softmax or ArcFace head classifies ``train_classes`` identities: a training label outside them would
        be a row of zeros in the loss's one-hot. Evaluation splits hold other identities by design: not checked."""
        return {"label": (self.train_classes, None)} if self.loss_name in ("softmax", "arcface") else {}

    def build_model(self) -> nn.Module:
        """``config.model`` with ``config.embedding.dim`` outputs, wrapped in an :class:`EmbeddingNet`."""
        ec = self.config.embedding
        head = {"softmax": "linear", "arcface": "cosine"}.get(self.loss_name, "none")
        backbone = models.from_config(self.config.model, num_classes=int(ec.dim))
        return EmbeddingNet(
            backbone=backbone,
            num_classes=self.train_classes if head != "none" else 0,
            head=head,
            normalize=bool(ec.normalize),
            relu=bool(ec.get("relu", False)),
        )

    def _loss(self, outputs: Mapping[str, jax.Array], labels: jax.Array, step: jax.Array) -> tuple[jax.Array, dict]:
        """The batch loss and its statistics (active pairs or triplets)."""
        lc = self.config.loss
        emb = outputs["embedding"]
        if self.loss_name == "softmax":
            return softmax_cross_entropy(outputs["logits"], labels).mean(), {}
        if self.loss_name == "arcface":
            loss = embedding_losses.arcface_loss(
                emb, outputs["templates"], labels, margin=float(lc.arcface_margin), scale=float(lc.scale)
            )
            return loss, {}
        if self.loss_name == "contrastive":
            margin = float(lc.margin) or None  # 0: the unbounded form
            return embedding_losses.contrastive_loss(emb, labels, margin=margin, squared=bool(lc.squared))
        # Random negatives differ at every step, and reproducibly: the key is a function of seed and step.
        key = jax.random.fold_in(jax.random.PRNGKey(int(self.config.seed)), step)
        return embedding_losses.triplet_loss(
            emb, labels, margin=float(lc.margin), mining=lc.mining, squared=bool(lc.squared), key=key
        )

    def losses(self, outputs: Any, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """One term, named after ``config.loss.name``."""
        loss, _ = self._loss(outputs, batch["label"], context.step)
        return {self.loss_name: loss}

    def train_metrics(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The fraction of active pairs or triplets (the loss recomputed; XLA shares the work), the softmax's
        accuracy on its training identities."""
        if self.loss_name == "softmax":
            return {"accuracy": jnp.mean(jnp.argmax(outputs["logits"], -1) == batch["label"])}
        if self.loss_name == "arcface":
            return {}
        # The step only changes which random negatives are drawn; the logged fraction uses step 0's.
        _, stats = self._loss(outputs, batch["label"], jnp.zeros((), jnp.int32))
        return {k: v for k, v in stats.items() if k == "active_fraction"}

    def predict(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The embedding (and the unnormalised features, which DeepFace's distance reads)."""
        del batch  # evaluation compares embeddings across the whole split, not within a batch
        return {"embedding": outputs["embedding"], "features": outputs["features"]}

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """An ensemble's embedding: the members' concatenated, renormalised (distances then add up)."""
        del batch
        emb = jnp.concatenate([p["embedding"] for p in predictions], axis=-1)
        feats = jnp.concatenate([p["features"] for p in predictions], axis=-1)
        return {"embedding": l2_normalize(emb), "features": feats}

    def chance(self) -> dict[str, float]:
        """Balanced verification pairs: 50 % accuracy and an AUC of 0.5 without learning."""
        return {"verification_accuracy": 0.5, "roc_auc": 0.5}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """Retrieval over the whole split (Recall@K, mAP@R, kNN) and verification of pairs (threshold on
        validation; DeepFace's weighted distance, fitted on the training split, for a rectified embedding)."""
        distance = "deepface" if self.config.embedding.get("relu", False) else "euclidean"
        embedding_key = "features" if distance == "deepface" else "embedding"
        return {
            "retrieval": {"type": "retrieval"},
            "verification": {"type": "verification", "distance": distance, "embedding_key": embedding_key},
        }
