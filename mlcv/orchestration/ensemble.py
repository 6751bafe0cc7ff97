"""Ensembles of finished runs from the command line.

An ensemble combines its members' predictions through their task
(:meth:`mlcv.tasks.base.Task.combine`) and is evaluated with the same
evaluators as a single run (:func:`mlcv.training.runs.evaluate_runs`).
Members are workdirs, each at the step its run chose on validation.

Command line::

  python -m mlcv.orchestration.ensemble runs/seed0 runs/seed1 runs/seed2 [--split test]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mlcv.config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluates the ensemble of the given workdirs and prints the result as JSON."""
    parser = argparse.ArgumentParser(description="Evaluate an ensemble of finished runs.")
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    args = parser.parse_args(argv)
    from mlcv.training import runs  # JAX loads only once the arguments are good

    try:
        result = runs.evaluate_runs([runs.load_run(w) for w in args.workdirs], args.split)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
