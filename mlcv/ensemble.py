"""Finished runs as predictors: loading a workdir, ensembles of runs and of snapshots.

An ensemble averages the members' class probabilities. Members are
``(workdir, step)`` pairs: independently seeded runs use each run's step
chosen on validation, a snapshot ensemble uses several steps of one run.

Command line::

  python -m mlcv.ensemble runs/seed0 runs/seed1 runs/seed2 [--split test]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mlcv import checkpoint, data, models
from mlcv.config import ConfigError
from mlcv.data import pipeline


@dataclasses.dataclass
class Run:
    """A trained classifier read back from its workdir."""

    workdir: Path
    step: int
    config: ml_collections.ConfigDict
    model: Any
    variables: dict[str, Any]

    def __post_init__(self):
        model = self.model
        self._apply = jax.jit(lambda v, x: model.apply(v, x, train=False))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode logits of a batch of preprocessed images."""
        return np.asarray(self._apply(self.variables, images))


def load_run(workdir: str | Path, step: int | None = None) -> Run:
    """Reads a run: its config, its model, and the variables of ``step``.

    ``step`` defaults to the step chosen on validation (``summary.json``'s
    ``best_step``), else the newest checkpoint.
    """
    workdir = Path(workdir)
    cfg_path = workdir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{workdir} is not a run directory: no config.json")
    config = ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
    ckpt_dir = workdir / "checkpoints"
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.is_dir() else []
    if step is None:
        summary = workdir / "summary.json"
        step = json.loads(summary.read_text())["best_step"] if summary.is_file() else (steps[-1] if steps else None)
    if step is None or step not in steps:
        raise ConfigError(f"{workdir} has no checkpoint of step {step} (it has {steps})")
    state = checkpoint.read_state(ckpt_dir / str(step))
    spec = data.get(config.data.name)
    src = data.source(spec, config.data.train_split or spec.splits["train"], data_dir=config.data.get("data_dir"))
    model = models.from_config(config.model, data.num_classes(src))
    variables = {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
    return Run(workdir=workdir, step=int(step), config=config, model=model, variables=variables)


def predict(runs: Sequence[Run], split: str = "test", batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``[members, examples, classes]`` and labels of one split.

    Every member reads the split through the first member's evaluation
    preprocessing; members must share the dataset.
    """
    first = runs[0].config
    for r in runs[1:]:
        if r.config.data.name != first.data.name:
            raise ConfigError(f"ensemble members use different datasets: {first.data.name}, {r.config.data.name}")
    spec = data.get(first.data.name)
    src = data.source(spec, first.data.get(f"{split}_split") or spec.splits[split], data_dir=first.data.get("data_dir"))
    probs, labels = [[] for _ in runs], []
    for batch in pipeline.eval_batches(
        src, batch_size=batch_size, pp=first.data.pp_eval, op_defaults=spec.op_defaults, keys=("image", "label")
    ):
        n = int(batch["mask"].sum())
        labels.append(batch["label"][:n])
        for i, r in enumerate(runs):
            probs[i].append(np.asarray(jax.nn.softmax(r.logits(batch["image"])[:n], axis=-1)))
    return np.stack([np.concatenate(p) for p in probs]), np.concatenate(labels)


def evaluate(runs: Sequence[Run], split: str = "test") -> dict[str, Any]:
    """Accuracy of each member and of the averaged probabilities on ``split``."""
    probs, labels = predict(runs, split)

    def acc(p: np.ndarray) -> float:
        return float(np.mean(p.argmax(-1) == labels))

    return {
        "members": [
            {"workdir": str(r.workdir), "step": r.step, "accuracy": acc(p)} for r, p in zip(runs, probs, strict=True)
        ],
        "ensemble_accuracy": acc(probs.mean(0)),
        "mean_member_accuracy": float(np.mean([acc(p) for p in probs])),
        "split": split,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluates the ensemble of the given workdirs and prints the result as JSON."""
    parser = argparse.ArgumentParser(description="Evaluate an ensemble of finished runs.")
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    args = parser.parse_args(argv)
    try:
        result = evaluate([load_run(w) for w in args.workdirs], args.split)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
