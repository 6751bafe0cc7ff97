"""Helpers for experiment files: argument strings and durations with units.

Experiment files call :func:`parse_arg` on the string after the colon of
``--config experiments/X.py:arg`` and use :func:`steps` to turn the
``*_epochs`` / ``*_steps`` keys of a config into a number of steps.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import numbers
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config names something that does not exist or holds a bad value."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config key accepts: finite numbers (integers with ``integer``) between bounds.

    ``str(Range(0, 1, high_open=True))`` is ``"a number in [0, 1)"``: error messages state the range.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def accepts(self, value: Any) -> bool:
        """True for a finite number (an integral one with ``integer``) inside the bounds; bools are not numbers."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        # Unbounded on one side, a float range says "finite": inf and nan are refused too.
        kind = kind if self.integer else "a finite number"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return kind


def _number(x: float | None) -> str:
    """A bound as written in a message: ``1``, ``0.5``, ``4294967295`` (never ``4.29e+09``)."""
    return "" if x is None else (str(int(x)) if float(x).is_integer() else f"{x:g}")


#: Ranges used across mlcv: a count of steps or items, a count that may be 0, a rate, a fraction.
POSITIVE_INT = Range(1, integer=True)
NON_NEGATIVE_INT = Range(0, integer=True)
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)


def check(config: ml_collections.ConfigDict, key: str, accepted: Range, *, where: str = "config") -> None:
    """Raises ConfigError unless ``config.<key>`` (a dotted path) is None, missing or in ``accepted``.

    None and missing keys mean "not set" throughout mlcv (older configs lack newer keys), so only a
    value that is set is checked. The message names the key, the value and the range:
    ``config.optim.lr=nan: must be a finite number > 0``.
    """
    value: Any = config
    for part in key.split("."):
        if value is None or part not in value:
            return
        value = value[part]
    if value is not None and not accepted.accepts(value):
        raise ConfigError(f"{where}.{key}={value!r}: must be {accepted}")


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


def steps(config: ml_collections.ConfigDict, name: str, steps_per_epoch: int, *, where: str = "config") -> int | None:
    """Returns ``config.<name>_steps`` or ``config.<name>_epochs`` in steps.

    ``<name>_steps`` wins when both are set, so that ``--config.total_steps=60``
    overrides an experiment written in epochs; neither set gives None.
    Fractional epochs round up so a duration never collapses to zero steps.

    Raises:
      ConfigError: a set value is not a whole number of steps >= 1 or a finite number of epochs > 0;
        ``where`` is the path of ``config`` in the messages (``"config.checkpoint"``).
    """
    # Both are checked, even the one that loses: a bad value is a mistake wherever it is.
    check(config, f"{name}_steps", POSITIVE_INT, where=where)
    check(config, f"{name}_epochs", POSITIVE, where=where)
    by_steps = config.get(f"{name}_steps")
    by_epochs = config.get(f"{name}_epochs")
    if by_steps is not None:
        return int(by_steps)
    if by_epochs is not None:
        # Round before the ceiling: 1.1 epochs of 100 steps is 110, not the 111
        # that the float 110.00000000000001 would give.
        return max(1, math.ceil(round(float(by_epochs) * steps_per_epoch, 6)))
    return None
