"""The op registry and the spec-string parser of :mod:`mlcv.data.ops`.

Each op is a factory registered by name; called with the arguments written
in the string it returns a function ``(example, rng) -> example`` over a dict
of NumPy arrays. Ops that draw random numbers use only ``rng``, which grain
derives from the loader seed and the record index, so a pipeline is
reproducible and resumable.

Each registration also declares the keys of the data contract the op moves
(rewrites), so a reader or a test can see which annotations follow an op
without reading its body: ``moves("flip_lr")``.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

Example = dict[str, Any]
Op = Callable[[Example, np.random.Generator], Example]

_OPS: dict[str, Callable[..., Op]] = {}
_MOVES: dict[str, tuple[str, ...]] = {}


def register(name: str, moves: tuple[str, ...] = ("image",)) -> Callable[[Callable[..., Op]], Callable[..., Op]]:
    """Registers an op factory under ``name``; ``moves`` names the example keys its ops may rewrite.

    Keys an op does not list must pass through it untouched (present or absent).
    """

    def wrap(factory: Callable[..., Op]) -> Callable[..., Op]:
        if name in _OPS:
            raise ValueError(f"preprocessing op {name!r} registered twice")
        _OPS[name] = factory
        _MOVES[name] = tuple(moves)
        return factory

    return wrap


def moves(name: str) -> tuple[str, ...]:
    """The example keys that the op registered as ``name`` may rewrite."""
    if name not in _MOVES:
        raise ValueError(f"unknown preprocessing op {name!r}; valid ops: {', '.join(names())}")
    return _MOVES[name]


def names() -> list[str]:
    """The registered op names."""
    return sorted(_OPS)


def parse(spec: str, defaults: dict[str, dict[str, Any]] | None = None) -> Op:
    """Builds one op from a ``|``-separated spec string.

    ``defaults`` maps an op name to keyword arguments used where the string
    gives none (the dataset's mean and std for ``normalize``, say).
    """
    defaults = defaults or {}
    ops = [_parse_one(piece.strip(), defaults) for piece in spec.split("|") if piece.strip()]

    def composed(example: Example, rng: np.random.Generator) -> Example:
        for op in ops:
            example = op(example, rng)
        return example

    return composed


def parse_call(piece: str, defaults: dict[str, dict[str, Any]]) -> tuple[str, inspect.BoundArguments]:
    """One op of a string: its name and its factory's arguments, the dataset's ``defaults`` and then the
    factory's own filling what the string leaves out. The batch ops (:mod:`mlcv.data.batch_ops`) read a string
    through this too, so it means the same on both paths.

    Raises:
      ValueError: a string that does not parse, an unknown op or bad arguments, named.
    """
    try:
        node = ast.parse(piece, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"cannot parse preprocessing op {piece!r}: {e.msg}") from None
    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, [], {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        try:
            args = [_literal(a) for a in node.args]
            kwargs = {k.arg: _literal(k.value) for k in node.keywords}
        except ValueError:
            raise ValueError(
                f"arguments of preprocessing op {piece!r} must be literals or arithmetic on them"
            ) from None
    else:
        raise ValueError(f"cannot parse preprocessing op {piece!r}")
    if name not in _OPS:
        raise ValueError(f"unknown preprocessing op {name!r}; valid ops: {', '.join(names())}")
    signature = inspect.signature(_OPS[name])
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
        # Defaults fill only the parameters the string leaves out, whether it
        # gives the others by position or by name.
        kwargs = {**{k: v for k, v in defaults.get(name, {}).items() if k not in given}, **kwargs}
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for preprocessing op {piece!r}: {e}") from None
    bound.apply_defaults()
    return name, bound


def _parse_one(piece: str, defaults: dict[str, dict[str, Any]]) -> Op:
    name, bound = parse_call(piece, defaults)
    try:
        return _OPS[name](*bound.args, **bound.kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for preprocessing op {piece!r}: {e}") from None


_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def _literal(node: ast.AST) -> Any:
    """A Python literal, allowing arithmetic such as ``1/255`` or ``-0.5``."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_literal(node.left), _literal(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    return ast.literal_eval(node)


class BatchVersions:
    """A table of whole-batch versions of registered ops: the host's batch ops and the device ops each keep one.

    A version is registered under its op's name with the keys it moves (``handles``); :meth:`bind` reads one piece
    of an op string through :func:`parse_call`, so a string means the same on every path, and wraps the version so
    that it refuses a batch holding a key the per-record op would move and the version does not.

    Args:
      kind: the versions' name in messages ("batch", "device").
      elsewhere: where the ops without a version run, for messages ("per record", "on the host").
      why: why some keys are refused, appended to the refusal ("" for none).
    """

    def __init__(self, kind: str, elsewhere: str, why: str = ""):
        self.kind, self.elsewhere, self.why = kind, elsewhere, why
        self._table: dict[str, tuple[Callable[..., Callable[..., Any]], tuple[str, ...]]] = {}

    def register(self, name: str, handles: tuple[str, ...] = ("image",)) -> Callable[[Callable], Callable]:
        """Registers the factory of ``name``'s version, taking the per-record op's arguments by name."""

        def wrap(factory: Callable) -> Callable:
            self._table[name] = (factory, tuple(handles))
            return factory

        return wrap

    def names(self) -> list[str]:
        """The ops that have a version here."""
        return sorted(self._table)

    def bind(self, piece: str, defaults: dict[str, dict[str, Any]]) -> Callable[..., Any]:
        """The version of one op of a string, ``(batch, *draws) -> batch``; ValueError names an op without one."""
        name, bound = parse_call(piece, defaults)
        if name not in self._table:
            raise ValueError(
                f"preprocessing op {name!r} has no {self.kind} version; {self.kind} ops: {', '.join(self.names())} "
                f"(apply the others {self.elsewhere})"
            )
        factory, handles = self._table[name]
        op = factory(**bound.arguments)
        moved = [k for k in moves(name) if k not in handles]

        def checked(batch: dict[str, Any], *draws: Any) -> dict[str, Any]:
            unmoved = [k for k in moved if k in batch]
            if unmoved:
                raise ValueError(
                    f"{name}: the batch has {unmoved}, which the per-record op would move and the {self.kind} "
                    f"version does not{self.why}; preprocess such examples {self.elsewhere}"
                )
            return op(batch, *draws)

        return checked
