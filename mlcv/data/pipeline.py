"""Grain input pipelines over TFDS data sources.

The training loader is an endless, seeded, shuffled stream of fixed-size
batches whose position is part of every checkpoint; evaluation iterates a
split once, in order, and pads the last batch with masked examples so every
batch has the same shape (one compilation) and divides over the devices.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grain.python as gp
import jax
import numpy as np
from absl import flags

from mlcv.config import ConfigError
from mlcv.data import class_filter
from mlcv.data import ops as ops_lib
from mlcv.data.ops import checks as example_checks
from mlcv.data.samplers import IdentitySampler

# Grain's default read-ahead (16 threads, 500 records) spends most of its time
# polling its own futures on small records; reading in the calling thread is
# several times faster for in-memory-sized datasets like digits.
READ_OPTIONS = gp.ReadOptions(num_threads=0, prefetch_buffer_size=0)


#: What :func:`check_labels` checks: the dataset's name, and per key ``(number of classes, ignore label or None)``.
LabelChecks = tuple[str, dict[str, tuple[int, int | None]]]


class Preprocess(gp.RandomMapTransform):
    """Applies an op string; keeps only the string so it pickles to workers."""

    def __init__(
        self, spec: str, defaults: dict[str, dict[str, Any]], keys: tuple[str, ...], checks: LabelChecks | None = None
    ):
        self.spec = spec
        self.defaults = defaults
        self.keys = keys
        self.checks = checks
        self._op = None

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if self._op is None:
            self._op = ops_lib.parse(self.spec, self.defaults)
        return check_labels(_select(preprocess(self._op, element, rng, self.spec, self.checks), self.keys), self.checks)

    def __getstate__(self):
        return {"spec": self.spec, "defaults": self.defaults, "keys": self.keys, "checks": self.checks, "_op": None}


def preprocess(
    op: ops_lib.Op, example: dict[str, Any], rng: np.random.Generator, spec: str, checks: LabelChecks | None
) -> dict[str, Any]:
    """``op`` applied to a copy of ``example``, the result checked (views' sizes, finite ground truth).

    A ValueError of an op or a check (a crop larger than the image, views of different sizes, NaN disparity where
    the mask says valid: :mod:`mlcv.data.ops.checks`) becomes, with ``checks`` given, a ConfigError naming the
    dataset and the op string, as :func:`check_labels` reports bad labels.
    """
    try:
        out = op(dict(example), rng)
        example_checks.check_sizes(out)
        return example_checks.check_finite(out)
    except ConfigError:
        raise
    except ValueError as e:
        if not checks:
            raise
        raise ConfigError(f"dataset {checks[0]!r} (config.data.name), preprocessing {spec!r}: {e}") from e


def check_labels(example: dict[str, Any], checks: LabelChecks | None) -> dict[str, Any]:
    """``example`` as it is if every label of the checked keys lies in ``0..C-1`` or is the ignore label.

    On the host, before batching: on the device an out-of-range class id would pass silently (a one-hot of
    zeros in the loss, a count in another class's cell of a bincount confusion matrix). Raises ConfigError
    naming the dataset, the key and the labels.
    """
    if not checks:
        return example
    name, keys = checks
    for key, (num_classes, ignore) in keys.items():
        if key not in example:
            continue
        labels = np.asarray(example[key])
        bad = (labels < 0) | (labels >= num_classes)
        if ignore is not None:
            bad &= labels != ignore
        if bad.any():
            values = sorted({int(v) for v in labels[bad]})[:5]
            allowed = f"0..{num_classes - 1}" + ("" if ignore is None else f" or the ignore label {ignore}")
            raise ConfigError(
                f"dataset {name!r} (config.data.name): {key} holds label(s) {values} outside {allowed}; fix the "
                "data or its declared classes, or set the task's ignore_label"
            )
    return example


def _select(example: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    # TFDS records may carry ids and file names that cannot be batched into
    # arrays; the task names the keys it consumes.
    missing = [k for k in keys if k not in example]
    if missing:
        raise KeyError(f"preprocessed example lacks {missing}; it has {sorted(example)}")
    return {k: example[k] for k in keys}


def per_process_batch(global_batch: int) -> int:
    """The share of a global batch that this JAX process loads."""
    n = jax.process_count() * jax.local_device_count()
    if global_batch % n:
        raise ValueError(f"batch size {global_batch} does not divide over {n} devices")
    return global_batch // jax.process_count()


def _allow_workers(worker_count: int) -> None:
    # Grain's worker processes read its absl flags, which raise when nobody
    # parsed them (a notebook, a test); launch.py parses them, others get the
    # defaults.
    if worker_count > 0 and not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class GlobalBatchSampler:
    """Gives each JAX process its rows of the global batches that one process alone would read.

    Record ``g`` of the global order (shuffled by ``seed``, its augmentation
    rng derived from ``g``) lands at the same row of the same global batch
    whatever the number of processes, so a run on several hosts sees exactly
    the data of a single-host run. Grain's loader asks process ``p`` of ``n``
    for sampler indices ``i * n + p``; this maps them to process ``p``'s
    contiguous slice of each global batch.
    """

    def __init__(self, num_records: int, global_batch: int, seed: int):
        self._inner = gp.IndexSampler(num_records, gp.NoSharding(), shuffle=True, num_epochs=None, seed=seed)
        self._batch = global_batch
        self._processes = jax.process_count()
        self._local = global_batch // self._processes

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: int) -> gp.RecordMetadata:
        i, process = divmod(index, self._processes)
        step, row = divmod(i, self._local)
        meta = self._inner[step * self._batch + process * self._local + row]
        return gp.RecordMetadata(index=index, record_key=meta.record_key, rng=meta.rng)

    def __repr__(self) -> str:
        return f"GlobalBatchSampler({self._inner!r}, global_batch={self._batch}, processes={self._processes})"


def train_loader(
    source,
    *,
    batch_size: int,
    pp: str,
    op_defaults: dict,
    keys: tuple[str, ...],
    seed: int,
    worker_count: int = 0,
    checks: LabelChecks | None = None,
    identities: tuple[int, int] | None = None,
    label_key: str = "label",
) -> gp.DataLoader:
    """An endless shuffled loader of this process's share of global batches of ``batch_size``; every example's
    labels pass :func:`check_labels` with ``checks``.

    With ``identities=(P, K)`` every global batch is ``P`` classes x ``K`` images and random images of other
    classes (:class:`~mlcv.data.samplers.IdentitySampler`, the classes read from ``label_key`` by
    :func:`split_labels`), instead of a shuffle of the split.
    """
    _allow_workers(worker_count)
    if identities is None:
        sampler = GlobalBatchSampler(len(source), batch_size, seed)
    else:
        sampler = identity_sampler(source, identities, batch_size, seed, label_key)
    return gp.DataLoader(
        data_source=source,
        sampler=sampler,
        shard_options=gp.ShardByJaxProcess(drop_remainder=True),
        operations=[
            Preprocess(pp, op_defaults, keys, checks),
            gp.Batch(per_process_batch(batch_size), drop_remainder=True),
        ],
        worker_count=worker_count,
        read_options=READ_OPTIONS,
    )


def identity_sampler(
    source, identities: tuple[int, int], batch_size: int, seed: int, label_key: str = "label"
) -> IdentitySampler:
    """The :class:`~mlcv.data.samplers.IdentitySampler` of ``identities=(P, K)`` over ``source``'s classes.

    Building it checks the split against P and K (ConfigError naming the key), so a run calls it before writing.
    """
    p, k = identities
    labels = split_labels(source, label_key)
    return IdentitySampler(labels, identities_per_batch=p, images_per_identity=k, global_batch=batch_size, seed=seed)


def eval_batches(
    source,
    *,
    batch_size: int,
    pp: str,
    op_defaults: dict,
    keys: tuple[str, ...],
    worker_count: int = 0,
    checks: LabelChecks | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields every example of ``source`` once, in batches padded to ``batch_size`` (labels checked as
    :func:`train_loader`'s).

    Each batch carries ``mask`` (1 for real examples, 0 for padding).
    """
    local = per_process_batch(batch_size)
    _allow_workers(worker_count)
    sampler = gp.IndexSampler(
        num_records=len(source),
        shard_options=gp.ShardByJaxProcess(drop_remainder=False),
        shuffle=False,
        num_epochs=1,
        seed=0,
    )
    loader = gp.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[Preprocess(pp, op_defaults, keys, checks), gp.Batch(local, drop_remainder=False)],
        worker_count=worker_count,
        read_options=READ_OPTIONS,
    )
    # Every process must run the same number of (collective) eval steps, so
    # shards that come out a batch short are topped up with all-padding batches.
    per_process = -(-len(source) // jax.process_count())
    count, last = 0, None
    for batch in loader:
        last = pad_batch(batch, local)
        count += 1
        yield last
    if last is None:
        raise ValueError(f"split of {len(source)} records has none for process {jax.process_index()}")
    for _ in range(-(-per_process // local) - count):
        yield {**{k: np.zeros_like(v) for k, v in last.items()}}


def split_labels(source, label_key: str = "label") -> np.ndarray:
    """The class of every record of ``source`` in record order, as the same in every process.

    A class-filtered source (:mod:`mlcv.data.class_filter`) has them already (ids, names mapped); a TFDS data source's
    are read once without decoding images, and cached beside its files; any other source is read record by record.
    """
    return class_filter.read_labels(source, label_key)


def split_boxes(source, *, pp: str, op_defaults: dict) -> np.ndarray:
    """Every real box ``[N, 4]`` of ``source`` after ``pp`` (its ``boxes`` rows where ``box_mask`` is 1).

    Record by record in this process, whatever the number of JAX processes, so that every process gets the same
    boxes (k-means priors computed from them must agree). ``pp`` should be deterministic (an evaluation one).
    """
    op = ops_lib.parse(pp, op_defaults)
    rng = np.random.default_rng(0)
    out = []
    for i in range(len(source)):
        ex = op(dict(source[i]), rng)
        if "boxes" not in ex or "box_mask" not in ex:
            raise KeyError(f"preprocessed example lacks boxes or box_mask; it has {sorted(ex)}")
        out.append(np.asarray(ex["boxes"], np.float64)[np.asarray(ex["box_mask"]) > 0])
    return np.concatenate(out) if out else np.zeros((0, 4))


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pads every array to ``size`` rows with zeros and adds the ``mask``."""
    n = len(next(iter(batch.values())))
    out = {k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def example_batch(
    source, *, size: int, pp: str, op_defaults: dict, keys: tuple[str, ...], checks: LabelChecks | None = None
) -> dict[str, np.ndarray]:
    """A batch of ``size`` preprocessed records, for shapes (init, compilation)."""
    op = ops_lib.parse(pp, op_defaults)
    rng = np.random.default_rng(0)
    examples = [
        check_labels(_select(preprocess(op, source[i % len(source)], rng, pp, checks), keys), checks)
        for i in range(size)
    ]
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}
