"""Tests of mlcv.losses.embedding against pytorch-metric-learning 2.9 (PML) and hand computations.

The comparisons run in float64 (``jax.enable_x64``) on fixed random embeddings, to 1e-5. PML's default
distance L2-normalises the embeddings; the references here use ``LpDistance(normalize_embeddings=False)``
because the functions under test take the embeddings as they are.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv.config import ConfigError
from mlcv.losses import embedding

torch = pytest.importorskip("torch")
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")

B, D, CLASSES = 24, 6, 5


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, D)), rng.integers(0, CLASSES, size=B)


def _lp(power: int = 1):
    return pml_distances.LpDistance(normalize_embeddings=False, p=2, power=power)


# Jitted, as training uses them: eager dispatch of the [B, B, B] masks op by op is slower than one compile.
_triplet = jax.jit(embedding.triplet_loss, static_argnames=("margin", "mining", "squared", "reduction"))
_contrastive = jax.jit(embedding.contrastive_loss, static_argnames=("margin", "squared", "reduction"))


def _t(x: np.ndarray):
    return torch.from_numpy(np.asarray(x))


def test_pairwise_distances_vs_explicit_differences():
    """The Gram-matrix distances equal |x_i - x_j| (and its square) from explicit differences."""
    x, _ = _batch()
    expected = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(embedding.pairwise_distances(jnp.asarray(x)), expected, atol=1e-10)
    np.testing.assert_allclose(embedding.pairwise_distances(jnp.asarray(x), squared=True), expected**2, atol=1e-10)


def test_contrastive_pml_variant_vs_pml():
    """squared=False, avg_non_zero is PML's ContrastiveLoss(pos_margin=0, neg_margin=m) on Euclidean distances."""
    x, y = _batch()
    margin = 3.0  # about the median distance, so about half of the negative pairs are active
    ref = pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin, distance=_lp())(_t(x), _t(y)).item()
    got, stats = _contrastive(x, y, margin=margin, squared=False, reduction="avg_non_zero")
    assert float(got) == pytest.approx(ref, rel=1e-5)
    assert 0.0 < float(stats["active_fraction"]) < 1.0
    assert int(stats["num_pairs"]) == B * (B - 1) // 2


def test_contrastive_hadsell_vs_pml_per_pair_terms():
    """The Hadsell form y d^2 + (1 - y) max(0, m - d)^2, averaged over pairs, from PML's per-pair terms.

    PML's terms are y d and (1 - y) max(0, m - d) (its margins act on the unsquared distance), so its
    DoNothingReducer output is squared here. PML lists each unordered pair twice (i, j) and (j, i): the
    mean over its pairs equals the mean over pairs i < j.
    """
    x, y = _batch(1)
    margin = 3.0
    loss_fn = pml_losses.ContrastiveLoss(
        pos_margin=0.0, neg_margin=margin, distance=_lp(), reducer=pml_reducers.DoNothingReducer()
    )
    out = loss_fn(_t(x), _t(y))
    pos, neg = out["pos_loss"]["losses"].numpy(), out["neg_loss"]["losses"].numpy()
    expected = (np.sum(pos**2) + np.sum(neg**2)) / (pos.size + neg.size)
    got, stats = _contrastive(x, y, margin=margin, squared=True)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    active = (np.count_nonzero(pos) + np.count_nonzero(neg)) / (pos.size + neg.size)
    assert float(stats["active_fraction"]) == pytest.approx(active)


def test_unbounded_contrastive_diverges_unnormalised_and_saturates_normalised():
    """Eq. 65 without a margin: scaling the embeddings by s scales the (negative) loss by s (unsquared) or s^2."""
    x, y = _batch(2)
    base, _ = _contrastive(x, y, margin=None, squared=False)
    base_sq, _ = _contrastive(x, y, margin=None, squared=True)
    assert float(base) < 0.0
    for s in (2.0, 10.0, 1000.0):
        scaled, _ = _contrastive(s * x, y, margin=None, squared=False)
        scaled_sq, _ = _contrastive(s * x, y, margin=None, squared=True)
        assert float(scaled) == pytest.approx(s * float(base), rel=1e-9)
        assert float(scaled_sq) == pytest.approx(s**2 * float(base_sq), rel=1e-9)
    # On the unit sphere d <= 2: however the negatives spread, the loss stays >= -4, so it saturates.
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for s in (1.0, 1000.0):
        v = s * unit
        loss, _ = _contrastive(v / np.linalg.norm(v, axis=1, keepdims=True), y, margin=None)
        assert -4.0 <= float(loss) < 0.0
    # The balanced form: mean over positive pairs of d^2 minus mean over negative pairs of d^2.
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    same, upper = y[:, None] == y[None, :], np.triu(np.ones((B, B), bool), k=1)
    balanced = d2[same & upper].mean() - d2[~same & upper].mean()
    got, _ = _contrastive(x, y, margin=None, squared=True, reduction="avg_non_zero")
    assert float(got) == pytest.approx(balanced, rel=1e-9)


@pytest.mark.parametrize("squared", [False, True])
def test_semi_hard_vs_pml_triplet_margin_miner(squared):
    """semi_hard = TripletMarginMiner(type_of_triplets="semihard") + TripletMarginLoss, AvgNonZeroReducer."""
    x, y = _batch(3)
    margin = 4.0 if squared else 1.0
    dist = _lp(2 if squared else 1)
    miner = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=dist)
    triplets = miner(_t(x), _t(y))
    ref = pml_losses.TripletMarginLoss(margin=margin, distance=dist)(_t(x), _t(y), triplets).item()
    got, stats = _triplet(x, y, margin=margin, mining="semi_hard", squared=squared)
    assert int(stats["num_triplets"]) == len(triplets[0]) > 0
    assert float(got) == pytest.approx(ref, rel=1e-5)
    # Every semi-hard triplet has d(a, n) < d(a, p) + margin, so a positive loss.
    assert float(stats["active_fraction"]) == 1.0


def test_batch_all_vs_pml():
    """batch_all = TripletMarginMiner("all") + TripletMarginLoss: the mean over the triplets with a positive loss."""
    x, y = _batch(4)
    margin = 1.0
    miner = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="all", distance=_lp())
    ref = pml_losses.TripletMarginLoss(margin=margin, distance=_lp())(_t(x), _t(y), miner(_t(x), _t(y))).item()
    got, stats = _triplet(x, y, margin=margin, mining="batch_all")
    assert float(got) == pytest.approx(ref, rel=1e-5)
    counts = np.bincount(y, minlength=CLASSES)
    assert int(stats["num_triplets"]) == sum(c * (c - 1) * (B - c) for c in counts)
    assert 0.0 < float(stats["active_fraction"]) < 1.0


def test_batch_hard_vs_pml():
    """batch_hard = BatchHardMiner (farthest positive, nearest negative per anchor) + TripletMarginLoss."""
    x, y = _batch(5)
    y[0] = CLASSES  # an anchor with no positive takes part in no triplet
    margin = 1.0
    triplets = pml_miners.BatchHardMiner(distance=_lp())(_t(x), _t(y))
    ref = pml_losses.TripletMarginLoss(margin=margin, distance=_lp())(_t(x), _t(y), triplets).item()
    got, stats = _triplet(x, y, margin=margin, mining="batch_hard")
    assert int(stats["num_triplets"]) == len(triplets[0]) == B - 1
    assert float(got) == pytest.approx(ref, rel=1e-5)


def test_triplet_miners_by_hand_on_a_line():
    """Eq. 71 on four points of a line, margin 1: labels 0 at x = 0 and 1, labels 1 at x = 1.4 and 2.9.

    Distances: |0-1| = 1, |0-1.4| = 1.4, |0-2.9| = 2.9, |1-1.4| = 0.4, |1-2.9| = 1.9, |1.4-2.9| = 1.5.
    (anchor, positive) -> negatives, semi-hard iff d(a,p) < d(a,n) < d(a,p) + 1:
      (0, 1),   d = 1:   n = 1.4 (1.4) semi-hard, loss 1 - 1.4 + 1 = 0.6;  n = 2.9 (2.9) easy, loss 0
      (1, 0),   d = 1:   n = 1.4 (0.4) hard, loss 1.6;                      n = 2.9 (1.9) semi-hard, loss 0.1
      (1.4, 2.9), d = 1.5: n = 0 (1.4) hard, loss 1.1;                      n = 1 (0.4) hard, loss 2.1
      (2.9, 1.4), d = 1.5: n = 0 (2.9) easy, loss 0;                        n = 1 (1.9) semi-hard, loss 0.6
    semi_hard: 3 triplets, (0.6 + 0.1 + 0.6) / 3 = 0.4333.
    batch_all: 8 triplets, 6 with a positive loss: (0.6 + 1.6 + 0.1 + 1.1 + 2.1 + 0.6) / 6 = 6.1 / 6.
    batch_hard: one positive per anchor; nearest negatives 1.4, 1.4, 1, 1: losses 0.6, 1.6, 2.1, 0.6 -> 4.9 / 4.
    """
    x = np.array([[0.0], [1.0], [1.4], [2.9]])
    y = np.array([0, 0, 1, 1])
    semi, stats = _triplet(x, y, margin=1.0, mining="semi_hard")
    assert float(semi) == pytest.approx(1.3 / 3)
    assert int(stats["num_triplets"]) == 3
    full, stats = _triplet(x, y, margin=1.0, mining="batch_all")
    assert float(full) == pytest.approx(6.1 / 6)
    assert int(stats["num_triplets"]) == 8 and float(stats["active_fraction"]) == pytest.approx(6 / 8)
    hard, _ = _triplet(x, y, margin=1.0, mining="batch_hard")
    assert float(hard) == pytest.approx(4.9 / 4)


def test_random_mining_with_one_negative_per_anchor_is_batch_all():
    """With a single negative per anchor the random draw has no choice: it equals batch_all."""
    x, _ = _batch(6)
    x = x[:5]
    y = np.array([0, 0, 0, 0, 1])
    # Anchors of label 0 have one negative; the label-1 point has no positive.
    rand, stats = _triplet(x, y, margin=5.0, mining="random", key=jax.random.key(0))
    full, _ = _triplet(x, y, margin=5.0, mining="batch_all")
    assert float(rand) == pytest.approx(float(full))
    assert int(stats["num_triplets"]) == 12
    x, y = _batch(6)
    keys = [jax.random.key(k) for k in range(3)]
    draws = {float(_triplet(x, y, margin=1.0, mining="random", key=k)[0]) for k in keys}
    assert len(draws) == 3


def test_random_mining_draws_negatives_uniformly():
    """E[random-negative loss] over keys = the mean over all negatives, when every anchor has as many negatives.

    Four identities of three points: every anchor has 9 negatives, so with the "mean" reduction the expected
    loss of one uniform draw per (a, p) is batch_all's mean over all triplets.
    """
    x = _batch(12)[0][:12]
    y = np.repeat(np.arange(4), 3)
    keys = jax.random.split(jax.random.key(0), 1000)
    draw = jax.vmap(lambda k: embedding.triplet_loss(x, y, margin=2.0, mining="random", key=k, reduction="mean")[0])
    full, _ = _triplet(x, y, margin=2.0, mining="batch_all", reduction="mean")
    assert float(jnp.mean(draw(keys))) == pytest.approx(float(full), rel=0.01)


def test_arcface_vs_pml():
    """Per-example ArcFace cross-entropy equals PML's ArcFaceLoss with W = templates; PML's margin is in degrees.

    One embedding is set opposite its class template (theta_y = pi > pi - m), so the fallback
    cos(theta) - m sin(m) is compared too.
    """
    x, y = _batch(7)
    templates = np.random.default_rng(8).normal(size=(D, CLASSES))
    x[0] = -3.0 * templates[:, y[0]]
    margin_deg, scale = 28.6, 16.0
    loss_fn = pml_losses.ArcFaceLoss(
        CLASSES, D, margin=margin_deg, scale=scale, reducer=pml_reducers.DoNothingReducer()
    ).double()
    with torch.no_grad():
        loss_fn.W.copy_(_t(templates))
    ref = loss_fn(_t(x), _t(y))["loss"]["losses"].detach().numpy()
    logits = embedding.arcface_logits(x, templates, y, margin=np.radians(margin_deg), scale=scale)
    per_example = -jax.nn.log_softmax(logits)[np.arange(B), y]
    np.testing.assert_allclose(per_example, ref, rtol=1e-5)
    loss = embedding.arcface_loss(x, templates, y, margin=np.radians(margin_deg), scale=scale)
    assert float(loss) == pytest.approx(ref.mean(), rel=1e-5)


def _all_losses(x: jax.Array, y: jax.Array, valid: jax.Array) -> jax.Array:
    """Every loss and miner of the module on one batch, stacked (the random miner's with a fixed key)."""
    templates = jnp.ones((x.shape[1], 3)).at[0, 1].set(-1.0)
    out = [
        embedding.contrastive_loss(x, y, margin=1.0, valid=valid)[0],
        embedding.contrastive_loss(x, y, margin=None, squared=False, valid=valid)[0],
        embedding.arcface_loss(x, templates, y % 3, margin=0.5, scale=8.0, valid=valid),
    ]
    for mining in embedding.MININGS:
        for squared in (False, True):
            kw = dict(margin=1.0, mining=mining, squared=squared, key=jax.random.key(0), valid=valid)
            out.append(embedding.triplet_loss(x, y, **kw)[0])
    return jnp.stack(out)


# Compiled once per shape: eager dispatch of a dozen losses and their Jacobians would dominate the run time.
_losses = jax.jit(_all_losses)
_jacobian = jax.jit(jax.jacrev(_all_losses))


def test_gradients_finite_at_duplicate_points():
    """Duplicate embeddings (distance 0 off the diagonal) and a zero embedding give finite gradients everywhere."""
    x = jnp.asarray(np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [3.0, -1.0], [3.0, -1.0]]))
    y = jnp.array([0, 0, 1, 1, 2, 0])
    assert np.all(np.isfinite(jax.grad(lambda e: embedding.pairwise_distances(e).sum())(x)))
    assert np.all(np.isfinite(_jacobian(x, y, jnp.ones(6, bool))))


def test_no_valid_pair_or_triplet_gives_zero_loss_and_zero_gradient():
    """One label only (no negative), all labels distinct (no positive), or nothing valid: no triplet, loss 0.

    With nothing valid every loss and every gradient is exactly 0; otherwise the gradients stay finite.
    """
    x = jnp.asarray(_batch(9)[0][:6, :2])
    cases = (
        (jnp.zeros(6, int), jnp.ones(6, bool)),
        (jnp.arange(6), jnp.ones(6, bool)),
        (jnp.arange(6) % 2, jnp.zeros(6, bool)),
    )
    for y, valid in cases:
        losses, grads = np.asarray(_losses(x, y, valid)), np.asarray(_jacobian(x, y, valid))
        assert np.all(np.isfinite(grads))
        assert np.all(losses[3:] == 0.0)  # the triplet losses
        if not valid.any():
            assert np.all(losses == 0.0) and np.all(grads == 0.0)


def test_valid_mask_equals_dropping_rows():
    """Rows with valid=False take part in nothing: the losses equal those of the batch without them."""
    x = _batch(10)[0][:8, :2]
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    valid = np.ones(8, bool)
    valid[[2, 5]] = False
    masked = _losses(jnp.asarray(x), jnp.asarray(y), jnp.asarray(valid))
    dropped = _losses(jnp.asarray(x[valid]), jnp.asarray(y[valid]), jnp.ones(6, bool))
    # The random miner draws from a different-shaped array, so its two draws differ.
    random_rows = [3 + 2 * embedding.MININGS.index("random") + k for k in (0, 1)]
    keep = [i for i in range(len(masked)) if i not in random_rows]
    assert np.all(np.asarray(dropped)[keep] != 0)  # every loss has terms to compare
    np.testing.assert_allclose(np.asarray(masked)[keep], np.asarray(dropped)[keep], rtol=1e-9)


def test_jit_with_static_shapes():
    """All losses compile once under jit (the mining and the margins are static)."""
    x, y = _batch(11)
    loss = jax.jit(functools.partial(embedding.triplet_loss, margin=1.0, mining="semi_hard"))
    eager, _ = embedding.triplet_loss(x, y, margin=1.0, mining="semi_hard")
    assert float(loss(x, y)[0]) == pytest.approx(float(eager))
    assert np.isfinite(float(_losses(jnp.asarray(x), jnp.asarray(y), jnp.ones(B, bool)).sum()))


def test_unknown_mining_and_reduction_raise():
    """Unknown names raise ConfigError naming the config field and listing the valid values."""
    x, y = _batch()
    with pytest.raises(ConfigError, match="config.loss.mining") as info:
        embedding.triplet_loss(x, y, margin=1.0, mining="hardest")
    assert all(name in str(info.value) for name in embedding.MININGS)
    with pytest.raises(ConfigError, match="config.loss.reduction"):
        embedding.contrastive_loss(x, y, margin=1.0, reduction="sum")
    with pytest.raises(ValueError, match="key"):
        embedding.triplet_loss(x, y, margin=1.0, mining="random")
