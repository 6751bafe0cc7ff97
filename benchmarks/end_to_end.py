"""The default experiment end to end on each training input pipeline, beside a PyTorch loop (issue 16).

Run:
  .venv/bin/python benchmarks/end_to_end.py [--seeds 0 1 2 3 4] [--pipelines record batch device torch]

Each seed runs ``launch.py`` (experiments/digits_cnn.py, the default) once per ``config.data.pipeline``, each in
a fresh process and workdir, then the PyTorch reference loop of ``benchmarks/torch_reference.py`` (same model,
data, augmentation and recipe; a test-only peer), so that the rows of a seed run minutes apart at most on this
noisy shared machine. From each run's ``summary.json``: ``train_images_per_sec`` (steps x batch / training
time: the steps, data waits included, evaluations and saves excluded), ``train_time_s``, ``wall_time_s`` (set-up,
compilation, evaluations and plots included) and the test accuracy of the checkpoint chosen on validation.

Rows: "before" is what every run did before issue 16 (``pipeline="record"``: grain, record by record; and on
CPU the train step as two executables whatever its size, ``split_train_step="always"``); "record", "batch" and
"device" are the pipelines with today's step (``split_train_step="auto"``: one executable for this 0.45 GFLOP
step, ``mlcv.training.steps.SPLIT_MIN_FLOPS``); "batch" is what the default, "auto", resolves to. Prints a row
per run, then per row the median images/s, its ratio to "before", the median wall time and the test accuracy's
mean ± std over the seeds (sample std, as docs/results.md). "batch" and "record" train the same run as
"before" bit for bit on this experiment; "device" draws its crops with ``jax.random``, so its runs are others of
the same recipe.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = (
    "import json, sys; sys.path.insert(0, {bench!r}); import torch_reference; "
    "r = torch_reference.train({seed}); print('RESULT ' + json.dumps(r))"
)


#: Each mlcv row's overrides of the default experiment. "before": the loader and the step every run used before
#: issue 16 (grain record by record; on CPU the step as two executables whatever its size).
ROWS = {
    "before": ["--config.data.pipeline=record", "--config.split_train_step=always"],
    "record": ["--config.data.pipeline=record"],
    "batch": ["--config.data.pipeline=batch"],
    "device": ["--config.data.pipeline=device"],
}


def _mlcv(row: str, seed: int, workdir: Path) -> dict[str, float]:
    cmd = [sys.executable, str(ROOT / "launch.py"), *ROWS[row], f"--config.seed={seed}", f"--workdir={workdir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    s = json.loads((workdir / "summary.json").read_text())
    keys = ("train_images_per_sec", "train_time_s", "wall_time_s")
    return {**{k: s[k] for k in keys}, "test_accuracy": s["test"]["accuracy"]}


def _torch(seed: int) -> dict[str, float]:
    code = TORCH.format(bench=str(ROOT / "benchmarks"), seed=seed)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"the torch reference failed:\n{proc.stderr[-2000:]}")
    r = json.loads(lines[-1][len("RESULT ") :])
    return {k: r[k] for k in ("train_images_per_sec", "train_time_s", "wall_time_s", "test_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pipelines", nargs="+", default=[*ROWS, "torch"], choices=[*ROWS, "torch"])
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {p: [] for p in args.pipelines}
    print("| seed | pipeline | images/s | train s | wall s | test accuracy % |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for p in args.pipelines:
                r = _torch(seed) if p == "torch" else _mlcv(p, seed, Path(tmp) / f"{p}_{seed}")
                results[p].append(r)
                print(
                    f"| {seed} | {p} | {r['train_images_per_sec']:,.0f} | {r['train_time_s']:.2f} | "
                    f"{r['wall_time_s']:.1f} | {100 * r['test_accuracy']:.2f} |",
                    flush=True,
                )
    before = results.get("before")
    base = statistics.median(r["train_images_per_sec"] for r in before) if before else None
    print("\n| pipeline | median images/s | vs before | median wall s | test accuracy % (mean ± std) |")
    print("|---|---|---|---|---|")
    for p, rs in results.items():
        ips = statistics.median(r["train_images_per_sec"] for r in rs)
        accs = [100 * r["test_accuracy"] for r in rs]
        spread = f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else f"{accs[0]:.2f}"
        ratio = f"{ips / base:.2f}x" if base else "-"
        wall = statistics.median(r["wall_time_s"] for r in rs)
        print(f"| {p} | {ips:,.0f} | {ratio} | {wall:.1f} | {spread} |")


if __name__ == "__main__":
    main()
