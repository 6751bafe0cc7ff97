"""The one entry point: ``python launch.py --config experiments/X.py[:arg] [--config.a.b=v] [--workdir DIR]``.

With no flags it runs the default experiment (digits CNN) into
``runs/digits_cnn``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

# Absolute, so that a bare `python path/to/launch.py` works from any directory.
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments", "digits_cnn.py")

_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<experiment>.")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlcv import cli

    return cli.main(_CONFIG.value, _WORKDIR.value, config_path=flags.FLAGS["config"].config_filename)


if __name__ == "__main__":
    sys.exit(app.run(main))
