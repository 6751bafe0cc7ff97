"""Device prefetch: the batches in order, and a checkpoint position that ignores the batches read ahead."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcv.training.prefetch import DevicePrefetch


class _Counter:
    """A checkpointable iterator of 0, 1, 2, ... whose state is the next value, as JSON bytes like grain's."""

    def __init__(self):
        self.next_value, self.reads = 0, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.next_value, self.reads = self.next_value + 1, self.reads + 1
        return np.array([self.next_value - 1])

    def get_state(self) -> bytes:
        return json.dumps({"next": self.next_value}).encode()

    def set_state(self, state: bytes) -> None:
        self.next_value = json.loads(state)["next"]


@pytest.mark.parametrize("size", [0, 1, 3])
def test_order_state_and_resume(size):
    """Batches come in order, each through ``put``; after k batches the state is 'next = k' whatever was read
    ahead (k + size values read), and a fresh iterator set to that state continues at k, as a resumed run does."""
    host = _Counter()
    it = DevicePrefetch(host, put=lambda b: b * 10, size=size)
    assert [int(next(it)[0]) for _ in range(4)] == [0, 10, 20, 30]
    assert host.reads == 4 + size  # read ahead
    assert json.loads(it.get_state()) == {"next": 4}
    resumed = DevicePrefetch(_Counter(), put=lambda b: b * 10, size=size)
    resumed.set_state(it.get_state())
    assert [int(next(resumed)[0]) for _ in range(3)] == [40, 50, 60]
    assert [int(next(it)[0]) for _ in range(3)] == [40, 50, 60]  # the original goes on the same way
    # Setting the state drops what was read ahead: back to 1, the next batch is 1 (x 10), not 7.
    it.set_state(json.dumps({"next": 1}).encode())
    assert int(next(it)[0]) == 10


def test_wait_is_measured_and_reset():
    it = DevicePrefetch(_Counter(), put=lambda b: b, size=1)
    next(it)
    waited = it.reset_wait()
    assert waited > 0 and it.wait_s == 0.0
    with pytest.raises(ValueError, match="prefetch size"):
        DevicePrefetch(_Counter(), put=lambda b: b, size=-1)
