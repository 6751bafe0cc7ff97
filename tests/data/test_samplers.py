"""The P x K identity sampler: the structure of every batch, its determinism, resuming through the grain iterator's
state, its share per process, and its errors naming their config keys."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv import data
from mlcv.config import ConfigError
from mlcv.data import pipeline
from mlcv.data.samplers import IdentitySampler

# 7 classes of 3..9 records, interleaved as a real split's.
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(7), [3, 4, 5, 6, 7, 8, 9]))
P, K, B = 3, 3, 16
KEYS = ("image", "label")


def _sampler(labels=LABELS, p=P, k=K, batch=B, seed=0, **kw) -> IdentitySampler:
    return IdentitySampler(labels, identities_per_batch=p, images_per_identity=k, global_batch=batch, seed=seed, **kw)


def _keys(sampler: IdentitySampler, step: int, batch: int = B) -> np.ndarray:
    return np.array([sampler[step * batch + r].record_key for r in range(batch)])


def _check_batch(keys: np.ndarray, labels: np.ndarray, p: int, k: int) -> None:
    """P blocks of K distinct records of one class each, P distinct classes, then negatives of the other classes."""
    assert len(set(keys.tolist())) == len(keys)  # no record twice in a batch
    blocks = labels[keys[: p * k]].reshape(p, k)
    assert (blocks == blocks[:, :1]).all()
    chosen = set(blocks[:, 0].tolist())
    assert len(chosen) == p
    assert not chosen & set(labels[keys[p * k :]].tolist())


def test_every_batch_is_p_identities_of_k_images_and_other_negatives():
    s = _sampler()
    seen = set()
    for step in range(50):
        keys = _keys(s, step)
        _check_batch(keys, LABELS, P, K)
        seen |= set(keys.tolist())
    assert seen == set(range(len(LABELS)))  # every record gets drawn, negatives included


def test_batches_are_a_function_of_seed_and_index():
    """The same seed gives the same batches in any order of reading; another seed others; a record's augmentation
    rng depends on its position in the stream."""
    a, b = _sampler(), _sampler()
    forward = [_keys(a, step) for step in range(6)]
    backward = [_keys(b, step) for step in reversed(range(6))][::-1]
    for x, y in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.batch(4), forward[4])
    other = [_keys(_sampler(seed=1), step) for step in range(6)]
    assert any((x != y).any() for x, y in zip(forward, other, strict=True))
    assert any((x != y).any() for x, y in zip(forward[:-1], forward[1:], strict=True))
    draws = [a[i].rng.random() for i in (0, 1, 16)]
    assert len(set(draws)) == 3 and a[1].rng.random() == b[1].rng.random()


def test_processes_read_their_contiguous_share_of_each_global_batch():
    """Process p of 2 is asked for sampler indices i * 2 + p (grain's sharding) and gets rows p * 8 .. p * 8 + 7 of
    every global batch of 16, as one process would read them."""
    one = _sampler()
    two = _sampler(processes=2)
    for step in range(3):
        rows = [[two[(step * 8 + r) * 2 + p].record_key for r in range(8)] for p in range(2)]
        np.testing.assert_array_equal(np.concatenate(rows), one.batch(step))


@pytest.fixture(scope="module")
def digits():
    spec = data.get("digits_open_set")
    return spec, data.source(spec, "train")


def _loader(spec, src, seed=0, identities=(4, 5), batch=24):
    return pipeline.train_loader(
        src,
        batch_size=batch,
        pp="flip_lr|normalize",
        op_defaults=spec.op_defaults,
        keys=KEYS,
        seed=seed,
        identities=identities,
    )


def test_train_loader_with_identities_gives_p_by_k_batches(digits):
    """digits_open_set train (5 classes): 4 identities x 5 images and 4 images of the fifth class per batch of 24,
    the labels read from the source match the records."""
    spec, src = digits
    labels = pipeline.split_labels(src)
    np.testing.assert_array_equal(labels, [int(src[i]["label"]) for i in range(len(src))])
    it = iter(_loader(spec, src))
    for batch in [next(it) for _ in range(5)]:
        assert batch["image"].shape == (24, 8, 8, 1) and batch["image"].dtype == np.float32
        blocks = batch["label"][:20].reshape(4, 5)
        assert (blocks == blocks[:, :1]).all() and len(set(blocks[:, 0])) == 4
        assert set(batch["label"][20:]) == {0, 1, 2, 3, 4} - set(blocks[:, 0])


def test_resume_from_iterator_state_gives_the_same_batches(digits):
    """A fresh iterator given the state after 3 batches yields the next 3 of an uninterrupted one, augmentation
    included; the state of a loader with other identities is refused."""
    spec, src = digits
    it = iter(_loader(spec, src, seed=3))
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = iter(_loader(spec, src, seed=3))
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in KEYS:
            np.testing.assert_array_equal(got[key], want[key])
    with pytest.raises(ValueError):
        iter(_loader(spec, src, seed=3, identities=(3, 5))).set_state(state)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"p": 1}, r"config.data.identities_per_batch=1: a batch with a single identity"),
        ({"k": 0}, r"config.data.images_per_identity=0"),
        ({"p": 6, "k": 3, "batch": 17}, r"config.data.batch_size=17 is smaller than .* 6 x 3 = 18"),
        ({"k": 4, "batch": 16}, r"config.data.images_per_identity=4: class 0 has only 3 image\(s\).*min_images=4"),
        ({"p": 8, "k": 3, "batch": 24}, r"config.data.identities_per_batch=8: the split has only 7 classes"),
        ({"p": 3, "k": 3, "batch": 30}, r"config.data.batch_size=30: 21 negatives .* only 18 records"),
    ],
)
def test_errors_name_their_config_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        _sampler(**kw)
