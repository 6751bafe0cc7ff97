"""The device mesh: batches split over a ``data`` axis, parameters replicated."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, axis ``data``."""
    # Auto axes: the compiler propagates shardings from the inputs, so model
    # code needs no sharding annotations (explicit axes would require them).
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of a value held whole on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over ``data``."""
    return NamedSharding(mesh, PartitionSpec("data"))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles this process's share of a batch into global sharded arrays."""
    sharding = batch_sharded(mesh)
    # 64-bit host arrays (TFDS integer features are int64) would be silently truncated by
    # JAX's default 32-bit mode; convert them explicitly.
    return {k: jax.make_array_from_process_local_data(sharding, to32(np.asarray(v))) for k, v in batch.items()}


def to32(a: np.ndarray) -> np.ndarray:
    """``a`` with int64 as int32 and float64 as float32, the dtypes JAX holds by default; others as they are."""
    if a.dtype == np.int64:
        return a.astype(np.int32)
    if a.dtype == np.float64:
        return a.astype(np.float32)
    return a


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` on every device."""
    return jax.device_put(tree, replicated(mesh))


def check_replicas(params: Any) -> bool | None:
    """On several processes, checks every process holds the same parameters (None on one process).

    Replicated arrays are one logical value; a host whose copy drifted (a non-deterministic kernel, a bad
    link) would make checkpoints and results depend on which host wrote them.
    """
    if jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils

    local = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(params)]
    multihost_utils.assert_equal(local, "parameters differ between processes")
    return True
