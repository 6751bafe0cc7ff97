"""Batches put on the devices ahead of the step that takes them, with the iterator's position kept exact.

JAX dispatches a step asynchronously, so while the devices run step ``k`` the host can read, augment and
transfer the batch of step ``k + 1``. :class:`DevicePrefetch` keeps ``size`` batches already on the devices
(``jax.device_put`` is asynchronous as well) and remembers, for each, the position of the host iterator
*after* it was read. Its :meth:`get_state` is the position after the last batch handed to the loop, not after
the last one read ahead, so a checkpoint resumes at the next unused batch and a resumed run sees the same
batches as an uninterrupted one.

It also measures how long the loop waited for data: the seconds spent inside :meth:`__next__` (reading,
preprocessing and transferring when the queue ran dry), which the loop logs as ``train/data_wait_fraction``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Logged metrics that time the run rather than describe it: a resumed run logs other values for them.
TIMING_METRICS = frozenset({"train/images_per_sec", "train/data_wait_fraction"})


class DevicePrefetch:
    """An iterator of device batches, ``size`` ahead of the loop, checkpointable like the grain iterator it wraps.

    Args:
      host_iter: a grain ``DataLoader`` iterator (``get_state`` / ``set_state`` of bytes).
      put: host batch -> device batch (``sharding.put_batch`` with the run's mesh).
      size: batches kept on the devices ahead of the loop; 0 reads and transfers on demand.
    """

    def __init__(self, host_iter: Iterator[Any], put: Callable[[Any], Any], size: int = 2):
        if size < 0:
            raise ValueError(f"prefetch size must be >= 0, got {size}")
        self._it, self._put, self._size = host_iter, put, size
        self._queue: collections.deque[tuple[Any, bytes]] = collections.deque()
        self._state = host_iter.get_state()
        self.wait_s = 0.0  # seconds spent in __next__ since the last reset_wait()

    def _read(self) -> tuple[Any, bytes]:
        batch = self._put(next(self._it))
        return batch, self._it.get_state()

    def __iter__(self) -> DevicePrefetch:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        batch, self._state = self._queue.popleft() if self._queue else self._read()
        # Read ahead after taking this batch: the loop dispatches its step next, and the batches read here are
        # the ones that step's run time hides.
        while len(self._queue) < self._size:
            self._queue.append(self._read())
        self.wait_s += time.perf_counter() - start
        return batch

    def reset_wait(self) -> float:
        """The seconds waited since the last reset, and zero them."""
        waited, self.wait_s = self.wait_s, 0.0
        return waited

    def get_state(self) -> bytes:
        """The host iterator's position after the last batch this iterator returned."""
        return self._state

    def set_state(self, state: bytes) -> None:
        """Moves to ``state``; the batches read ahead are dropped."""
        self._it.set_state(state)
        self._queue.clear()
        self._state = state

    def start_prefetch(self) -> None:
        """Grain's checkpoint handler calls this after a restore; reading ahead starts at the next ``next``."""
        start = getattr(self._it, "start_prefetch", None)
        if start is not None:
            start()
