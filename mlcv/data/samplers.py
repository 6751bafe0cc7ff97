"""Grain samplers beyond a shuffled stream: :class:`IdentitySampler`, the P x K batches of metric learning.

A loss over pairs or triplets (contrastive, triplet with batch-hard mining) needs positives in every batch, which a
shuffled stream of a dataset with many classes rarely gives: a batch of 64 from CUB's 100 training classes holds
few pairs of one class. The P x K batch draws a fixed number of identities, ``P``, and ``K`` images of each, and
fills the rest of the batch with random images of other identities as negatives.
"""

from __future__ import annotations

import hashlib
import sys

import grain.python as gp
import jax
import numpy as np

from mlcv.config import ConfigError


class IdentitySampler:
    """Global batches of ``P`` identities x ``K`` images each, completed by random images of other identities.

    Batch ``b`` (of ``global_batch`` rows) is a pure function of ``(seed, b)``: ``P`` distinct classes drawn
    uniformly, ``K`` images of each drawn without replacement (rows ``0..P*K-1``, identity after identity), then
    ``global_batch - P*K`` images drawn without replacement from the records of the classes not drawn. A resumed
    grain iterator therefore gives the batches of an uninterrupted one. Record ``g`` of the global stream gets its
    own augmentation rng (Philox keyed by ``seed`` and ``g``). As :class:`~mlcv.data.pipeline.GlobalBatchSampler`,
    process ``p`` of ``n`` reads its contiguous share of every global batch: the same data whatever ``n``.

    Args:
      labels: the class of every record of the source, in record order (ints or names).
      identities_per_batch: ``P`` (config.data.identities_per_batch), at least 2.
      images_per_identity: ``K`` (config.data.images_per_identity), at least 1; every class needs ``K`` images.
      global_batch: rows of a global batch (config.data.batch_size), at least ``P * K``.
      seed: a non-negative int.
      processes: the number of JAX processes that share each batch; ``jax.process_count()`` unless given.

    Raises:
      ConfigError: naming the config key, when no batch of this shape can be drawn from ``labels``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        identities_per_batch: int,
        images_per_identity: int,
        global_batch: int,
        seed: int,
        processes: int | None = None,
    ):
        labels = np.asarray(labels)
        p, k, b = int(identities_per_batch), int(images_per_identity), int(global_batch)
        if labels.ndim != 1 or not len(labels):
            raise ValueError(f"IdentitySampler needs the labels of a non-empty split as a vector, got {labels.shape}")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"IdentitySampler seed must be a non-negative int, got {seed!r}")
        if p < 2:
            raise ConfigError(
                f"config.data.identities_per_batch={p}: a batch with a single identity has no negatives; use 2 or more"
            )
        if k < 1:
            raise ConfigError(f"config.data.images_per_identity={k}: use 1 or more")
        if p * k > b:
            raise ConfigError(
                f"config.data.batch_size={b} is smaller than config.data.identities_per_batch x "
                f"config.data.images_per_identity = {p} x {k} = {p * k}"
            )
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        small = np.flatnonzero(counts < k)
        if len(small):
            worst = small[np.argmin(counts[small])]
            raise ConfigError(
                f"config.data.images_per_identity={k}: class {classes[worst].item()!r} has only {counts[worst]} "
                f"image(s) in this split ({len(small)} of {len(classes)} classes have fewer than {k}); lower it, or "
                f"drop those classes with the split option '|min_images={k}' (config.data.train_split)"
            )
        if p > len(classes):
            raise ConfigError(
                f"config.data.identities_per_batch={p}: the split has only {len(classes)} classes with "
                f"config.data.images_per_identity={k} or more images"
            )
        negatives = b - p * k
        fewest_others = len(labels) - int(np.sort(counts)[::-1][:p].sum())
        if negatives > fewest_others:
            raise ConfigError(
                f"config.data.batch_size={b}: {negatives} negatives after {p} x {k} identity images, but the other "
                f"classes of a batch may hold only {fewest_others} records"
            )
        self._p, self._k, self._batch, self._seed = p, k, b, int(seed)
        self._inverse = inverse.reshape(-1)
        self._counts = counts
        self._by_class = np.argsort(self._inverse, kind="stable")  # record indices grouped by class
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._processes = jax.process_count() if processes is None else int(processes)
        if b % self._processes:
            raise ConfigError(f"config.data.batch_size={b} does not divide over {self._processes} processes")
        self._local = b // self._processes
        digest = hashlib.sha1(self._inverse.astype(np.int64).tobytes() + counts.astype(np.int64).tobytes())
        self._digest = digest.hexdigest()[:12]
        self._cached: tuple[int, np.ndarray] | None = None

    def batch(self, step: int) -> np.ndarray:
        """The record indices of global batch ``step``: ``P*K`` identity rows, then the negatives."""
        if self._cached is not None and self._cached[0] == step:
            return self._cached[1]
        rng = np.random.default_rng([self._seed, step])
        chosen = rng.choice(len(self._counts), self._p, replace=False)
        rows = [self._by_class[self._starts[c] + rng.choice(self._counts[c], self._k, replace=False)] for c in chosen]
        negatives = self._batch - self._p * self._k
        if negatives:
            others = np.flatnonzero(~np.isin(self._inverse, chosen))
            rows.append(rng.choice(others, negatives, replace=False))
        out = np.concatenate(rows)
        self._cached = (step, out)
        return out

    def __len__(self) -> int:
        return sys.maxsize  # endless, as an IndexSampler without num_epochs

    def __getitem__(self, index: int) -> gp.RecordMetadata:
        i, process = divmod(index, self._processes)
        step, row = divmod(i, self._local)
        row += process * self._local
        g = step * self._batch + row
        rng = np.random.Generator(np.random.Philox(key=(self._seed << 64) + g))
        return gp.RecordMetadata(index=index, record_key=int(self.batch(step)[row]), rng=rng)

    def __repr__(self) -> str:
        # Grain compares it with the one in a saved iterator state: a sampler of other labels refuses that state.
        return (
            f"IdentitySampler(records={len(self._inverse)}, classes={len(self._counts)}, labels={self._digest}, "
            f"identities_per_batch={self._p}, images_per_identity={self._k}, global_batch={self._batch}, "
            f"seed={self._seed}, processes={self._processes})"
        )
