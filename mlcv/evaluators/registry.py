"""Evaluators by name: ``register`` them, ``build`` them from a config entry of ``config.evals``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mlcv.config import ConfigError
from mlcv.evaluators.base import Evaluator

E = TypeVar("E", bound=type[Evaluator])

_REGISTRY: dict[str, type[Evaluator]] = {}

# Constructor arguments that the dataset's metadata fills when the config leaves them out.
_FROM_META = ("num_classes", "class_names")


def register(name: str) -> Callable[[E], E]:
    """Class decorator: makes an :class:`Evaluator` subclass buildable as ``{"type": name, ...}``."""

    def decorate(cls: E) -> E:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"evaluator {name!r} is registered twice: {_REGISTRY[name].__name__}, {cls.__name__}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def names() -> list[str]:
    """The registered evaluator types, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Evaluator]:
    """The evaluator class registered as ``name``; a ConfigError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown evaluator type {name!r} in config.evals; valid types: {', '.join(names())}"
        ) from None


def _as_dict(cfg: Any) -> dict[str, Any]:
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        return dict(cfg.to_dict())
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise ConfigError(f"an entry of config.evals must be a dict with a 'type' key, not {cfg!r}")


def build(cfg: Any, meta: Any = None) -> Evaluator:
    """Instantiates the evaluator that ``cfg`` describes.

    Args:
      cfg: a dict or ConfigDict: ``"type"`` (a registered name) and the evaluator's keyword
        arguments.
      meta: the dataset's metadata (duck-typed: attributes ``num_classes`` and ``class_names``);
        it fills those constructor arguments where the evaluator takes them and ``cfg`` does not
        give them. May be None.

    Raises:
      ConfigError: for an unknown type, a key the evaluator does not take, a missing required
        argument or a value the evaluator rejects; the message names the evaluator and the key.
    """
    kwargs = _as_dict(cfg)
    if "type" not in kwargs:
        raise ConfigError(f"an entry of config.evals needs a 'type' (one of {', '.join(names())}); got {kwargs}")
    name = kwargs.pop("type")
    cls = get(name)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [k for k, p in params.items() if k != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key in kwargs:
        if key not in accepted and not takes_any:
            raise ConfigError(
                f"config.evals: evaluator {name!r} takes no argument {key!r}; it takes: {', '.join(accepted)}"
            )
    for key in _FROM_META:
        value = getattr(meta, key, None)
        if key in params and key not in kwargs and value is not None:
            kwargs[key] = value
    missing = [
        k for k in accepted if params[k].default is inspect.Parameter.empty and k not in kwargs
    ]  # e.g. num_classes when the dataset does not give it
    if missing:
        raise ConfigError(
            f"config.evals: evaluator {name!r} needs {', '.join(map(repr, missing))}, "
            "which neither its config nor the dataset's metadata gives"
        )
    return cls(**kwargs)
