"""The run directory: refusing one that holds another experiment or is in use, writing files that survive a kill.

Every file of a workdir is written through :func:`write_text` (``summary.json`` through
:func:`write_json`): a temporary file, fsynced, renamed over the old one, and the directory fsynced, so
a kill or a power cut leaves the old file or the new one, never half of one. JSON files are strict
JSON: a NaN or infinite value is written as ``null`` (callers that report a result say so; see
:func:`non_finite`).

A run holds :func:`lock` on its workdir from its first write to its end, so a second launch on the same
workdir is refused at once instead of interleaving two runs' files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import numbers
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_collections

from mlcv.config import ConfigError

LOCK_FILE = ".lock"


class WorkdirError(RuntimeError):
    """A workdir file cannot be written (disk full, read-only file system, a file where a directory
    should be); the message names the path and the cause: ``cannot write <path>: <strerror>``."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        self.path, self.errno = str(path), cause.errno
        reason = cause.strerror or str(cause)
        super().__init__(f"cannot write {self.path}: {reason}")


class WorkdirBusy(ConfigError):
    """Another live process holds the workdir's lock.

    A :class:`~mlcv.config.ConfigError`, so the launcher reports it like any other bad choice of input:
    one ``error:`` line and exit status 2, nothing written.
    """


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


@contextlib.contextmanager
def lock(workdir: str | os.PathLike, active: bool = True) -> Iterator[None]:
    """Holds the exclusive lock of ``workdir`` (creating it) for the ``with`` block.

    The lock is ``fcntl.flock`` on ``<workdir>/.lock``, which the kernel releases when the process
    ends however it ends (kill -9 included), so a lock is never left stale. The file records the
    holder's pid, host and start time for the refusal message. With ``active=False`` (processes other
    than 0 of a multi-process run, which write nothing) this does nothing.

    Raises:
      WorkdirBusy: another process holds the lock; raised at once, without waiting.
      WorkdirError: the workdir or its lock file cannot be created.
    """
    if not active:
        yield
        return
    workdir = Path(workdir)
    path = workdir / LOCK_FILE
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        # O_TRUNC would wipe the holder's record before we know we are not the holder.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileExistsError as e:  # mkdir on an existing file
        raise WorkdirError(workdir, OSError(errno.ENOTDIR, "it exists and is not a directory")) from e
    except OSError as e:
        raise WorkdirError(path if workdir.is_dir() else workdir, e) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(
                f"workdir {workdir} is in use by {_holder(fd)}; wait for it or use another --workdir"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S %z")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except OSError as e:
            raise WorkdirError(path, e) from e
        yield
    finally:
        # Closing the descriptor releases the lock. The file stays: unlinking it could let two
        # processes each hold a lock, one on the old file (opened before the unlink), one on a new one.
        os.close(fd)


def _holder(fd: int) -> str:
    """``process <pid> on host <host> (started <time>)`` from the lock file, as far as it can be read."""
    # The holder writes its record just after taking the lock; a refusal in between sees an empty
    # file, so allow it a moment.
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode())
            return f"process {info['pid']} on host {info['host']} (started {info['started']})"
        except (ValueError, KeyError, TypeError, OSError):
            time.sleep(0.05)
    return "another process"


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite number replaced by None (JSON ``null``), recursively."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, numbers.Integral):  # numpy integers too
        return int(obj)
    if isinstance(obj, numbers.Real):  # numpy floats too
        return float(obj) if math.isfinite(obj) else None
    return obj


def non_finite(obj: Any, prefix: str = "") -> list[str]:
    """The dotted keys of ``obj`` whose values are NaN or infinite, e.g. ``["test.loss"]``."""
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in non_finite(v, f"{prefix}{key}.")]
    if isinstance(obj, (list, tuple)):
        return [k for i, v in enumerate(obj) for k in non_finite(v, f"{prefix}{i}.")]
    if isinstance(obj, numbers.Real) and not isinstance(obj, bool) and not math.isfinite(obj):
        return [prefix.rstrip(".")]
    return []


def warn_non_finite(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Prints one ``warning:`` line when ``summary`` holds NaN or infinite values (written as null).

    A non-finite result must never pass as a number, nor vanish as a silent ``null``.
    """
    bad = _grouped(non_finite(summary))
    if bad:
        print(f"warning: {', '.join(bad)} not finite (NaN or infinite), written as null in {path}", file=sys.stderr)


def _grouped(keys: list[str], limit: int = 3) -> list[str]:
    """``keys`` with the entries of one list told once: more than ``limit`` of ``a.b.<i>`` become ``a.b.* (n)``.

    A curve with 100 undefined points (a precision where no detection passes) is one fact, not 100 lines.
    """
    parents: dict[str, list[str]] = {}
    for key in keys:
        head, _, last = key.rpartition(".")
        parents.setdefault(head if last.isdigit() else key, []).append(key)
    out = []
    for parent, members in parents.items():
        out.extend(members if len(members) <= limit else [f"{parent}.* ({len(members)} values)"])
    return out


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as strict JSON, atomically (see :func:`write_text`).

    NaN and infinities become ``null``: Python's ``NaN`` literal is not JSON and breaks strict readers
    (``jq``, browsers, other languages).

    Raises:
      WorkdirError: the file cannot be written; the old file, if any, is left as it was.
    """
    write_text(path, json.dumps(finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replaces ``path`` with ``text`` so that a kill or a power cut leaves the old file or the new one.

    The text goes to a temporary file beside ``path``, which is fsynced, renamed over ``path``, and the
    directory fsynced so that the rename itself is on disk.

    Raises:
      WorkdirError: the file cannot be written (disk full, read-only, no such directory); the
        temporary file is removed and the old file, if any, is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WorkdirError(path, e) from e
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Some file systems cannot open or fsync a directory; the rename has happened either way.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
