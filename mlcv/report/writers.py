"""Writes scalar metrics to ``metrics.jsonl`` and TensorBoard event files."""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path
from typing import Any


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (an absent file gives none)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is suspect
    return out


def _event_records(path: Path) -> list[bytes]:
    """The raw TFRecord records of an event file (length, its CRC, data, data CRC), up to a cut-off one."""
    data, out, pos = path.read_bytes(), [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        end = pos + 12 + length + 4
        if end > len(data):
            break  # the tail of a file whose writer was killed
        out.append(data[pos:end])
        pos = end
    return out


def read_scalars(tensorboard_dir: str | os.PathLike) -> list[tuple[int, str, float]]:
    """Every scalar of every event file in ``tensorboard_dir`` as ``(step, tag, value)``, sorted."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(Path(tensorboard_dir).glob("events.out.tfevents.*")):
        for record in _event_records(path):
            event = event_pb2.Event.FromString(record[12:-4])
            out.extend((int(event.step), v.tag, float(v.simple_value)) for v in event.summary.value)
    return sorted(out)


def truncate_events(tensorboard_dir: str | os.PathLike, step: int) -> None:
    """Drops the summaries with ``step > step`` from every event file in ``tensorboard_dir``.

    Records are copied byte for byte (their checksums stay valid); a file
    left with no summary is removed.
    """
    from tensorboardX.proto import event_pb2

    for path in sorted(Path(tensorboard_dir).glob("events.out.tfevents.*")):
        records = _event_records(path)
        kept, summaries = [], 0
        for record in records:
            event = event_pb2.Event.FromString(record[12:-4])
            if event.HasField("summary") and event.step > step:
                continue
            kept.append(record)
            summaries += event.HasField("summary")
        if not summaries:
            path.unlink()
        elif len(kept) != len(records) or sum(map(len, records)) != path.stat().st_size:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, path)


class MetricWriter:
    """Appends one JSON object per logged step; mirrors scalars to TensorBoard.

    On resume, ``truncate_after(step)`` drops records past the restored
    checkpoint from ``metrics.jsonl`` and from the TensorBoard event files,
    so both read as one uninterrupted run.
    """

    def __init__(self, workdir: str | os.PathLike, tensorboard: bool = True):
        self.path = Path(workdir) / "metrics.jsonl"
        self.tb_dir = Path(workdir) / "tensorboard" if tensorboard else None
        self._tb = None  # created at the first write, after any truncation of older event files
        self._tb_files = 0  # event files this writer started: part of their names, so that none share one

    def truncate_after(self, step: int) -> None:
        """Keeps only records with ``step <= step``, in ``metrics.jsonl`` and in TensorBoard."""
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)
        if self.tb_dir is not None and self.tb_dir.is_dir():
            if self._tb is not None:  # its file is rewritten: later scalars go to a new one
                self._tb.close()
                self._tb = None
            truncate_events(self.tb_dir, step)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        """Logs ``scalars`` at ``step``; non-finite values are written as null."""
        if self.tb_dir is not None and self._tb is None:
            from tensorboardX.event_file_writer import EventsWriter

            # Synchronous writes, not tensorboardX's SummaryWriter: that one queues events for a thread and its
            # flush() does not wait for the queue, so a kill just after a checkpoint lost events the checkpoint
            # covered (seen under load: a resumed run's TensorBoard lacked a validation step). The process id
            # and a count keep two files started within one second from sharing a name.
            self.tb_dir.mkdir(parents=True, exist_ok=True)
            self._tb_files += 1
            self._tb = EventsWriter(str(self.tb_dir / "events"), f".{os.getpid()}.{self._tb_files}")
        record = {"step": int(step)}
        for k, v in scalars.items():
            v = float(v)
            record[k] = v if math.isfinite(v) else None
            # An undefined metric (AP of a size no object has) is a gap in TensorBoard's curve, not a warning per
            # eval from tensorboardX; metrics.jsonl keeps it as null and the loop's guard reports a NaN loss.
            if self._tb is not None and math.isfinite(v):
                from tensorboardX import summary
                from tensorboardX.proto import event_pb2

                event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary.scalar(k, v))
                self._tb.write_event(event)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        """Puts buffered TensorBoard events on disk (before a checkpoint, so a kill loses none it covers)."""
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer (a later write starts a new event file)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
