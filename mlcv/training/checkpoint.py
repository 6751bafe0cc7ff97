"""Orbax checkpoints of a run: train state, data iterator and loop state.

Saves are asynchronous. Orbax writes each step into a temporary directory
and renames it only once every item is on disk, so a save cut short by a
kill leaves a temporary directory that is never restored; the manager
falls back to the newest complete step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grain.python as gp
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies


class Checkpoints:
    """Keeps the newest ``keep`` checkpoints, the best one on validation and ``keep_steps``.

    "Best" is decided by the training loop, which passes ``best_rank``: a
    number that grows each time validation improves, -1 otherwise, so that
    orbax's preservation keeps exactly the step the loop calls best.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2, keep_steps: tuple[int, ...] = ()):
        keepers = [
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=lambda m: m["best_rank"], n=1, keep_checkpoints_without_metrics=False),
        ]
        if keep_steps:  # e.g. the snapshots of a snapshot ensemble
            keepers.append(policies.CustomSteps(steps=list(keep_steps)))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keepers),
            enable_async_checkpointing=True,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": gp.PyGrainCheckpointHandler(),
                "loop": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every complete step on disk."""
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, data_iter: Any, loop: dict[str, Any], best_rank: int) -> None:
        """Starts an asynchronous save of everything needed to resume at ``step``."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=gp.PyGrainCheckpointSave(data_iter),
                loop=ocp.args.JsonSave(loop),
            ),
            metrics={"best_rank": best_rank},
        )

    def restore(self, step: int, state_like: Any, data_iter: Any | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores the state (shaped and sharded like ``state_like``) and loop dict.

        With ``data_iter`` the iterator is moved to its saved position too.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        items = {"state": ocp.args.StandardRestore(abstract), "loop": ocp.args.JsonRestore()}
        if data_iter is not None:
            items["data"] = gp.PyGrainCheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], restored["loop"]

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for saves and releases the manager."""
        self.manager.close()


def read_state(step_dir: str | os.PathLike) -> Any:
    """Reads the train state of one step directory as NumPy arrays.

    Works whatever the device layout of the run that saved it (8 devices,
    several hosts): every array is gathered onto this process's first device.
    """
    path = Path(step_dir).absolute() / "state"
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
