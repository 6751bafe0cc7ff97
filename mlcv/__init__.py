"""mlcv: machine learning for computer vision in JAX.

``mlcv.run(config, workdir)`` runs one experiment; ``launch.py`` is its
command line.
"""

from __future__ import annotations

from typing import Any


def run(config, workdir) -> dict[str, Any]:
    """Runs the experiment ``config`` in ``workdir`` (see :func:`mlcv.train.run`)."""
    # Imported on call so that ``import mlcv`` stays cheap for config files.
    from mlcv import train

    return train.run(config, workdir)
