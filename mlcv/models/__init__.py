"""Models by name.

Every model is a Flax Linen module whose ``__call__(x, *, train=False)``
returns logits for classifiers; variants are partial applications of one
module, registered under their own names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from mlcv.config import ConfigError
from mlcv.models import cnn, linear, mlp

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear.Linear,
    "mlp": mlp.MLP,
    "cnn": cnn.SmallCNN,
}


def names() -> list[str]:
    """The registered model names."""
    return sorted(_MODELS)


def get(name: str, **kwargs: Any) -> nn.Module:
    """Builds the model registered as ``name`` with ``kwargs``.

    Raises:
      ConfigError: unknown name or arguments the model does not take.
    """
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r} (config.model.name); valid models: {', '.join(names())}")
    try:
        return _MODELS[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for model {name!r} (config.model): {e}") from None
