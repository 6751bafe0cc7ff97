"""Training-step speed: mlcv's ResNet-18 (JAX) against an equivalent PyTorch model, in one run.

Run (PyTorch is a peer here, not a dependency of mlcv: install it into the venv first):
  .venv/bin/pip install torch==2.13.0
  .venv/bin/python benchmarks/train_step.py [--steps 5] [--batch 128] [--profile]

Measures a full training step (forward, backward, SGD-momentum update) of ResNet-18 with the CIFAR stem
(3x3 conv, no max-pool) at 32x32, batch 128, float32, for:
  - mlcv as its training loop runs it by default (mlcv.training.steps.compile_train_step): XLA's Eigen
    convolutions (mlcv sets --xla_cpu_experimental_ynn_fusion_type=-individual_convolution on import)
    and the forward and backward passes compiled as two executables (config.split_train_step='auto'),
  - the same as one executable,
  - XLA's own default CPU convolution path, YNNPACK (MLCV_CPU_CONVOLUTIONS=xla), one executable,
  - that with XLA's oneDNN rewrites on top (--xla_cpu_use_onednn=true),
  - PyTorch 2.13 (CPU, channels_last), the same architecture written out below.
Each JAX variant runs in its own process (XLA flags are read at start-up); every row is measured in this
one invocation, one after the other, so the ratios to PyTorch hold on a shared, noisy machine. FLOPs per
step come from XLA's cost analysis of mlcv's one-executable step and are used for every row. ``--profile``
adds the time each kind of XLA operation takes in one step (from a JAX profiler trace of the YNNPACK
path, whose convolutions a trace can attribute), which is where the layout transposes show up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _jax_worker(steps: int, batch: int, size: int, split: bool, profile: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax
    import ml_collections
    import numpy as np

    from experiments import digits_cnn
    from mlcv import data as data_lib
    from mlcv import optim
    from mlcv.tasks.classification import ClassificationTask
    from mlcv.training import sharding
    from mlcv.training import steps as step_lib

    config = digits_cnn.get_config()
    config.model = ml_collections.ConfigDict({"name": "resnet18", "stem": "cifar"})
    meta = data_lib.DatasetMeta(features={}, num_classes=10, class_names=(), image_shape=(size, size, 3))
    builder = step_lib.StepBuilder(config, ClassificationTask(config, meta))
    tx = optim.make(ml_sgd(), total_steps=1000)
    rng = np.random.default_rng(0)
    mesh = sharding.data_mesh()
    data = {
        "image": rng.standard_normal((batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, 10, batch).astype(np.int32),
    }
    state = sharding.put_replicated(builder.init(jax.random.PRNGKey(0), data, tx), mesh)
    data = sharding.put_batch(data, mesh)
    t0 = time.perf_counter()
    # The training loop's own compiled step (mlcv.training.steps.compile_train_step).
    step = step_lib.compile_train_step(builder, state, data, mesh, split=split)
    compile_s = time.perf_counter() - t0
    flops = float("nan")
    if not split:
        cost = step.cost_analysis()
        flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))
    for _ in range(2):  # warm-up
        state, m = step(state, data)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, data)
    jax.block_until_ready(m)
    out = {"step_s": (time.perf_counter() - t0) / steps, "compile_s": compile_s, "flops": flops}
    if profile:
        out["profile"] = _op_shares(lambda: jax.block_until_ready(step(state, data)[1]))
    return out


def _op_shares(run_step) -> dict[str, float]:
    """Milliseconds per step by kind of XLA operation (fusion names without their numeric suffix)."""
    import collections
    import gzip
    import re
    import tempfile

    import jax

    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            run_step()
        trace = json.load(gzip.open(next(Path(d).rglob("*perfetto_trace.json.gz"))))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals: collections.Counter = collections.Counter()
    for e in events:
        name = e.get("name", "")
        # Thunk-executor and Python frames enclose the operations; count the operations only.
        if e.get("ph") == "X" and not name.startswith(("$", "end:")) and "::" not in name and "(" not in name:
            totals[re.sub(r"\.\d+$", "", name)] += e.get("dur", 0) / 1e3
    return dict(totals.most_common(8))


_XLA = {"MLCV_CPU_CONVOLUTIONS": "xla"}
_ONEDNN = "--xla_cpu_use_onednn=true"


def ml_sgd():
    import ml_collections

    return ml_collections.ConfigDict({"name": "momentum", "lr": 0.1, "momentum": 0.9, "schedule": "constant"})


def _torch_worker(steps: int, batch: int, size: int) -> dict:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return torch.relu(y + (x if self.short is None else self.short(x)))

    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for i, w in enumerate((64, 128, 256, 512)):
        layers += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    model = nn.Sequential(*layers).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"step_s": (time.perf_counter() - t0) / steps, "compile_s": 0.0, "threads": torch.get_num_threads()}


def _run_worker(kind: str, env_changes: dict[str, str], args, split: bool = False, profile: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MLCV_CPU_CONVOLUTIONS")}
    env.update(env_changes)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--size",
        str(args.size),
        *(["--profile"] if profile else []),
        *(["--split"] if split else []),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="time each kind of XLA op in mlcv's step")
    parser.add_argument("--split", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("jax", "torch"))
    args = parser.parse_args()
    if args.worker == "jax":
        print(json.dumps(_jax_worker(args.steps, args.batch, args.size, args.split, args.profile)))
        return
    if args.worker == "torch":
        print(json.dumps(_torch_worker(args.steps, args.batch, args.size)))
        return
    t0 = time.time()
    rows = [
        ("mlcv default: Eigen convolutions, forward and backward jitted apart", _run_worker("jax", {}, args, True)),
        ("Eigen convolutions, one jitted step (`split_train_step='never'`)", _run_worker("jax", {}, args)),
        ("XLA's default YNNPACK convolutions (`MLCV_CPU_CONVOLUTIONS=xla`), one step", _run_worker("jax", _XLA, args)),
        ("the same + `--xla_cpu_use_onednn=true`", _run_worker("jax", {**_XLA, "XLA_FLAGS": _ONEDNN}, args)),
        ("PyTorch 2.13, channels_last", _run_worker("torch", {}, args)),
    ]
    flops = rows[1][1]["flops"]
    torch_s = rows[-1][1]["step_s"]
    print(
        f"ResNet-18 (CIFAR stem), {args.size}x{args.size}, batch {args.batch}, float32, full train step; "
        f"{flops / 1e9:.0f} GFLOP a step (XLA cost analysis); mean of {args.steps} steps after 2 warm-up steps"
    )
    print()
    print("| implementation | s / step | images / s | GFLOP/s | compile (s) | step time vs PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        s = r["step_s"]
        print(
            f"| {name} | {s:.2f} | {args.batch / s:.0f} | {flops / s / 1e9:.0f} | {r['compile_s']:.1f} | "
            f"{s / torch_s:.2f}x |"
        )
    if args.profile:
        # A run of its own, as XLA's per-operation trace annotations slow the step a little. On the YNNPACK
        # path: Eigen's convolutions run asynchronously on its thread pool, so a trace cannot attribute their
        # time, while YNNPACK's run inside their thunks. The transposes and other fusions are the same HLO.
        env = {**_XLA, "XLA_FLAGS": "--xla_cpu_enable_xprof_traceme=true"}
        traced = _run_worker("jax", env, args, profile=True)
        shares = traced["profile"]
        print()
        print(
            f"Where a step goes on the YNNPACK path (one traced step; {traced['step_s'] * 1e3:.0f} ms a step in that "
            f"run; `ynn_fusion` holds the convolutions):"
        )
        print()
        print("| XLA operation kind | ms |")
        print("|---|---:|")
        for name, ms in shares.items():
            print(f"| {name} | {ms:.0f} |")
    print()
    print(f"benchmark wall time: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
