"""What ``launch.py`` does once its flags are parsed."""

from __future__ import annotations

import sys
from pathlib import Path

import ml_collections
from absl import logging

from mlcv.config import ConfigError


def default_workdir(config_path: str) -> str:
    """``runs/<experiment>`` for ``experiments/<experiment>.py[:arg]``."""
    return str(Path("runs") / Path(config_path.split(":")[0]).stem)


def main(config: ml_collections.ConfigDict, workdir: str | None, *, config_path: str) -> int:
    """Runs one experiment; returns the process exit status.

    Expected failures (a bad config, a missing dataset, a diverged run) end
    with one ``error:`` line on stderr instead of a traceback.
    """
    from mlcv import train

    # Orbax and TFDS log every save and read at INFO; the loop prints its own lines.
    logging.set_verbosity(logging.WARNING)
    workdir = workdir or default_workdir(config_path)
    try:
        summary = train.run(config, workdir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except train.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    test = summary["test"]
    print(
        f"{workdir}: test accuracy {100 * test['accuracy']:.2f} % "
        f"(best step {summary['best_step']}), wall time {summary['wall_time_s']:.1f} s"
    )
    return 0
