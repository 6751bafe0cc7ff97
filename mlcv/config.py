"""Helpers for experiment files: argument strings and durations with units.

Experiment files call :func:`parse_arg` on the string after the colon of
``--config experiments/X.py:arg`` and use :func:`steps` to turn the
``*_epochs`` / ``*_steps`` keys of a config into a number of steps.
"""

from __future__ import annotations

import ast
import math
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config names something that does not exist or holds a bad value."""


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """Parses ``"depth=56,runlocal"`` into a ConfigDict over ``defaults``.

    A bare word sets a boolean to True. Values are Python literals where they
    parse as one (``lr=0.1``, ``sizes=(1,2)``), strings otherwise. Keys that
    are not in ``defaults`` are an error, so a typo in an arg is caught the
    same way as a typo in a ``--config.`` override.
    """
    out = dict(defaults)
    for item in _split_top_level(arg or ""):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(f"unknown config arg {key!r}; valid args: {', '.join(sorted(defaults))}")
        if not sep:
            out[key] = True
            continue
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key] = value.strip()
    return ml_collections.ConfigDict(out)


def _split_top_level(text: str) -> list[str]:
    """Splits on commas that are not inside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (p.strip() for p in parts) if p]


def steps(config: ml_collections.ConfigDict, name: str, steps_per_epoch: int) -> int | None:
    """Returns ``config.<name>_steps`` or ``config.<name>_epochs`` in steps.

    ``<name>_steps`` wins when both are set, so that ``--config.total_steps=60``
    overrides an experiment written in epochs; neither set gives None.
    Fractional epochs round up so a duration never collapses to zero steps.
    """
    by_steps = config.get(f"{name}_steps")
    by_epochs = config.get(f"{name}_epochs")
    if by_steps is not None:
        return int(by_steps)
    if by_epochs is not None:
        # Round before the ceiling: 1.1 epochs of 100 steps is 110, not the 111
        # that the float 110.00000000000001 would give.
        return max(1, math.ceil(round(float(by_epochs) * steps_per_epoch, 6)))
    return None
