"""Methods fitted in closed form rather than by gradient descent, by ``config.task`` name.

Each method is a :class:`~mlcv.classic.base.FittedMethod`; ``launch.py`` runs
it through :func:`mlcv.classic.runner.run`, which writes the same workdir
files as a gradient-trained run (``config.json``, ``metrics.jsonl``,
``plots/``, ``summary.json``).
"""

from __future__ import annotations

import importlib

from mlcv.config import ConfigError

# name -> "module:Class"; imported on use so that listing names stays cheap.
_METHODS = {
    "knn": "mlcv.classic.methods.knn:KNN",
    "bovw": "mlcv.classic.methods.bovw:BagOfWords",
    "viola_jones": "mlcv.classic.methods.viola_jones:ViolaJones",
    "depth_forest": "mlcv.classic.methods.depth_forest:DepthForest",
    "block_matching": "mlcv.classic.methods.block_matching:BlockMatching",
}


def names() -> list[str]:
    """The registered fitted-method task names."""
    return sorted(_METHODS)


def is_fitted(task: str) -> bool:
    """True if ``task`` names a fitted (closed-form) method."""
    return task in _METHODS


def get(name: str) -> type:
    """The :class:`FittedMethod` subclass registered as ``name``."""
    if name not in _METHODS:
        raise ConfigError(f"unknown fitted method {name!r} (config.task); valid: {', '.join(names())}")
    module, cls = _METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
