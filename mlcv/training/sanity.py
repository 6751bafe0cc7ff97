"""Checks of a finished run's results that no exception catches: a run that trained without learning.

Adam at a huge learning rate never produces a NaN, so the loop's guard stays silent, and the run ends
"successfully" at chance accuracy. :func:`warn_if_not_learned` compares the validation metrics of the
selected checkpoint with the chance values the task declares (:meth:`~mlcv.tasks.base.Task.chance`),
so the loop stays free of any task's metric names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

#: A metric within this fraction of its chance value (10 % relative) counts as no better than chance:
#: a model that learned anything clears it by far, while a small validation set scatters a guesser's
#: score around the chance value.
MARGIN = 0.1


def not_learned(scores: Mapping[str, float], chance: Mapping[str, float], directions: Mapping[str, str]) -> str | None:
    """The first metric of ``scores`` no better than its ``chance`` value, as a sentence; None if all are.

    ``directions`` gives each metric's better direction ("max" or "min", default "max"). Metrics
    without a chance value, or not finite, are not judged.
    """
    for name, base in chance.items():
        value = scores.get(name)
        if value is None or not math.isfinite(value):
            continue
        if directions.get(name, "max") == "max":
            at_chance = value <= base * (1 + MARGIN)
        else:
            at_chance = value >= base * (1 - MARGIN)
        if at_chance:
            return f"validation {name} {value:.4g} is no better than chance ({base:.4g})"
    return None


def warn_if_not_learned(summary: dict[str, Any], task: Any, directions: Mapping[str, str], say: Callable) -> None:
    """Records ``"warnings"`` in ``summary`` and says the line when training did not learn.

    Judged on the validation results of the selected checkpoint, raw and averaged parameters alike:
    the warning stands only when every view of the parameters is at chance.
    """
    chance = task.chance()
    views = [summary[k] for k in ("validation", "validation_avg") if isinstance(summary.get(k), Mapping)]
    found = [not_learned(v, chance, directions) for v in views]
    if not found or any(f is None for f in found):
        return
    line = f"training did not learn: {found[0]}; check config.optim.lr and the data"
    summary.setdefault("warnings", []).append(line)
    say(f"warning: {line}")
