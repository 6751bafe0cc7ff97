"""The rules that read each validation: the best step (model selection), early stopping, the plateau rule.

Each keeps its counters in the loop dict, which every checkpoint holds, so a
resumed run continues them exactly where the interrupted one left them.
"""

from __future__ import annotations

from typing import Any


def record(loop: dict[str, Any], step: int, value: float, mode: str, min_delta: float, patience_evals: int) -> bool:
    """Takes one validation ``value`` at ``step``: updates best and patience; True for a new best.

    A new best must beat the old by more than ``min_delta`` in direction ``mode``
    ("max" or "min"); ``patience_evals`` evaluations without one (0: never) stop the run.
    """
    best = loop["best_value"]
    better = best is None or (value > best + min_delta if mode == "max" else value < best - min_delta)
    if better:
        loop.update(best_value=value, best_step=step, bad_evals=0)
    else:
        loop["bad_evals"] += 1
    if patience_evals and loop["bad_evals"] >= patience_evals:
        loop["stopped_early"] = True
    return better


def plateaued(loop: dict[str, Any], value: float, min_delta: float, patience_evals: int) -> bool:
    """Takes one value of the plateau metric, lower is better; True when the learning rate is due to drop.

    Stored as "lower is better" so that the checkpointed loop state keeps one meaning.
    """
    best = loop.get("plateau_best")
    if best is None or value < best - min_delta:
        loop.update(plateau_best=value, plateau_bad=0)
        return False
    loop["plateau_bad"] = loop.get("plateau_bad", 0) + 1
    if loop["plateau_bad"] < patience_evals:
        return False
    loop["plateau_bad"] = 0
    return True
