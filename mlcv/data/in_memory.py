"""Training batches from a split held in memory: grain's order, each record's own generator, no per-record work.

Grain's loader pays for every record on its way through: a sampler entry with its Philox generator, a read that
decodes a TFDS record, the op string run record by record, and the stacking of a batch. On digits that is about
230 us a record, 20 times what the CNN's step costs. A split that fits in memory is read once instead
(:func:`read_split`, its labels checked once), and each batch is one gather of it followed by the batch ops of
:mod:`mlcv.data.batch_ops`:

- the order is grain's: global position ``g`` of the endless stream is record ``index_shuffle(g mod N)`` under
  the seed ``seed + g // N`` (:func:`shuffled_records`), exactly what ``GlobalBatchSampler`` gives, and process
  ``p`` of ``n`` takes the same rows of each global batch;
- record ``g`` draws from ``Philox(key=seed + g)``, the generator grain's sampler gives it
  (``batch_ops.RecordGenerators``), with the per-record ops' calls in their order.

So a batch equals the one the per-record loader yields, bit for bit, augmentation on or off, and the position
is one number: :class:`BatchStream`'s state is the step it will read next, and a resumed run reads the same
batches. ``config.data.pipeline`` chooses between this and the per-record loader (:func:`choose`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mlcv.config import ConfigError
from mlcv.data import batch_ops, index_shuffle, pipeline
from mlcv.data.ops import checks as example_checks

#: ``config.data.pipeline``'s values. "auto": "batch" where it can run, else "record".
PIPELINES = ("auto", "record", "batch", "device")
#: "auto" holds a split in memory only below this size; an explicit "batch" or "device" has no limit.
AUTO_MAX_BYTES = 1 << 30


def shuffled_records(positions: np.ndarray, num_records: int, seed: int) -> np.ndarray:
    """The record at each global position of the endless shuffled stream, as grain's ``IndexSampler`` orders it.

    Each pass over the split is a fresh permutation: grain's index shuffle (4 rounds) under ``seed + epoch``
    (:func:`~mlcv.data.index_shuffle.epoch_permutation`, a whole epoch at a time).
    """
    epochs, index = np.divmod(np.asarray(positions, np.int64), num_records)
    out = np.empty(len(index), np.int64)
    for epoch in np.unique(epochs).tolist():
        at = epochs == epoch
        out[at] = index_shuffle.epoch_permutation(num_records, (seed + epoch) % 2**32)[index[at]]
    return out


def process_positions(step: int, global_batch: int) -> np.ndarray:
    """The global positions of this process's rows of global batch ``step`` (``GlobalBatchSampler``'s rows)."""
    local = global_batch // jax.process_count()
    return step * global_batch + jax.process_index() * local + np.arange(local, dtype=np.int64)


def read_split(source: Any, keys: Sequence[str], name: str, checks: pipeline.LabelChecks | None) -> dict[str, Any]:
    """Every record of ``source``, its ``keys`` stacked into arrays, labels checked as the per-record loader does.

    Raises:
      ConfigError: a record lacks a key, records of different shapes (naming the key and both shapes), non-finite
        ground truth where its mask says valid (``checks.check_finite``), or labels outside their classes
        (:func:`pipeline.check_labels`).
    """
    columns: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for i in range(len(source)):
        record = source[i]
        for key in keys:
            if key not in record:
                raise ConfigError(f"dataset {name!r}: record {i} lacks {key!r}; it has {sorted(record)}")
            value = np.asarray(record[key])
            first = columns[key][0] if columns[key] else value
            if value.shape != first.shape:
                raise ConfigError(
                    f"dataset {name!r}: {key} of record {i} is {value.shape} but of record 0 {first.shape}; a split "
                    "held in memory needs one shape (config.data.pipeline='record' reads records of any shape)"
                )
            columns[key].append(value)
        try:  # as the per-record loader checks each example: NaN ground truth where its mask says valid
            example_checks.check_finite({k: columns[k][-1] for k in keys})
        except ValueError as e:
            raise ConfigError(f"dataset {name!r} (config.data.name), record {i}: {e}") from None
    arrays = {k: np.stack(v) for k, v in columns.items()}
    return pipeline.check_labels(arrays, checks)


class StreamPosition:
    """The checkpointable position of an endless stream of batches: the global batch it makes next."""

    step = 0

    def get_state(self) -> bytes:
        """The position: the global batch made next."""
        return json.dumps({"next_batch": self.step}).encode()

    def set_state(self, state: bytes) -> None:
        """Moves to a position from :meth:`get_state`; ValueError names a state of another loader."""
        try:
            self.step = int(json.loads(state)["next_batch"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"not a position of mlcv's in-memory loaders: {state[:80]!r}") from e


class BatchStream(StreamPosition):
    """The endless training batches of a split held in memory; checkpointable like grain's iterator.

    Args:
      arrays: the split, from :func:`read_split`.
      batch_size: the global batch; this process yields its share.
      seed: the loader seed (``config.seed``), for the order and the generators.
      op: the batch ops of the training string (``batch_ops.parse``).
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, batch_size: int, seed: int, op: batch_ops.BatchOp):
        self._arrays, self._batch, self._seed, self._op = arrays, batch_size, seed, op
        self._n = len(next(iter(arrays.values())))
        self._generators = batch_ops.RecordGenerators()
        self.step = 0

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        positions = process_positions(self.step, self._batch)
        records = shuffled_records(positions, self._n, self._seed)
        batch = {k: v[records] for k, v in self._arrays.items()}
        self.step += 1
        return self._op(batch, self._generators(self._seed + positions))


def choose(config: Any, source: Any, keys: Sequence[str], op_defaults: dict[str, dict[str, Any]]) -> str:
    """The pipeline the run uses, ``config.data.pipeline`` with "auto" resolved; checked before anything is written.

    "auto" is "batch" when every op of ``pp_train`` has a batch version that runs on the task's keys, batches are
    plain shuffles (no P x K identity sampler) and the split is below :data:`AUTO_MAX_BYTES`; else "record".
    "batch" and "device" say why they cannot run as a ConfigError naming the key.
    """
    dc = config.data
    choice = dc.get("pipeline", "record")
    if choice not in PIPELINES:
        raise ConfigError(f"config.data.pipeline={choice!r}: must be one of {', '.join(PIPELINES)}")
    if choice == "record":
        return choice
    reason = _unsupported(dc, choice, source, keys, op_defaults)
    if choice == "auto":
        return "record" if reason else "batch"
    if reason:
        raise ConfigError(f"config.data.pipeline={choice!r}: {reason}; config.data.pipeline='record' runs it")
    return choice


def _unsupported(
    dc: Any, choice: str, source: Any, keys: Sequence[str], op_defaults: dict[str, dict[str, Any]]
) -> str | None:
    """Why the training string cannot run on a split in memory on the ``choice`` path, or None.

    The op string runs once on two copies of the first record, so that a key an op would move but its batch
    version does not, or a crop larger than the images, shows here rather than at the first step.
    """
    if dc.get("identities_per_batch"):
        return "P x K identity batches (config.data.identities_per_batch) are read per record"
    first = source[0]
    missing = [k for k in keys if k not in first]
    if missing:
        return f"records lack {missing}"
    if choice == "auto":
        size = sum(np.asarray(first[k]).nbytes for k in keys) * len(source)
        if size > AUTO_MAX_BYTES:
            return f"the split is {size / 2**30:.1f} GiB"
    two = {k: np.stack([np.asarray(first[k])] * 2) for k in keys}
    try:
        if choice == "device":
            from mlcv.data import device_ops  # JAX ops only where the device path is asked for

            jax.eval_shape(device_ops.parse(dc.pp_train, op_defaults), two, jax.random.key(0))
        else:
            batch_ops.parse(dc.pp_train, op_defaults)(two, batch_ops.RecordGenerators()([0, 1]))
    except ValueError as e:
        return f"config.data.pp_train: {e}"
    return None
