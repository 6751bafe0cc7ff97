"""The run directory: refusing one that holds another experiment, writing files that survive a kill."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ml_collections

from mlcv.config import ConfigError


def check_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir that holds a run of another config, naming the keys that differ.

    Resuming must never mix two experiments in one directory (say, after the
    experiment file changed).
    """
    path = Path(workdir) / "config.json"
    if not path.exists():
        return
    old, new = _flat(json.loads(path.read_text())), _flat(json.loads(config.to_json_best_effort()))
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if diff:
        raise ConfigError(
            f"workdir {workdir} holds a run of a different config (keys {', '.join(diff)}); "
            "use another --workdir or remove it"
        )


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def write_json(path: Path, obj: Any) -> None:
    """Writes ``obj`` as JSON through a temporary file and a rename."""
    # Write-then-rename, so a kill never leaves a half-written file behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)
