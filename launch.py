"""The one entry point: ``python launch.py --config experiments/X.py[:arg] [--config.a.b=v] [--workdir DIR]``.

With no flags it runs the default experiment (digits CNN) into
``runs/digits_cnn``. With ``--sweep`` it runs the sweep that the experiment
file's ``get_sweep`` declares, one workdir per trial under
``runs/<experiment>_sweep``, and writes a results table; ``--sweep_shard=i/n``
runs only every n-th trial from the i-th on, for job arrays. A bad flag,
config key, value, file, sweep or workdir ends the run with one ``error:`` line
and exit status 2 before anything is written; a run that fails later (a NaN, a
full disk) ends with one line and exit status 1.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

# Absolute, so that a bare `python path/to/launch.py` works from any directory.
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments", "digits_cnn.py")

try:
    from mlcv.orchestration import cli
except ValueError as e:  # a bad MLCV_CPU_CONVOLUTIONS, read on import
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

# ml_collections reads the overrides in sys.argv while defining the flag, so a
# mistyped key fails here, before absl parses anything.
cli.check_config_file(sys.argv)
try:
    _CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Experiment config file.", lock_config=True)
except Exception as e:  # noqa: BLE001 - one clear line instead of a traceback
    cli.fail(e, sys.argv)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<experiment>[_sweep].")
_SWEEP = flags.DEFINE_bool("sweep", False, "Run the sweep of the config file's get_sweep().")
_SWEEP_SHARD = flags.DEFINE_string("sweep_shard", None, "i/n: run every n-th trial from the i-th (0-based).")
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "summary", "layers", "enrol"],
    "train: run the experiment; summary (layers is the same): the model's per-layer table, printed and written to "
    "<workdir>/layers.md, from the input that config.summary declares or the dataset's declared features, nothing "
    "trained or read (config.summary.table=course: the course's columns); enrol: a finished metric-learning run in "
    "--workdir recognises a newly enrolled identity by kNN, without retraining.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for a multi-host run (default $JAX_COORDINATOR_ADDRESS)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of a multi-host run ($JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0-based ($JAX_PROCESS_ID).")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.init_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    return cli.main(
        _CONFIG.value,
        _WORKDIR.value,
        config_path=flags.FLAGS["config"].config_filename,
        sweep=_SWEEP.value,
        sweep_shard=_SWEEP_SHARD.value,
        mode=_MODE.value,
    )


def _parse_flags(argv: list[str]) -> list[str]:
    return cli.parse_flags(argv, lambda: _CONFIG.value)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=_parse_flags))
