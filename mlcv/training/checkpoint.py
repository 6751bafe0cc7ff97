"""Orbax checkpoints of a run: train state, data iterator and loop state, with checksums.

Saves are asynchronous. Orbax writes each step into a temporary directory
and renames it only once every item is on disk, so a save cut short by a
kill leaves a temporary directory that is never restored.

Integrity: every step directory holds ``checksums.json``, the SHA-256 and
size of each of its files (see :func:`write_manifest`), written into the
temporary directory just before orbax renames it, so a complete step
never lacks one; the two step-level files orbax writes around the rename
(``_CHECKPOINT_METADATA``, ``commit_success.txt``) are added once the save
is done, at the next save, wait or close. A step is restored only after
its files match; one that does not (or that orbax cannot read) is reported
in one line and the run falls back to the newest step that verifies.

Retention is mlcv's, not orbax's: after each save is on disk, the newest
``keep`` steps stay, with the best step that each of them records in its
loop state and the ``keep_steps``; everything else goes. Orbax's own
best-N policy ranks steps by metrics it holds in memory, so after a
restart it forgot them and deleted the best step the loop still pointed at.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grain.python as gp
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

MANIFEST = "checksums.json"
MANIFEST_FORMAT = "mlcv-checksums-1"
# Orbax's name for a step directory that is still being written.
_TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Step-level files orbax writes or rewrites after its finalization hook: added to the manifest once the save is done.
_LATE_FILES = ("_CHECKPOINT_METADATA", "commit_success.txt")


class CheckpointError(RuntimeError):
    """No usable checkpoint: every step fails verification, or the one the run needs does."""


class CorruptCheckpoint(CheckpointError):  # noqa: N818 - a kind of CheckpointError, named for the state it reports
    """One step failed verification; ``reason`` names the file (``state/d/… checksum mismatch``)."""

    def __init__(self, step: int, reason: str):
        self.step, self.reason = step, reason
        super().__init__(f"checkpoint step {step} is corrupt ({reason})")


def _files(step_dir: Path) -> list[str]:
    """Every file under ``step_dir`` (relative POSIX paths, sorted), the manifest itself excepted."""
    out = []
    for dirpath, _, names in os.walk(step_dir):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(step_dir).as_posix()
            if not rel.startswith(MANIFEST):  # the manifest and its temporary file
                out.append(rel)
    return sorted(out)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``path`` through a fsynced temporary file and a rename: a kill leaves the old file or the new."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(
    step_dir: str | os.PathLike, step: int, only_missing: bool = False, skip: tuple[str, ...] = ()
) -> None:
    """Writes ``<step_dir>/checksums.json``.

    Format: ``{"format": "mlcv-checksums-1", "step": N, "algorithm": "sha256",
    "files": {"state/d/…": {"size": bytes, "sha256": hex}, …}}``, one entry
    per file of the step directory (paths relative to it).

    With ``only_missing``, files already listed keep their entries and only
    files written since are added (orbax writes its step metadata and commit
    marker after the hook that writes the manifest); ``skip`` leaves those out.
    """
    step_dir = Path(step_dir)
    files: dict[str, dict[str, Any]] = {}
    if only_missing and (step_dir / MANIFEST).exists():
        files = json.loads((step_dir / MANIFEST).read_text())["files"]
    for rel in _files(step_dir):
        if rel not in files and rel not in skip:
            path = step_dir / rel
            files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": MANIFEST_FORMAT, "step": int(step), "algorithm": "sha256", "files": files}
    _write_atomic(step_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def verify(step_dir: str | os.PathLike) -> str | None:
    """Checks every file listed in the step's manifest; None when all match, else the first fault."""
    step_dir = Path(step_dir)
    if not step_dir.is_dir():
        return "missing"
    try:
        manifest = json.loads((step_dir / MANIFEST).read_text())
        files = manifest["files"]
        well_formed = manifest["format"] == MANIFEST_FORMAT and isinstance(files, dict) and files
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (ValueError, KeyError, TypeError):
        well_formed = False
    if not well_formed:
        return f"{MANIFEST} unreadable"
    for rel, entry in sorted(files.items()):
        path = step_dir / rel
        try:
            if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
                return f"{rel} checksum mismatch"
        except FileNotFoundError:
            return f"{rel} missing"
        except (TypeError, KeyError):
            return f"{MANIFEST} unreadable"
    return None


def _step_dirs(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []


def _has_manifests(directory: Path) -> bool:
    return any((p / MANIFEST).exists() for p in _step_dirs(directory))


def _one_line(e: BaseException) -> str:
    """The innermost cause of ``e`` in one short line: orbax wraps the TensorStore error that names the fault."""
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


def _sync_processes(name: str) -> None:
    """A barrier across the processes of a multi-process run (nothing on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


class Checkpoints:
    """Keeps the newest ``keep`` checkpoints, the best step each of them records, and ``keep_steps``.

    "Best" is the ``best_step`` of the loop dict saved with each step, so
    whatever step a restore lands on, the best step it names is on disk.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2, keep_steps: tuple[int, ...] = ()):
        self.directory = Path(directory).absolute()
        self.keep, self.keep_steps = max(1, int(keep)), frozenset(keep_steps)
        self.is_main = jax.process_index() == 0
        # Steps written before checksums existed: restore_latest adopts them, writing their manifests.
        self.legacy = bool(_step_dirs(self.directory)) and not _has_manifests(self.directory)
        self._best: dict[int, int | None] = {}  # step -> the best step its loop state names
        self._saving: int | None = None  # the step whose save is in flight or not yet settled
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=True,
            cleanup_tmp_directories=True,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._on_finalized),
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": gp.PyGrainCheckpointHandler(),
                "loop": ocp.JsonCheckpointHandler(),
            },
        )

    def _on_finalized(self) -> None:
        """Orbax's hook, in its save thread, after every item is written and before the rename."""
        step = self._saving
        tmp = self.directory / f"{step}{_TMP_SUFFIX}"
        if self.is_main and step is not None:
            write_manifest(tmp if tmp.is_dir() else self.directory / str(step), step, skip=_LATE_FILES)

    def _settle(self) -> None:
        """Waits for the pending save; then completes its manifest and applies retention."""
        self.manager.wait_until_finished()
        step, self._saving = self._saving, None
        if step is None or not (self.directory / str(step)).is_dir():
            return
        if self.is_main:
            write_manifest(self.directory / str(step), step, only_missing=True)
        steps = sorted(self.manager.all_steps())
        newest = steps[-self.keep :]
        keep = set(newest) | self.keep_steps | {self._best_of(s) for s in newest}
        for s in steps:
            if s not in keep:
                self.delete(s)

    def _best_of(self, step: int) -> int | None:
        if step not in self._best:
            try:
                self._best[step] = json.loads((self.directory / str(step) / "loop" / "metadata").read_text())[
                    "best_step"
                ]
            except (OSError, ValueError, KeyError, TypeError):
                self._best[step] = None  # unreadable: it will not restore either
        return self._best[step]

    def delete(self, step: int) -> None:
        """Removes one step from disk."""
        self.manager.delete(step)
        self._best.pop(step, None)

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every complete step on disk."""
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, data_iter: Any, loop: dict[str, Any]) -> None:
        """Starts an asynchronous save of everything needed to resume at ``step``."""
        self._settle()
        self._best[step] = loop.get("best_step")
        self._saving = step
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=gp.PyGrainCheckpointSave(data_iter),
                loop=ocp.args.JsonSave(loop),
            ),
        )

    def verify(self, step: int) -> str | None:
        """None when ``step`` verifies against its manifest, else what is wrong."""
        return verify(self.directory / str(step))

    def restore(self, step: int, state_like: Any, data_iter: Any | None = None) -> tuple[Any, dict[str, Any]]:
        """Verifies ``step``, then restores the state (shaped and sharded like ``state_like``) and loop dict.

        With ``data_iter`` the iterator is moved to its saved position too.

        Raises:
          CorruptCheckpoint: the step is missing, fails its checksums or cannot be read.
        """
        reason = self.verify(step)
        if reason is not None:
            raise CorruptCheckpoint(step, reason)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        items = {"state": ocp.args.StandardRestore(abstract), "loop": ocp.args.JsonRestore()}
        if data_iter is not None:
            items["data"] = gp.PyGrainCheckpointRestore(data_iter)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 - whatever orbax raises on a bad file, it is one line
            raise CorruptCheckpoint(step, f"unreadable: {_one_line(e)}") from e
        self._best[step] = restored["loop"].get("best_step")
        return restored["state"], restored["loop"]

    def restore_latest(
        self, state_like: Any, data_iter: Any, say: Callable[[str], None]
    ) -> tuple[int, Any, dict[str, Any]] | None:
        """Restores the newest step that verifies: ``(step, state, loop)``, or None when there is no step.

        Each newer step that fails is reported in one line through ``say``
        and deleted, since training will write that step again. Steps of a
        run from before checksums (no step has a manifest) are adopted as they
        are: their manifests are written first, and one line says so.

        Raises:
          CheckpointError: there are steps, and none verifies.
        """
        steps = sorted(self.all_steps(), reverse=True)
        if self.legacy:
            if self.is_main:
                for step in steps:
                    write_manifest(self.directory / str(step), step)
            _sync_processes("mlcv_checksums_adopted")  # the other processes verify against these
            shown = ", ".join(map(str, reversed(steps)))
            say(f"checkpoint steps {shown} predate checksums: their {MANIFEST} written now, from the files as they are")
            self.legacy = False
        failures: list[CorruptCheckpoint] = []
        for step in steps:
            try:
                state, loop = self.restore(step, state_like, data_iter)
            except CorruptCheckpoint as e:
                failures.append(e)
                continue
            for e in failures:
                say(f"{e}; falling back to step {step}")
                self.delete(e.step)
            return step, state, loop
        if failures:
            faults = "; ".join(f"step {e.step}: {e.reason}" for e in failures)
            raise CheckpointError(f"no checkpoint in {self.directory} verifies ({faults})")
        return None

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk, with their manifests."""
        self._settle()

    def close(self) -> None:
        """Waits for saves and releases the manager."""
        self._settle()
        self.manager.close()


def read_state(step_dir: str | os.PathLike) -> Any:
    """Reads the train state of one step directory as NumPy arrays, after verifying its checksums.

    Works whatever the device layout of the run that saved it (8 devices,
    several hosts): every array is gathered onto this process's first device.

    Raises:
      CorruptCheckpoint: the step fails verification (a step of a run from
        before checksums, where no step has a manifest, is read unverified).
    """
    step_dir = Path(step_dir).absolute()
    if _has_manifests(step_dir.parent):
        reason = verify(step_dir)
        if reason is not None:
            raise CorruptCheckpoint(int(step_dir.name) if step_dir.name.isdigit() else -1, reason)
    path = step_dir / "state"
    checkpointer = ocp.StandardCheckpointer()
    # Reading one item of a composite step, orbax warns that the step-level
    # metadata file is not in the item's directory; it is not needed here.
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        meta = checkpointer.metadata(path).item_metadata
    finally:
        logging.set_verbosity(verbosity)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return jax.tree.map(np.asarray, checkpointer.restore(path, abstract))
