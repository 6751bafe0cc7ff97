"""Training-step speed: mlcv's ResNet-18 (JAX) against an equivalent PyTorch model, in one run.

Run (PyTorch is a peer here, not a dependency of mlcv: install it into the venv first):
  .venv/bin/pip install torch==2.13.0
  .venv/bin/python benchmarks/train_step.py [--steps 5] [--batch 128]

Measures a full training step (forward, backward, SGD-momentum update) of ResNet-18 with the CIFAR stem
(3x3 conv, no max-pool) at 32x32, batch 128, float32, for:
  - mlcv with XLA's default CPU convolution path (YNNPACK),
  - mlcv with XLA's Eigen convolutions (--xla_cpu_experimental_ynn_fusion_type=-individual_convolution),
  - PyTorch 2.13 (CPU, channels_last), the same architecture written out below.
Each JAX variant runs in its own process (XLA flags are read at start-up); every row is measured in this
one invocation, one after the other, so the ratios to PyTorch hold on a shared, noisy machine. FLOPs per
step come from XLA's cost analysis of mlcv's compiled step and are used for every row.
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
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def _jax_worker(steps: int, batch: int, size: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax
    import numpy as np

    from experiments import digits_cnn
    from mlcv import models, optim
    from mlcv.tasks.classification import ClassificationTask

    config = digits_cnn.get_config()
    model = models.get("resnet18", num_classes=10, stem="cifar")
    task = ClassificationTask(config, model, 10)
    tx = optim.make(ml_sgd(), total_steps=1000)
    rng = np.random.default_rng(0)
    data = {
        "image": rng.standard_normal((batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, 10, batch).astype(np.int32),
    }
    state = task.init(jax.random.PRNGKey(0), data, tx)
    t0 = time.perf_counter()
    step = jax.jit(task.train_step, donate_argnums=0).lower(state, data).compile()
    compile_s = time.perf_counter() - t0
    cost = step.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))
    for _ in range(2):  # warm-up
        state, m = step(state, data)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, data)
    jax.block_until_ready(m)
    return {"step_s": (time.perf_counter() - t0) / steps, "compile_s": compile_s, "flops": flops}


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


def _run_worker(kind: str, xla_flags: str, args) -> dict:
    env = dict(os.environ, XLA_FLAGS=xla_flags)
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
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--worker", choices=("jax", "torch"))
    args = parser.parse_args()
    if args.worker:
        fn = _jax_worker if args.worker == "jax" else _torch_worker
        print(json.dumps(fn(args.steps, args.batch, args.size)))
        return
    t0 = time.time()
    rows = [
        ("mlcv JAX, XLA default (YNNPACK convs)", _run_worker("jax", "", args)),
        ("mlcv JAX, XLA Eigen convs (" + YNN_OFF.split("=")[0][2:] + ")", _run_worker("jax", YNN_OFF, args)),
        ("PyTorch 2.13, channels_last", _run_worker("torch", "", args)),
    ]
    flops = rows[0][1]["flops"]
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
    print()
    print(f"benchmark wall time: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
