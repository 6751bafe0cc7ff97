"""Tests of mlcv.data.pipeline: seeded, resumable training batches and masked, padded evaluation batches."""

import collections

import numpy as np
import pytest
from absl import flags

from mlcv import data
from mlcv.config import ConfigError
from mlcv.data import pipeline

KEYS = ("image", "label")
PLAIN = "keep('image', 'label')"  # deterministic, keeps raw uint8 images to identify records
RANDOM = "flip_lr|random_crop(8, pad=1)|normalize"


@pytest.fixture(scope="module")
def spec():
    return data.get("digits")


@pytest.fixture(scope="module")
def src(spec):
    return data.source(spec, "test")  # 360 records


def _loader(src, spec, *, seed=0, batch_size=40, pp=PLAIN, worker_count=0):
    return pipeline.train_loader(
        src,
        batch_size=batch_size,
        pp=pp,
        op_defaults=spec.op_defaults,
        keys=KEYS,
        seed=seed,
        worker_count=worker_count,
    )


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def _records(batches):
    return [(img.tobytes(), int(lab)) for b in batches for img, lab in zip(b["image"], b["label"], strict=True)]


def test_train_batches_shape_and_keys(src, spec):
    """Batches hold only the requested keys, batch_size rows each, preprocessed to float32."""
    (b,) = _take(iter(_loader(src, spec, pp=RANDOM, batch_size=16)), 1)
    assert sorted(b) == ["image", "label"]
    assert b["image"].shape == (16, 8, 8, 1) and b["image"].dtype == np.float32
    assert b["label"].shape == (16,)


def test_same_seed_same_batches(src, spec):
    """Two loaders with the same seed yield identical batches, random preprocessing included."""
    a = _take(iter(_loader(src, spec, seed=3, pp=RANDOM)), 3)
    b = _take(iter(_loader(src, spec, seed=3, pp=RANDOM)), 3)
    _assert_batches_equal(a, b)


def test_different_seed_different_order(src, spec):
    """Another seed gives another order of records."""
    a = _take(iter(_loader(src, spec, seed=3)), 2)
    b = _take(iter(_loader(src, spec, seed=4)), 2)
    assert _records(a) != _records(b)


def test_each_epoch_is_a_permutation(src, spec):
    """Records 0..359 and 360..719 of the stream are each every record once (no repeats within an epoch)."""
    expected = collections.Counter((src[i]["image"].tobytes(), int(src[i]["label"])) for i in range(len(src)))
    assert sum(expected.values()) == 360
    batch = 40  # 9 batches per epoch
    stream = _records(_take(iter(_loader(src, spec, seed=1, batch_size=batch)), 2 * 360 // batch))
    first, second = stream[:360], stream[360:]
    assert collections.Counter(first) == expected
    assert collections.Counter(second) == expected
    assert first != second  # reshuffled each epoch


def test_epoch_with_remainder_has_no_repeats(src, spec):
    """With batch 64 (360 // 64 = 5 batches), the first 5 batches hold 320 distinct records."""
    stream = _records(_take(iter(_loader(src, spec, seed=2, batch_size=64)), 5))
    assert len(stream) == 320
    assert len(set(stream)) == 320


def test_resume_from_state(src, spec):
    """A fresh iterator restored from the state after 3 batches yields the same next 2 batches."""
    it = iter(_loader(src, spec, seed=5, pp=RANDOM))
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 2)
    resumed = iter(_loader(src, spec, seed=5, pp=RANDOM))
    resumed.set_state(state)
    _assert_batches_equal(_take(resumed, 2), expected)


@pytest.fixture
def absl_flags_parsed():
    """Grain's worker processes read absl flags; mark them parsed as launch.py's app.run would."""
    was_parsed = flags.FLAGS.is_parsed()
    if not was_parsed:
        flags.FLAGS.mark_as_parsed()
    yield
    if not was_parsed:
        flags.FLAGS.unparse_flags()


def test_worker_count_does_not_change_batches(src, spec, absl_flags_parsed):
    """worker_count=1 yields the same first 3 batches as worker_count=0, random preprocessing included."""
    a = _take(iter(_loader(src, spec, seed=7, pp=RANDOM, worker_count=0)), 3)
    it = iter(_loader(src, spec, seed=7, pp=RANDOM, worker_count=1))
    b = _take(it, 3)
    del it
    _assert_batches_equal(a, b)


def test_eval_batches_every_record_once_in_order(src, spec):
    """360 records in batches of 64: 6 batches, the last with 40 real rows then 24 zero rows with mask 0."""
    batches = list(pipeline.eval_batches(src, batch_size=64, pp=PLAIN, op_defaults=spec.op_defaults, keys=KEYS))
    assert len(batches) == 6
    for b in batches:
        assert sorted(b) == ["image", "label", "mask"]
        assert b["image"].shape == (64, 8, 8, 1) and b["label"].shape == (64,) and b["mask"].shape == (64,)
        assert b["mask"].dtype == np.float32
    np.testing.assert_array_equal([b["mask"].sum() for b in batches], [64, 64, 64, 64, 64, 40])
    last = batches[-1]
    np.testing.assert_array_equal(last["mask"], np.r_[np.ones(40), np.zeros(24)])
    assert not last["image"][40:].any() and not last["label"][40:].any()
    images = np.concatenate([b["image"] for b in batches])[:360]
    labels = np.concatenate([b["label"] for b in batches])[:360]
    for i in range(len(src)):
        np.testing.assert_array_equal(images[i], src[i]["image"])
        assert labels[i] == src[i]["label"]


def test_eval_batches_exact_multiple_has_no_padding(src, spec):
    """360 records in batches of 40: 9 full batches, all mask 1, normalize applied with the dataset defaults."""
    batches = list(pipeline.eval_batches(src, batch_size=40, pp="normalize", op_defaults=spec.op_defaults, keys=KEYS))
    assert len(batches) == 9
    assert all(b["mask"].sum() == 40 for b in batches)
    expected = (src[0]["image"].astype(np.float32) - 4.88) / 6.02
    np.testing.assert_allclose(batches[0]["image"][0], expected, rtol=1e-6)


def test_pad_batch_by_hand():
    """Two rows padded to four: zero rows of each dtype appended and mask [1, 1, 0, 0]."""
    batch = {"x": np.array([[1.5, 2.0], [3.0, 4.0]], np.float32), "y": np.array([7, 9], np.int32)}
    out = pipeline.pad_batch(batch, 4)
    np.testing.assert_array_equal(out["x"], [[1.5, 2.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(out["y"], [7, 9, 0, 0])
    np.testing.assert_array_equal(out["mask"], [1.0, 1.0, 0.0, 0.0])
    assert out["x"].dtype == np.float32 and out["y"].dtype == np.int32 and out["mask"].dtype == np.float32


def test_pad_batch_full_is_unchanged():
    """A batch already of the target size gets an all-ones mask and no extra rows."""
    out = pipeline.pad_batch({"y": np.array([1, 2, 3])}, 3)
    np.testing.assert_array_equal(out["y"], [1, 2, 3])
    np.testing.assert_array_equal(out["mask"], [1.0, 1.0, 1.0])


def test_per_process_batch_single_process():
    """On this one process the per-process batch is the global batch (1 process: 8 n / 1 = 8 n)."""
    import jax

    assert jax.process_count() == 1
    n = jax.local_device_count()
    assert pipeline.per_process_batch(8 * n) == 8 * n


def test_per_process_batch_on_two_hosts_of_four_devices(monkeypatch):
    """With 2 processes of 4 devices (the module's ``jax`` replaced by a stub; the jax package is untouched), by
    hand: a global 64 is 64 / 2 = 32 rows a process, 8 is 4; 12 and 20 do not divide over the 8 devices."""
    import types

    monkeypatch.setattr(pipeline, "jax", types.SimpleNamespace(process_count=lambda: 2, local_device_count=lambda: 4))
    assert pipeline.per_process_batch(64) == 32
    assert pipeline.per_process_batch(8) == 4
    for bad in (12, 20):
        with pytest.raises(ValueError, match=f"batch size {bad} does not divide over 8 devices"):
            pipeline.per_process_batch(bad)


def test_example_batch(src, spec):
    """example_batch stacks `size` preprocessed records, wrapping around the source."""
    b = pipeline.example_batch(src, size=3, pp=PLAIN, op_defaults=spec.op_defaults, keys=KEYS)
    assert b["image"].shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(b["label"], [src[i]["label"] for i in range(3)])


def test_labels_outside_the_classes_stop_the_pipeline_naming_the_dataset():
    """Class ids 0..10 and the ignore label 255 pass; 11 or -1 (a label map of another dataset) raise a ConfigError
    naming the dataset, the key and the labels, from the training loader and the evaluation batches alike."""
    ok = np.zeros((4, 4), np.int16)
    ok[0, :2] = (10, 255)
    bad = ok.copy()
    bad[1, 1], bad[2, 2] = 11, -1
    checks = ("toy_scenes", {"segmentation": (11, 255)})
    source = [{"segmentation": ok}, {"segmentation": ok}, {"segmentation": bad}]
    keys = ("segmentation",)
    clean = list(pipeline.eval_batches(source[:2], batch_size=2, pp="", op_defaults={}, keys=keys, checks=checks))
    assert clean[0]["segmentation"].shape == (2, 4, 4)
    with pytest.raises(
        ConfigError, match=r"dataset 'toy_scenes'.*segmentation holds label\(s\) \[-1, 11\] outside 0..10"
    ):
        list(pipeline.eval_batches(source, batch_size=2, pp="", op_defaults={}, keys=keys, checks=checks))
    # Without an ignore label, 255 is out of range too.
    with pytest.raises(ConfigError, match=r"\[255\] outside 0..10;"):
        pipeline.check_labels({"segmentation": ok}, ("toy_scenes", {"segmentation": (11, None)}))
    loader = pipeline.train_loader(source, batch_size=3, pp="", op_defaults={}, keys=keys, seed=0, checks=checks)
    with pytest.raises(Exception, match="toy_scenes"):  # grain may wrap the ConfigError; the CLI unwraps it
        next(iter(loader))
