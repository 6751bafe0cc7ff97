"""Why XLA's layout transposes cost a ResNet step on CPU: a transpose fused with elementwise work.

Run:
  .venv/bin/python benchmarks/transpose_fusion.py

A ResNet's backward pass needs each convolution's input in a batch-minor layout for the weight
gradient, so XLA transposes every saved activation; its fusion pass folds the batch-norm and ReLU that
produced the activation into that transpose. This measures, on one 32x32x32x64 float32 activation
(8 MiB), the bare transpose, the elementwise work alone, the two fused into one XLA computation (what the
training step runs), the two as separate computations, and NumPy's transposing copy as a peer. Times
are the best of 20 calls, all in this one run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mlcv  # noqa: E402, F401 - sets mlcv's XLA CPU flags before JAX starts its backend

PERM = (3, 1, 2, 0)  # NHWC -> CHWN, the layout of a weight-gradient convolution's input


def _best_ms(fn, reps: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 32, 32, 64), dtype=np.float32))
    skip = jnp.asarray(rng.standard_normal((32, 32, 32, 64), dtype=np.float32))
    scale, shift = jnp.full((64,), 1.1), jnp.full((64,), 0.1)

    def bn_relu_add(x, skip):  # batch norm's affine part, a residual add and a ReLU
        return jnp.maximum(x * scale + shift + skip, 0)

    transpose = jax.jit(lambda x: jnp.transpose(x, PERM))
    elementwise = jax.jit(bn_relu_add)
    fused = jax.jit(lambda x, skip: jnp.transpose(bn_relu_add(x, skip), PERM))
    y = elementwise(x, skip)
    np.testing.assert_array_equal(np.asarray(fused(x, skip)), np.asarray(transpose(y)))
    xn = np.asarray(x)
    rows = [
        ("transpose alone", _best_ms(lambda: transpose(x).block_until_ready())),
        ("elementwise alone", _best_ms(lambda: elementwise(x, skip).block_until_ready())),
        ("elementwise + transpose, one fused computation", _best_ms(lambda: fused(x, skip).block_until_ready())),
        (
            "elementwise, then transpose, two computations",
            _best_ms(lambda: transpose(elementwise(x, skip)).block_until_ready()),
        ),
        ("NumPy transposing copy (peer)", _best_ms(lambda: np.ascontiguousarray(xn.transpose(PERM)))),
    ]
    print("32x32x32x64 float32 activation, NHWC -> CHWN; best of 20 calls")
    print()
    print("| computation | ms |")
    print("|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
