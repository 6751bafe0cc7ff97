"""Time to classify the digits test split with kNN: mlcv (JAX) against scikit-learn's brute force, same run.

Run:
  .venv/bin/python benchmarks/knn.py [--k 3] [--repeats 5]

Both classify the 540 queries of scikit-learn's digits after the first 1,257
(the test split's size) against those 1,257 training images, for p = 1, 2, 3.
Times are the median of ``--repeats`` calls after one warm-up call (mlcv's
first call compiles; that compile time is its own column). ``agree`` is the
share of identical predictions; the rest are queries where training points
of different labels tie at the k-th distance (see mlcv/classic/algorithms/knn.py).

On the quiet 2-core CPU: mlcv 15.6 / 4.8 / 39.9 ms for p = 1 / 2 / 3, scikit-learn
23.9 / 5.0 / 301.6 ms (0.65x / 0.95x / 0.13x its time), 4 s for the whole script.
With other jobs loading the machine scikit-learn's OpenMP threads suffer most: mlcv
then took 0.04x-0.22x its time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv.classic.algorithms import knn  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    train_x, train_y, test_x = x[:1257], y[:1257], x[1257:]
    print(f"kNN, k={args.k}: {len(test_x)} queries against {len(train_x)} training images, 64 features")
    print()
    print("| p | mlcv (ms) | mlcv compile (s) | scikit-learn brute (ms) | mlcv / sklearn time | agree |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in (1, 2, 3):
        t = time.perf_counter()
        ours = knn.predict(train_x, train_y, test_x, args.k, p, args.batch_size)
        first = time.perf_counter() - t
        mlcv_s = _median_time(
            lambda p=p: knn.predict(train_x, train_y, test_x, args.k, p, args.batch_size), args.repeats
        )
        ref = KNeighborsClassifier(n_neighbors=args.k, p=p, algorithm="brute").fit(train_x, train_y)
        theirs = ref.predict(test_x)
        sk_s = _median_time(lambda ref=ref: ref.predict(test_x), args.repeats)
        print(
            f"| {p} | {1e3 * mlcv_s:.1f} | {first - mlcv_s:.2f} | {1e3 * sk_s:.1f} | {mlcv_s / sk_s:.2f}x "
            f"| {np.mean(ours == theirs):.4f} |"
        )


if __name__ == "__main__":
    main()
