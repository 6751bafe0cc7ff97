"""Tests of mlcv.data.in_memory: a split in memory gives grain's loader's batches bit for bit, and resumes exactly."""

import grain.python as gp
import jax
import ml_collections
import numpy as np
import pytest

from mlcv import data, defaults
from mlcv.config import ConfigError
from mlcv.data import batch_ops, in_memory, pipeline

KEYS = ("image", "label")
RANDOM = "flip_lr|random_crop(8, pad=1)|cutout(3)|normalize"


@pytest.fixture(scope="module")
def spec():
    return data.get("digits")


@pytest.fixture(scope="module")
def src(spec):
    return data.source(spec, "test")  # 360 records


def _stream(src, spec, pp, *, seed=0, batch_size=40):
    arrays = in_memory.read_split(src, KEYS, "digits", None)
    return in_memory.BatchStream(arrays, batch_size=batch_size, seed=seed, op=batch_ops.parse(pp, spec.op_defaults))


@pytest.mark.parametrize(("n", "seed"), [(7, 0), (360, 3), (1000, 2**32 - 2)])
def test_order_is_grains_index_sampler(n, seed):
    """Three passes and a bit, the per-epoch seed wrapping past 2**32 - 1 in the last case."""
    sampler = gp.IndexSampler(n, gp.NoSharding(), shuffle=True, num_epochs=None, seed=seed)
    positions = np.arange(3 * n + 5)
    expected = [sampler[int(g)].record_key for g in positions]
    np.testing.assert_array_equal(in_memory.shuffled_records(positions, n, seed), expected)


@pytest.mark.parametrize("pp", [RANDOM, "normalize", "flip_ud|center_crop(6)|scale(0.0625)"])
@pytest.mark.parametrize("seed", [0, 7])
def test_batches_equal_the_per_record_loader_bit_for_bit(src, spec, pp, seed):
    """25 batches of 40 over 360 records: across three epoch boundaries, augmentation on and off."""
    loader = iter(pipeline.train_loader(src, batch_size=40, pp=pp, op_defaults=spec.op_defaults, keys=KEYS, seed=seed))
    stream = _stream(src, spec, pp, seed=seed)
    for _ in range(25):
        a, b = next(loader), next(stream)
        assert sorted(a) == sorted(b)
        for k in a:
            assert a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k])


def test_rows_of_each_process_are_the_global_batch_samplers(monkeypatch):
    """Process 1 of 2 reads the same records at the same rows as grain's loader with GlobalBatchSampler gives it."""
    n, batch, seed = 50, 8, 4
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    sampler = pipeline.GlobalBatchSampler(n, batch, seed)
    for step in (0, 3, 13):  # 13: past the first epoch
        positions = in_memory.process_positions(step, batch)
        # grain asks process p of 2 for sampler indices i * 2 + p, i counting its own records.
        metas = [sampler[(step * 4 + row) * 2 + 1] for row in range(4)]
        np.testing.assert_array_equal(in_memory.shuffled_records(positions, n, seed), [m.record_key for m in metas])
        # The record's generator is grain's: Philox keyed by seed + its global position.
        for g, meta in zip(positions, metas, strict=True):
            assert meta.rng.random() == np.random.Generator(np.random.Philox(key=seed + int(g))).random()


def test_state_resumes_at_the_next_batch(src, spec):
    stream = _stream(src, spec, RANDOM)
    for _ in range(5):
        next(stream)
    state = stream.get_state()
    after = [next(stream) for _ in range(3)]
    resumed = _stream(src, spec, RANDOM)
    resumed.set_state(state)
    for a, b in zip(after, [next(resumed) for _ in range(3)], strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    with pytest.raises(ValueError, match="in-memory loaders"):
        resumed.set_state(b'{"some": "other loader"}')


def test_read_split_names_ragged_records_and_bad_labels():
    ragged = [{"image": np.zeros((4, 4, 1)), "label": 0}, {"image": np.zeros((5, 4, 1)), "label": 1}]
    with pytest.raises(ConfigError, match=r"image of record 1 is \(5, 4, 1\) but of record 0 \(4, 4, 1\)"):
        in_memory.read_split(ragged, KEYS, "toy", None)
    bad = [{"image": np.zeros((4, 4, 1)), "label": 3}]
    with pytest.raises(ConfigError, match=r"label holds label\(s\) \[3\] outside 0..1"):
        in_memory.read_split(bad, KEYS, "toy", ("toy", {"label": (2, None)}))
    disparity = np.ones((2, 4, 4), np.float32)
    disparity[1, 2, 3] = np.nan
    records = [{"image": np.zeros((4, 4, 1)), "disparity": d} for d in disparity]
    with pytest.raises(ConfigError, match=r"record 1: disparity holds 1 non-finite value\(s\)"):
        in_memory.read_split(records, ("image", "disparity"), "toy", None)
    with pytest.raises(ConfigError, match="record 0 lacks 'label'"):
        in_memory.read_split([{"image": np.zeros((4, 4, 1))}], KEYS, "toy", None)


def _config(pp: str, pipeline_choice: str, **extra) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict({"data": defaults.data("digits", pp_train=pp)})
    config.data.pipeline = pipeline_choice
    config.data.update(extra)
    return config


@pytest.mark.parametrize(
    ("pp", "extra", "expected"),
    [
        (RANDOM, {}, "batch"),
        ("normalize", {}, "batch"),
        ("keep('image', 'label')|normalize", {}, "record"),  # keep has no batch version
        ("random_crop(12)|normalize", {}, "record"),  # a crop larger than the 8x8 images
        (RANDOM, {"identities_per_batch": 4, "images_per_identity": 2}, "record"),
    ],
)
def test_auto_takes_the_batch_path_where_it_runs(src, spec, pp, extra, expected):
    assert in_memory.choose(_config(pp, "auto", **extra), src, KEYS, spec.op_defaults) == expected


def test_auto_keeps_big_splits_on_the_record_path(src, spec, monkeypatch):
    monkeypatch.setattr(in_memory, "AUTO_MAX_BYTES", 64 * 360)  # the 360 images are 65 bytes each with the label
    assert in_memory.choose(_config("normalize", "auto"), src, KEYS, spec.op_defaults) == "record"
    assert in_memory.choose(_config("normalize", "batch"), src, KEYS, spec.op_defaults) == "batch"


def test_explicit_choices_that_cannot_run_name_the_key(src, spec):
    with pytest.raises(ConfigError, match=r"config.data.pipeline='batch': config.data.pp_train: .*'keep'"):
        in_memory.choose(_config("keep('image', 'label')", "batch"), src, KEYS, spec.op_defaults)
    with pytest.raises(ConfigError, match=r"config.data.pipeline='fast': must be one of auto, record, batch, device"):
        in_memory.choose(_config("normalize", "fast"), src, KEYS, spec.op_defaults)
    with pytest.raises(ConfigError, match="identities_per_batch"):
        config = _config("normalize", "batch", identities_per_batch=4, images_per_identity=2)
        in_memory.choose(config, src, KEYS, spec.op_defaults)
    assert in_memory.choose(_config("keep('image', 'label')", "record"), src, KEYS, spec.op_defaults) == "record"
