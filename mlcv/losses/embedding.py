"""Metric-learning losses over one batch of embeddings: contrastive, triplet (with in-batch miners), ArcFace.

Every pair or triplet of the batch is formed from the labels, so a siamese or triplet network with
shared weights is one network applied to the batch. All functions are jittable with static shapes:
pairs are ``[B, B]`` masks and triplets ``[B, B, B]`` masks (fine up to B = 256), never index lists.

Common arguments: ``embeddings`` ``[B, D]`` float, ``labels`` ``[B]`` int (same label = same
identity), ``valid`` an optional ``[B]`` bool or 0/1 mask; a row that is not valid takes part in no
pair, triplet or mean (padding of the last batch). The contrastive and triplet losses return
``(loss, stats)``, a scalar and a dict of scalars for logging; ``arcface_loss`` the scalar only. With
no valid pair or triplet the loss is 0 with zero gradients.

Reference implementation for the tests: pytorch-metric-learning 2.9 (``ContrastiveLoss``,
``TripletMarginLoss`` with ``TripletMarginMiner`` / ``BatchHardMiner``, ``ArcFaceLoss``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mlcv.config import ConfigError

MININGS = ("batch_all", "batch_hard", "random", "semi_hard")
REDUCTIONS = ("avg_non_zero", "mean")


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(x) for x >= 0, with gradient 0 (not inf or NaN) where x == 0."""
    positive = x > 0
    # The inner where keeps sqrt's infinite derivative at 0 out of the backward pass: the outer
    # where alone would multiply it by a zero cotangent and give NaN.
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _valid_mask(valid: jax.Array | None, batch: int) -> jax.Array:
    if valid is None:
        return jnp.ones((batch,), bool)
    return jnp.asarray(valid).astype(bool)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` where ``mask``; 0 (with zero gradient) when the mask is empty."""
    count = jnp.sum(mask)
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(count, 1).astype(values.dtype)


def _reduce(values: jax.Array, mask: jax.Array, reduction: str) -> jax.Array:
    """``mean`` over the mask, or ``avg_non_zero``: the sum over the mask / the count of non-zero terms in it."""
    if reduction == "mean":
        return _masked_mean(values, mask)
    if reduction == "avg_non_zero":
        return _masked_mean(values, mask & (values != 0))
    raise ConfigError(f"unknown reduction {reduction!r} (config.loss.reduction); valid: {', '.join(REDUCTIONS)}")


def _fraction(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    return jnp.sum(numerator) / jnp.maximum(jnp.sum(denominator), 1)


def _pair_masks(labels: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[B, B]`` masks of positive pairs (same label, i != j) and negative pairs, both rows valid."""
    both = valid[:, None] & valid[None, :]
    same = labels[:, None] == labels[None, :]
    distinct = ~jnp.eye(labels.shape[0], dtype=bool)
    return same & both & distinct, ~same & both


def pairwise_distances(embeddings: jax.Array, squared: bool = False) -> jax.Array:
    """``[B, B]`` Euclidean distances (or their squares) between the rows of ``embeddings`` ``[B, D]``.

    From the Gram matrix, ``|x|^2 + |y|^2 - 2 x.y``, clipped at 0 (rounding can make it slightly
    negative), with an exact 0 diagonal: memory ``B^2`` instead of the ``B^2 D`` of explicit
    differences. The square root has gradient 0 at distance 0, so the diagonal and duplicate points
    give finite gradients.
    """
    sq_norms = jnp.sum(jnp.square(embeddings), axis=-1)
    gram = embeddings @ embeddings.T
    d2 = jnp.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram, 0.0)
    d2 = jnp.where(jnp.eye(embeddings.shape[0], dtype=bool), 0.0, d2)
    return d2 if squared else _safe_sqrt(d2)


def contrastive_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float | None,
    squared: bool = True,
    reduction: str = "mean",
    valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The contrastive loss over every pair ``i < j`` of the batch; ``y = 1`` for a pair of one label.

    With ``d`` the Euclidean distance and ``k = 2`` when ``squared`` (else ``k = 1``), a pair's term is

    * ``margin=m`` (the course's eqs. 66-67, Hadsell, Chopra & LeCun 2006, without their 1/2):
      ``y d^k + (1 - y) max(0, m - d)^k``. With ``squared=False`` this is pytorch-metric-learning's
      ``ContrastiveLoss(pos_margin=0, neg_margin=m)`` on unnormalised Euclidean distances.
    * ``margin=None`` (the course's unbounded eq. 65): ``y d^k - (1 - y) d^k``. Negatives are pushed
      apart with no bound: the loss is unbounded below and diverges on unnormalised embeddings
      (scaling the embeddings by s scales it by s^k); on L2-normalised ones d <= 2 and it saturates
      with every negative pair as far apart as the sphere allows. Kept as the failure case.

    ``reduction="mean"`` averages the terms over all valid pairs. ``"avg_non_zero"`` is
    pytorch-metric-learning's: the mean of the non-zero positive terms plus the mean of the non-zero
    negative terms; for the unbounded form that is (duplicates aside) the balanced
    ``mean_pos d^k - mean_neg d^k``.

    Stats: ``active_fraction`` (pairs with a non-zero term / valid pairs), ``num_pairs``,
    ``pos_distance`` and ``neg_distance`` (mean d over positive and negative pairs).
    """
    valid = _valid_mask(valid, embeddings.shape[0])
    pos, neg = _pair_masks(labels, valid)
    upper = jnp.triu(jnp.ones(pos.shape, bool), k=1)
    pos, neg = pos & upper, neg & upper
    d = pairwise_distances(embeddings, squared=False)
    power = 2 if squared else 1
    if margin is None:
        neg_term = -(d**power)
    else:
        neg_term = jnp.maximum(margin - d, 0.0) ** power
    terms = jnp.where(pos, d**power, jnp.where(neg, neg_term, 0.0))
    pairs = pos | neg
    if reduction == "avg_non_zero":
        loss = _reduce(terms, pos, reduction) + _reduce(terms, neg, reduction)
    else:
        loss = _reduce(terms, pairs, reduction)
    stats = {
        "active_fraction": _fraction(pairs & (terms != 0), pairs),
        "num_pairs": jnp.sum(pairs),
        "pos_distance": jax.lax.stop_gradient(_masked_mean(d, pos)),
        "neg_distance": jax.lax.stop_gradient(_masked_mean(d, neg)),
    }
    return loss, stats


def _batch_hard(d: jax.Array, pos: jax.Array, neg: jax.Array, margin: float) -> tuple[jax.Array, jax.Array]:
    """Per anchor the farthest positive and the nearest negative: ``[B]`` losses and the anchors that have both."""
    hardest_pos = jnp.max(jnp.where(pos, d, -jnp.inf), axis=1)
    hardest_neg = jnp.min(jnp.where(neg, d, jnp.inf), axis=1)
    has = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
    # Without a positive or a negative the difference is -inf (never NaN), so relu gives 0 and no gradient.
    losses = jnp.where(has, jax.nn.relu(hardest_pos - hardest_neg + margin), 0.0)
    return losses, has


def _random_negatives(
    d: jax.Array, pos: jax.Array, neg: jax.Array, margin: float, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per (anchor, positive) one negative of the anchor drawn uniformly: ``[B, B]`` losses and pairs kept."""
    num_neg = jnp.sum(neg, axis=1, keepdims=True)
    # Row a of ``order`` lists a's negatives first; a uniform rank among them picks one. B^2 log B work,
    # where a categorical draw over a [B, B, B] array of logits costs B^3 random numbers.
    order = jnp.argsort(~neg, axis=1, stable=True)
    rank = jnp.floor(jax.random.uniform(key, d.shape) * num_neg).astype(jnp.int32)
    # An anchor without negatives draws an arbitrary index; the mask drops its pairs.
    drawn = jnp.take_along_axis(order, jnp.clip(rank, 0, jnp.maximum(num_neg - 1, 0)), axis=1)
    an = jnp.take_along_axis(d, drawn, axis=1)
    kept = pos & jnp.any(neg, axis=1, keepdims=True)
    return jax.nn.relu(d - an + margin), kept


def triplet_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float,
    mining: str,
    squared: bool = False,
    key: jax.Array | None = None,
    reduction: str = "avg_non_zero",
    valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """FaceNet's triplet loss (the course's eq. 70), ``max(0, d(a, p) - d(a, n) + margin)``, over mined triplets.

    ``d`` is the Euclidean distance, or its square when ``squared`` (FaceNet's choice). A triplet
    has an anchor a, a positive p != a of a's label and a negative n of another label. ``mining``:

    * ``"semi_hard"`` (eq. 71): every (a, p) with every n such that
      ``d(a, p) < d(a, n) < d(a, p) + margin``. As pytorch-metric-learning's
      ``TripletMarginMiner(type_of_triplets="semihard")``.
    * ``"batch_all"``: every triplet (Hermans, Beyer & Leibe 2017).
    * ``"batch_hard"``: per anchor one triplet, its farthest positive and nearest negative
      (Hermans et al.; pytorch-metric-learning's ``BatchHardMiner``).
    * ``"random"``: per (a, p) pair one negative of a drawn uniformly with ``key``.

    ``reduction="avg_non_zero"`` (pytorch-metric-learning's ``AvgNonZeroReducer``, and Hermans et
    al.'s batch-all choice) averages over the triplets with a positive loss; ``"mean"`` over all
    mined triplets (Hermans et al.'s batch-hard choice). Stats: ``active_fraction`` (mined triplets
    with a positive loss / mined triplets) and ``num_triplets`` (mined triplets).
    """
    if mining not in MININGS:
        raise ConfigError(f"unknown triplet mining {mining!r} (config.loss.mining); valid: {', '.join(MININGS)}")
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r} (config.loss.reduction); valid: {', '.join(REDUCTIONS)}")
    valid = _valid_mask(valid, embeddings.shape[0])
    pos, neg = _pair_masks(labels, valid)
    d = pairwise_distances(embeddings, squared=squared)
    if mining == "batch_hard":
        losses, mined = _batch_hard(d, pos, neg, margin)
    elif mining == "random":
        if key is None:
            raise ValueError("triplet_loss(mining='random') needs a PRNG key")
        losses, mined = _random_negatives(d, pos, neg, margin, key)
    else:
        ap = d[:, :, None]
        an = d[:, None, :]
        mined = pos[:, :, None] & neg[:, None, :]
        if mining == "semi_hard":
            gap = an - ap
            mined = mined & (gap > 0) & (gap < margin)
        losses = jax.nn.relu(ap - an + margin)
    active = mined & (losses > 0)
    stats = {"active_fraction": _fraction(active, mined), "num_triplets": jnp.sum(mined)}
    return _reduce(losses, mined, reduction), stats


def _l2_normalize(x: jax.Array, axis: int) -> jax.Array:
    """``x / max(|x|, 1e-12)`` along ``axis`` (torch's ``F.normalize``), finite gradients at 0."""
    norm = _safe_sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, 1e-12)


def arcface_logits(
    embeddings: jax.Array, templates: jax.Array, labels: jax.Array, *, margin: float, scale: float
) -> jax.Array:
    """ArcFace's logits (Deng et al. 2019): ``s cos(theta_y + m)`` for the label, ``s cos(theta_j)`` otherwise.

    ``templates`` is ``[D, C]``, one class template a column (the layout of a Dense kernel and of
    pytorch-metric-learning's ``ArcFaceLoss.W``); embeddings and templates are L2-normalised, so
    ``cos(theta_j)`` is their dot product. ``margin`` m is in radians (pytorch-metric-learning's is
    in degrees). Where ``theta_y + m > pi`` the logit would turn back up as theta_y grows, so it is
    replaced, as in insightface and pytorch-metric-learning, by ``cos(theta_y) - m sin(m)``, which
    keeps it decreasing in theta_y. ``cos(theta + m)`` is expanded as
    ``cos(theta) cos(m) - sin(theta) sin(m)``: no arccos, whose gradient is infinite at cos = +-1.
    """
    cos = _l2_normalize(embeddings, axis=1) @ _l2_normalize(templates, axis=0)
    target = jax.nn.one_hot(labels, cos.shape[1], dtype=bool)
    cos_y = jnp.clip(jnp.sum(jnp.where(target, cos, 0.0), axis=1, keepdims=True), -1.0, 1.0)
    sin_y = _safe_sqrt(1.0 - jnp.square(cos_y))
    cos_m, sin_m = jnp.cos(margin), jnp.sin(margin)
    # theta_y <= pi - m  <=>  cos(theta_y) >= cos(pi - m) = -cos(m).
    with_margin = jnp.where(cos_y >= -cos_m, cos_y * cos_m - sin_y * sin_m, cos_y - margin * sin_m)
    return scale * jnp.where(target, with_margin, cos)


def arcface_loss(
    embeddings: jax.Array,
    templates: jax.Array,
    labels: jax.Array,
    *,
    margin: float,
    scale: float,
    valid: jax.Array | None = None,
) -> jax.Array:
    """The mean softmax cross-entropy of :func:`arcface_logits` over the valid rows (a scalar)."""
    valid = _valid_mask(valid, embeddings.shape[0])
    logits = arcface_logits(embeddings, templates, labels, margin=margin, scale=scale)
    return _masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), valid)
