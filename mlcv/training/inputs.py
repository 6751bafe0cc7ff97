"""The training batches of a run, from the pipeline ``config.data.pipeline`` names, put on the devices ahead.

- "record": grain's loader, the op string run record by record (workers: ``config.data.worker_count``); the
  path for what cannot batch: variable-size images, boxes and masks, P x K identity batches;
- "batch": the split held in host memory, each batch one gather and the batch ops (:mod:`mlcv.data.in_memory`),
  bit for bit the batches of "record";
- "device": the split held in device memory (:class:`DeviceStream`), the batch gathered and augmented by one
  jitted function on the devices: the host only computes which records come next. The augmentation draws from
  ``jax.random`` instead of each record's Philox generator, so its crops and flips are others than the host
  paths' (the same distributions: tests/data/test_device_ops.py); the order of the records is grain's, so with
  an op string that draws nothing the batches equal the host paths' bit for bit.
- "auto" (the default): "batch" where it can run (:func:`mlcv.data.in_memory.choose`), else "record".

Whichever it is, :class:`~mlcv.training.prefetch.DevicePrefetch` keeps two batches on the devices ahead of the
step and the checkpoint keeps the position after the last batch the loop took.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from mlcv.data import batch_ops, in_memory, pipeline
from mlcv.training import prefetch, sharding


class DeviceStream(in_memory.StreamPosition):
    """The endless training batches of a split held on the devices, augmented there; checkpointable.

    Args:
      arrays: the split, from :func:`~mlcv.data.in_memory.read_split`; held whole on every device.
      batch_size: the global batch, sharded over the mesh's ``data`` axis.
      seed: the order's seed (grain's) and the augmentation's (``jax.random.key(seed)`` folded with the step).
      spec, op_defaults: the training op string and the dataset's defaults (:mod:`mlcv.data.device_ops`).
      mesh: the run's device mesh.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        batch_size: int,
        seed: int,
        spec: str,
        op_defaults: dict[str, dict[str, Any]],
        mesh: Mesh,
    ):
        from mlcv.data import device_ops

        self._n = len(next(iter(arrays.values())))
        self._batch, self._seed, self.step = batch_size, seed, 0
        # 64-bit labels become 32-bit as on the host paths (sharding.put_batch), so the batches' dtypes agree.
        self._split = sharding.put_replicated({k: sharding.to32(np.asarray(v)) for k, v in arrays.items()}, mesh)
        self._repl = sharding.replicated(mesh)
        op, key = device_ops.parse(spec, op_defaults), jax.random.key(seed)

        def make(split: dict[str, jax.Array], records: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
            return op({k: jnp.take(v, records, axis=0) for k, v in split.items()}, jax.random.fold_in(key, step))

        self._make = jax.jit(make, out_shardings=sharding.batch_sharded(mesh))

    def __iter__(self) -> DeviceStream:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        positions = self.step * self._batch + np.arange(self._batch, dtype=np.int64)
        records = in_memory.shuffled_records(positions, self._n, self._seed).astype(np.int32)
        step = np.int32(self.step)
        self.step += 1
        # Every process computes the whole global batch's records: they are a few hundred bytes.
        return self._make(self._split, jax.device_put(records, self._repl), jax.device_put(step, self._repl))


def train_stream(config: ml_collections.ConfigDict, setup: Any, mesh: Mesh) -> prefetch.DevicePrefetch:
    """The run's training batches on the devices, from the pipeline ``setup.pipeline`` resolved."""
    dc, task = config.data, setup.task
    checks = (dc.name, task.train_range_checks())
    source = setup.sources["train"]
    if setup.pipeline == "record":
        pk = (dc.get("identities_per_batch") or 0, dc.get("images_per_identity") or 0)  # P x K identity batches
        loader = pipeline.train_loader(
            source,
            batch_size=dc.batch_size,
            pp=dc.pp_train,
            op_defaults=setup.spec.op_defaults,
            keys=task.batch_keys,
            seed=config.seed,
            worker_count=dc.worker_count,
            identities=pk if pk[0] else None,
            checks=checks,
        )
        return prefetch.DevicePrefetch(iter(loader), lambda batch: sharding.put_batch(batch, mesh))
    arrays = in_memory.read_split(source, task.batch_keys, dc.name, checks)
    if setup.pipeline == "device":
        stream = DeviceStream(
            arrays,
            batch_size=dc.batch_size,
            seed=config.seed,
            spec=dc.pp_train,
            op_defaults=setup.spec.op_defaults,
            mesh=mesh,
        )
        return prefetch.DevicePrefetch(stream, lambda batch: batch)
    op = batch_ops.parse(dc.pp_train, setup.spec.op_defaults)
    stream = in_memory.BatchStream(arrays, batch_size=dc.batch_size, seed=config.seed, op=op)
    return prefetch.DevicePrefetch(stream, lambda batch: sharding.put_batch(batch, mesh))
