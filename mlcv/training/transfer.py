"""Transfer learning: a new run starts from the weights of a finished run wherever the two models agree.

``config.init_from = {"workdir": ..., "step": None}`` names a finished run (``step`` None: the step it
selected on validation, else its newest checkpoint). Every parameter and batch statistic of the new model
whose path and shape equal the source's is copied; the rest keep their fresh initialisation: a classifier's
10-way output layer is fresh in a detector whose head predicts 10 scores and 4 box numbers, while the
convolutions below it start from what the classifier learned (the course's fine-tuning). ``into`` (a
module name, ``"backbone"``; ``a/b`` for a nested one) places the source's variables under that module of
the new model: a detector whose ResNet is its submodule ``backbone`` starts from a ResNet classifier's run,
as the detection papers start from ImageNet weights. Optimizer state, step and averages start afresh. A
resumed run restores its own checkpoint and never reads the source again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mlcv.config import ConfigError


@dataclasses.dataclass(frozen=True)
class InitSource:
    """The variables a run starts from, and where they came from."""

    workdir: Path
    step: int
    variables: dict[str, Any]
    into: str = ""


def load(config: ml_collections.ConfigDict, load_run: Callable[..., Any]) -> InitSource | None:
    """The run ``config.init_from`` names, read by ``load_run`` (:func:`mlcv.training.runs.load_run`) before
    anything is written; None without ``init_from``.

    Raises:
      ConfigError: ``config.init_from.workdir`` is not a finished run, or lacks the checkpoint of ``step``.
    """
    cfg = config.get("init_from")
    if not cfg or not cfg.get("workdir"):
        return None
    try:
        run = load_run(cfg.workdir, cfg.get("step"))
    except ConfigError as e:
        raise ConfigError(f"config.init_from.workdir: {e}") from None
    return InitSource(Path(cfg.workdir), run.step, run.variables, str(cfg.get("into") or ""))


def _flat(tree: Any) -> dict[str, Any]:
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def merge(fresh: dict[str, Any], source: dict[str, Any], into: str = "") -> tuple[dict[str, Any], list[str], list[str]]:
    """``fresh`` with every leaf that ``source`` has at the same path and shape replaced by the source's.

    ``source`` and ``fresh`` map collections (``params``, ``batch_stats``) to trees; with ``into``, the
    source's trees sit under the module path ``into`` (``a/b``) of the fresh ones.
    Returns ``(variables, copied, kept)``: the merged tree and the paths copied and kept fresh.
    """
    if into:
        for name in reversed(into.split("/")):
            source = {col: {name: tree} for col, tree in source.items() if tree is not None}
    src = _flat(source)
    copied: list[str] = []
    kept: list[str] = []

    def pick(path: Any, leaf: Any) -> Any:
        key = jax.tree_util.keystr(path)
        other = src.get(key)
        if other is not None and np.shape(other) == np.shape(leaf):
            copied.append(key)
            return np.asarray(other, dtype=np.asarray(leaf).dtype)
        kept.append(key)
        return leaf

    merged = jax.tree_util.tree_map_with_path(pick, fresh)
    return merged, copied, kept


def describe(source: InitSource, copied: list[str], kept: list[str]) -> str:
    """One log line: what was copied from where, and which arrays start fresh."""
    fresh = ", ".join(kept[:6]) + (f" and {len(kept) - 6} more" if len(kept) > 6 else "")
    line = f"init_from {source.workdir} step {source.step}: copied {len(copied)} of {len(copied) + len(kept)} arrays"
    return line + (f"; fresh: {fresh}" if kept else "")
