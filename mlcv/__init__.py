"""mlcv: machine learning for computer vision in JAX.

``mlcv.run(config, workdir)`` runs one experiment; ``launch.py`` is its
command line.
"""

from __future__ import annotations

import os
from typing import Any

# XLA's CPU backend hands convolutions to YNNPACK by default; its Eigen path trains a ResNet-18 1.2-1.3x
# faster on the 2-core x86 CPUs measured (benchmarks/README.md). The flag is read when the CPU backend
# starts, so it is set on import, before any computation.
EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def cpu_convolution_flags(environ: dict[str, str]) -> str:
    """The ``XLA_FLAGS`` value mlcv runs with, given the environment.

    ``MLCV_CPU_CONVOLUTIONS=eigen`` (the default) adds :data:`EIGEN_CONVOLUTIONS` unless ``XLA_FLAGS``
    already chooses a YNNPACK fusion type; ``MLCV_CPU_CONVOLUTIONS=xla`` keeps XLA's own default, which
    reproduces runs recorded before mlcv chose Eigen.
    """
    flags = environ.get("XLA_FLAGS", "")
    choice = environ.get("MLCV_CPU_CONVOLUTIONS", "eigen")
    if choice not in ("eigen", "xla"):
        raise ValueError(f"MLCV_CPU_CONVOLUTIONS must be 'eigen' or 'xla', got {choice!r}")
    if choice == "eigen" and "xla_cpu_experimental_ynn_fusion_type" not in flags:
        flags = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
    return flags


os.environ["XLA_FLAGS"] = cpu_convolution_flags(dict(os.environ))


def run(config, workdir) -> dict[str, Any]:
    """Runs the experiment ``config`` in ``workdir``; returns its ``summary.json`` contents.

    A fitted method (``config.task`` in :mod:`mlcv.classic`) goes to the fitted-method runner, any other
    task to the one training loop (:func:`mlcv.training.loop.run`).
    """
    # Imported on call so that ``import mlcv`` stays cheap for config files.
    from mlcv import classic

    if classic.is_fitted(config.task):
        from mlcv.classic import runner

        return runner.run(config, workdir)
    from mlcv.training import loop

    return loop.run(config, workdir)
