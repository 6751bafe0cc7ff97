"""Writes scalar metrics to ``metrics.jsonl`` and TensorBoard event files."""

from __future__ import annotations

import json
import math
import os
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


class MetricWriter:
    """Appends one JSON object per logged step; mirrors scalars to TensorBoard.

    On resume, ``truncate_after(step)`` drops records past the restored
    checkpoint so the file reads as one uninterrupted run.
    """

    def __init__(self, workdir: str | os.PathLike, tensorboard: bool = True):
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Keeps only records with ``step <= step``."""
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        """Logs ``scalars`` at ``step``; non-finite values are written as null."""
        record = {"step": int(step)}
        for k, v in scalars.items():
            v = float(v)
            record[k] = v if math.isfinite(v) else None
            if self._tb is not None:
                self._tb.add_scalar(k, v, int(step))
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer."""
        if self._tb is not None:
            self._tb.close()
