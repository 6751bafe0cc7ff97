"""What the command line reports when a run cannot write its workdir: one line, not a traceback.

:func:`check_workdir` refuses a ``--workdir`` that surely cannot be written before anything is
loaded; :func:`write_failure` turns an error of a run that could not write a file (a full disk, a
read-only file system) into one line and an exit status; :func:`quiet_disk_full_logs` keeps orbax's
logged tracebacks of a failed save from burying that line.
"""

from __future__ import annotations

import errno
import logging as std_logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from mlcv.config import ConfigError


def check_workdir(workdir: str | os.PathLike) -> None:
    """Refuses a workdir that surely cannot be written, before anything is loaded or written.

    Writes nothing: it looks at the workdir, or where it does not exist yet at its nearest existing
    ancestor, with ``os.access``. What only an attempt reveals (``/proc``) fails at the run's first
    write, before training, with the same kind of line.

    Raises:
      ConfigError: ``cannot write <workdir>: <cause>``.
    """
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write {path}: it exists and is not a directory (--workdir)")
    ancestor = path.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"cannot write {path}: {ancestor} is a file, not a directory (--workdir)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        read_only = os.statvfs(ancestor).f_flag & os.ST_RDONLY
        cause = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise ConfigError(f"cannot write {path}: {cause} ({ancestor}) (--workdir)")


# A full disk: an OSError's errno, or the text of orbax/tensorstore's RESOURCE_EXHAUSTED write errors.
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = re.compile(r"No space left on device|os_error_code='(28|122)'|RESOURCE_EXHAUSTED: Error writing")
# Causes of a workdir that cannot be used at all: a bad --workdir (exit 2), not a failure mid-run.
_UNUSABLE_ERRNOS = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS)


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and the exceptions it was raised from or while handling, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not seen for seen in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _disk_full(e: BaseException) -> str | None:
    """The path that a full disk kept from being written, "" when unnamed; None when the disk is not full."""
    for cur in _chain(e):
        if isinstance(cur, OSError) and cur.errno in _DISK_FULL_ERRNOS:
            return str(getattr(cur, "filename", None) or "")
        if _DISK_FULL_TEXT.search(str(cur)):
            m = re.search(r'"(/[^"]+)"', str(cur))  # tensorstore quotes the file it failed to write
            return m.group(1) if m else str(getattr(cur, "path", None) or getattr(e, "path", None) or "")
    return None


def write_failure(e: BaseException, workdir: str) -> tuple[str, int] | None:
    """One line and an exit status for a run that could not write a file, else None.

    A full disk (an ``ENOSPC`` OSError, orbax's RESOURCE_EXHAUSTED) is a failure mid-run: exit 1, and
    the checkpoints saved before it stay. Any other OSError or :class:`~mlcv.workdirs.WorkdirError`
    whose cause says the path cannot be used (not a directory, read-only, no permission) is a bad
    ``--workdir``: exit 2.
    """
    from mlcv.workdirs import WorkdirError

    path = _disk_full(e)
    if path is not None:
        return f"cannot write {path or workdir}: no space left on device; free space and re-run to resume", 1
    if not isinstance(e, (OSError, WorkdirError)):
        return None
    if isinstance(e, WorkdirError):
        line = str(e)
    else:
        line = f"cannot write {e.filename or workdir}: {e.strerror or e}"
    codes = [c.errno for c in _chain(e) if isinstance(c, OSError)]
    return line, 2 if codes and codes[0] in _UNUSABLE_ERRNOS else 1


class _DiskFullLogFilter(std_logging.Filter):
    """Drops orbax's logged tracebacks of a save that failed for a full disk.

    Each background thread of a failed save logs the same RESOURCE_EXHAUSTED error with its traceback
    (hundreds of lines); the error also reaches the loop, and the command line reports it in one line.
    """

    def filter(self, record: std_logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (_DISK_FULL_TEXT.search(record.getMessage()) or (exc is not None and _disk_full(exc) is not None))


def _late_callback(unraisable: Any) -> bool:
    """Whether an unraisable exception is asyncio refusing a callback because its event loop is closed."""
    exc, tb = unraisable.exc_value, unraisable.exc_traceback
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    in_asyncio = tb is not None and "asyncio" in tb.tb_frame.f_code.co_filename
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed" and in_asyncio


def quiet_disk_full_logs() -> None:
    """Keeps the echoes of a failed save off stderr, once per process; the error itself still reaches the run.

    Orbax logs each failed write through absl's logger; asyncio logs the write futures nobody awaited
    ("exception was never retrieved") when they are collected; tensorstore's completion callbacks, run
    after orbax closed the save's event loop, report "Event loop is closed" as unraisable exceptions
    (``sys.unraisablehook``). A callback refused that way belongs to a save already given up.
    """
    for name in ("absl", "asyncio"):
        logger = std_logging.getLogger(name)
        if not any(isinstance(f, _DiskFullLogFilter) for f in logger.filters):
            logger.addFilter(_DiskFullLogFilter())
    previous = sys.unraisablehook
    if getattr(previous, "_mlcv_quiet", False):
        return

    def hook(unraisable: Any) -> None:
        if not _late_callback(unraisable):
            previous(unraisable)

    hook._mlcv_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
