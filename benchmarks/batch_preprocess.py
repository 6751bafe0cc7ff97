"""Records/s of batch-level preprocessing against per-record ops, tf.data and PyTorch's DataLoader (issue 16).

Run:
  .venv/bin/python benchmarks/batch_preprocess.py [--records 20000] [--repeats 3]

The training augmentation ``flip_lr|random_crop(32, pad=4)|cutout(8)|normalize`` on ``--records`` generated
CIFAR-sized uint8 arrays (32x32x3), and its scaled version ``flip_lr|random_crop(8, pad=1)|cutout(2)|normalize``
on the digits train split (1,257 records of 8x8x1, read once into memory), in batches of 128 from a shuffled,
endless stream. Rows:

- mlcv per-record ops in a Python loop, and through grain's DataLoader as ``pipeline.train_loader`` builds it;
- mlcv's in-memory training loader (``config.data.pipeline="batch"``: grain's order, one gather, the batch ops) and
  its on-device augmentation (``"device"``: :mod:`mlcv.data.device_ops` in one jitted call, on the CPU here,
  each batch waited for);
- mlcv batch ops (:mod:`mlcv.data.batch_ops`), each record drawing from the Philox generator grain's sampler
  gives it (``key=seed + index``): reset in place by ``batch_ops.RecordGenerators``, and built anew for every
  record as grain builds them (``Generator(Philox(key=...))``, about 9 us each). The per-record loop uses
  ``RecordGenerators`` too, so the two differ only in the ops;
- tf.data: ``tf.image`` ops mapped per record, and the same augmentation written for whole batches (batch, then
  map), both with ``num_parallel_calls=AUTOTUNE`` and prefetching;
- PyTorch's DataLoader over a TensorDataset with the augmentation written as batch tensor ops in ``collate_fn``
  (no torchvision), with 0 and 2 worker processes.

Every pipeline yields a channels-last float32 image batch and the labels. Each row: a warm-up of a few batches,
then the best of ``--repeats`` windows of ``--records`` records, all in one process, so the ratios hold on a
noisy shared machine. PyTorch is a test-only peer (``.venv/bin/pip install torch==2.13.0``); tensorflow-cpu is a
dependency of TFDS.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv import data  # noqa: E402
from mlcv.data import batch_ops, in_memory, pipeline  # noqa: E402
from mlcv.data import ops as ops_lib  # noqa: E402

BATCH = 128
SEED = 0


@dataclass
class Task:
    """One dataset and its augmentation, as an op string and as the numbers the peers' versions need."""

    name: str
    images: np.ndarray  # [N, H, W, C] uint8
    labels: np.ndarray  # [N]
    size: int
    pad: int
    cutout: int
    defaults: dict[str, dict[str, Any]]

    @property
    def pp(self) -> str:
        return f"flip_lr|random_crop({self.size}, pad={self.pad})|cutout({self.cutout})|normalize"

    @property
    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        norm = self.defaults["normalize"]
        return np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)


class ArraySource:
    """An in-memory grain data source of ``{"image", "label"}`` records, so grain reads what the others read."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"image": self.images[i], "label": self.labels[i]}


def _index_batches(n: int) -> Iterator[tuple[int, np.ndarray]]:
    """Endless ``(global position of the batch's first record, record indices)``, reshuffled every epoch."""
    rng = np.random.default_rng(SEED)
    order = np.zeros(0, np.int64)
    for start in itertools.count(0, BATCH):
        while len(order) < BATCH:
            order = np.concatenate([order, rng.permutation(n)])
        idx, order = order[:BATCH], order[BATCH:]
        yield start, idx


def _fresh_generators(start: int) -> list[np.random.Generator]:
    # As grain's IndexSampler makes each record's generator.
    return [np.random.Generator(np.random.Philox(key=SEED + start + k)) for k in range(BATCH)]


def mlcv_per_record(task: Task) -> Iterator[dict[str, np.ndarray]]:
    """Batches of the per-record op string applied record by record in a Python loop, then stacked."""
    op = ops_lib.parse(task.pp, task.defaults)
    generators = batch_ops.RecordGenerators()
    for start, idx in _index_batches(len(task.images)):
        rngs = generators(range(SEED + start, SEED + start + BATCH))
        examples = [
            op({"image": task.images[j], "label": task.labels[j]}, rng) for j, rng in zip(idx, rngs, strict=True)
        ]
        yield {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def mlcv_grain(task: Task) -> Iterator[dict[str, np.ndarray]]:
    """Batches of mlcv's training loader: grain, per-record ops, reads in the calling thread."""
    loader = pipeline.train_loader(
        ArraySource(task.images, task.labels),
        batch_size=BATCH,
        pp=task.pp,
        op_defaults=task.defaults,
        keys=("image", "label"),
        seed=SEED,
    )
    return iter(loader)


def mlcv_batch(task: Task, fresh_generators: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Batches gathered from the arrays, then the batch version of the op string."""
    op = batch_ops.parse(task.pp, task.defaults)
    generators = batch_ops.RecordGenerators()
    for start, idx in _index_batches(len(task.images)):
        batch = {"image": task.images[idx], "label": task.labels[idx]}
        if fresh_generators:
            rngs = _fresh_generators(start)
        else:
            rngs = generators(range(SEED + start, SEED + start + BATCH))
        yield op(batch, rngs)


def mlcv_in_memory(task: Task) -> Iterator[dict[str, np.ndarray]]:
    """The training loader of ``config.data.pipeline="batch"``: grain's order, a gather, the batch ops."""
    arrays = {"image": task.images, "label": task.labels}
    return in_memory.BatchStream(arrays, batch_size=BATCH, seed=SEED, op=batch_ops.parse(task.pp, task.defaults))


def mlcv_device(task: Task) -> Iterator[Any]:
    """``config.data.pipeline="device"``: the split on the device, each batch gathered and augmented by one jitted
    call (here on the CPU, so it shares the two cores with nothing but itself); each batch waited for."""
    import jax

    from mlcv.data import device_ops

    split = jax.device_put({"image": task.images, "label": task.labels.astype(np.int32)})
    op = device_ops.parse(task.pp, task.defaults)
    make = jax.jit(lambda split, idx, key: op({k: v[idx] for k, v in split.items()}, key))
    key = jax.random.key(SEED)
    for step, (_start, idx) in enumerate(_index_batches(len(task.images))):
        yield jax.block_until_ready(make(split, idx.astype(np.int32), jax.random.fold_in(key, step)))


def tf_pipeline(task: Task, vectorised: bool) -> Iterator[Any]:
    """tf.data with the augmentation mapped per record before batching, or (``vectorised``) on whole batches."""
    import tensorflow as tf

    n, height, width, channels = task.images.shape
    h = w = task.size
    p, half, side = task.pad, task.cutout // 2, task.cutout
    mean, std = (tf.constant(a) for a in task.mean_std)

    def cutout_mask(cy: Any, cx: Any) -> Any:
        # [..., h, w] True inside the square centred at (cy, cx), clipped by the comparisons.
        rows, cols = tf.range(h), tf.range(w)
        y0, x0 = (cy - half)[..., None], (cx - half)[..., None]
        in_rows = (rows >= y0) & (rows < y0 + side)
        in_cols = (cols >= x0) & (cols < x0 + side)
        return in_rows[..., :, None] & in_cols[..., None, :]

    def one(x: Any, y: Any) -> tuple[Any, Any]:
        x = tf.image.random_flip_left_right(x)
        x = tf.image.random_crop(tf.pad(x, [[p, p], [p, p], [0, 0]]), [h, w, channels])
        cut = tf.random.uniform([]) < 0.5
        cy = tf.random.uniform([], 0, h, tf.int32)
        cx = tf.random.uniform([], 0, w, tf.int32)
        x = tf.where((cutout_mask(cy, cx) & cut)[..., None], tf.zeros_like(x), x)
        return (tf.cast(x, tf.float32) - mean) / std, y

    def many(x: Any, y: Any) -> tuple[Any, Any]:
        flip = tf.random.uniform([BATCH]) < 0.5
        x = tf.where(flip[:, None, None, None], tf.reverse(x, [2]), x)
        x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        ys = tf.random.uniform([BATCH], 0, height + 2 * p - h + 1, tf.int32)
        xs = tf.random.uniform([BATCH], 0, width + 2 * p - w + 1, tf.int32)
        # Two gathers with batch_dims=1 crop every record at its own place: rows, then columns.
        x = tf.gather(x, ys[:, None] + tf.range(h), axis=1, batch_dims=1)
        x = tf.gather(x, xs[:, None] + tf.range(w), axis=2, batch_dims=1)
        cut = tf.random.uniform([BATCH]) < 0.5
        cy = tf.random.uniform([BATCH], 0, h, tf.int32)
        cx = tf.random.uniform([BATCH], 0, w, tf.int32)
        x = tf.where((cutout_mask(cy, cx) & cut[:, None, None])[..., None], tf.zeros_like(x), x)
        return (tf.cast(x, tf.float32) - mean) / std, y

    ds = tf.data.Dataset.from_tensor_slices((task.images, task.labels)).shuffle(n, seed=SEED).repeat()
    if vectorised:
        ds = ds.batch(BATCH, drop_remainder=True).map(many, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


class TorchAugment:
    """The augmentation as a ``collate_fn`` of batch tensor ops; a class so worker processes can unpickle it."""

    def __init__(self, task: Task):
        self.size, self.pad, self.side = task.size, task.pad, task.cutout
        self.mean, self.std = task.mean_std

    def __call__(self, records: list[tuple[Any, Any]]) -> tuple[Any, Any]:
        import torch
        import torch.nn.functional as F

        x = torch.stack([r[0] for r in records])
        y = torch.stack([r[1] for r in records])
        b, size, p, half = len(x), self.size, self.pad, self.side // 2
        x = torch.where((torch.rand(b) < 0.5)[:, None, None, None], x.flip(2), x)
        x = F.pad(x, (0, 0, p, p, p, p))  # channels-last: (C, W, H) pairs from the last dimension
        ys = torch.randint(0, x.shape[1] - size + 1, (b,))
        xs = torch.randint(0, x.shape[2] - size + 1, (b,))
        # unfold is torch's sliding-window view; one index gathers every record's window.
        windows = x.unfold(1, size, 1).unfold(2, size, 1)  # [B, H', W', C, size, size]
        x = windows[torch.arange(b), ys, xs].permute(0, 2, 3, 1)
        cut = torch.rand(b) < 0.5
        y0 = torch.randint(0, size, (b,)) - half
        x0 = torch.randint(0, size, (b,)) - half
        rows = torch.arange(size)
        in_rows = (rows >= y0[:, None]) & (rows < (y0 + self.side)[:, None])
        in_cols = (rows >= x0[:, None]) & (rows < (x0 + self.side)[:, None])
        mask = cut[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]
        x = x.masked_fill(mask[..., None], 0)
        return (x.float() - torch.from_numpy(self.mean)) / torch.from_numpy(self.std), y


def torch_pipeline(task: Task, workers: int) -> Iterator[Any]:
    """PyTorch's DataLoader over a TensorDataset, :class:`TorchAugment` as its ``collate_fn``, epoch after epoch."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(SEED)
    dataset = TensorDataset(torch.from_numpy(task.images), torch.from_numpy(task.labels))
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        collate_fn=TorchAugment(task),
        num_workers=workers,
        persistent_workers=workers > 0,
        # Not fork: this process runs JAX's and tf.data's threads, which a forked child may deadlock on.
        multiprocessing_context="spawn" if workers else None,
    )
    return itertools.chain.from_iterable(itertools.repeat(loader))


def _rate(make_iter: Callable[[], Iterator[Any]], batches: int, repeats: int, warmup: int = 3) -> float:
    """Best records/s over ``repeats`` windows of ``batches`` batches, after ``warmup`` batches (start-up, threads,
    worker processes, tf.data's shuffle buffer)."""
    it = make_iter()
    for _ in range(warmup):
        next(it)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        best = max(best, batches * BATCH / (time.perf_counter() - t))
    return best


def _check_same(task: Task) -> None:
    """The batch rows compute what the per-record rows do: the first batch of each, bit for bit."""
    want, got = next(mlcv_per_record(task)), next(mlcv_batch(task))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def _tasks(records: int) -> list[Task]:
    """The generated CIFAR-sized arrays and the digits train split, with their datasets' normalize defaults."""
    rng = np.random.default_rng(SEED)
    cifar = Task(
        "CIFAR-sized 32x32x3 (generated)",
        rng.integers(0, 256, (records, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, records),
        size=32,
        pad=4,
        cutout=8,
        defaults=data.get("cifar10").op_defaults,
    )
    arrays = data.load_arrays("digits", "train")
    digits = Task(
        "digits 8x8x1",
        arrays["image"],
        arrays["label"],
        size=8,
        pad=1,
        cutout=2,
        defaults=data.get("digits").op_defaults,
    )
    return [cifar, digits]


ROWS: list[tuple[str, Callable[[Task], Iterator[Any]]]] = [
    ("mlcv per-record ops, Python loop", mlcv_per_record),
    ("mlcv per-record ops, grain DataLoader (`pipeline.train_loader`)", mlcv_grain),
    ("**mlcv batch ops** (`batch_ops`)", mlcv_batch),
    ("mlcv batch ops, each generator built anew as grain builds it", lambda t: mlcv_batch(t, fresh_generators=True)),
    ('mlcv in-memory loader (`pipeline="batch"`: grain\'s order, gather, batch ops)', mlcv_in_memory),
    ('mlcv on-device augmentation (`pipeline="device"`, jitted; the CPU here)', mlcv_device),
    ("tf.data, `tf.image` ops mapped per record", lambda t: tf_pipeline(t, vectorised=False)),
    ("tf.data, batch-vectorised map", lambda t: tf_pipeline(t, vectorised=True)),
    ("PyTorch DataLoader, tensor-op collate, 0 workers", lambda t: torch_pipeline(t, 0)),
    ("PyTorch DataLoader, tensor-op collate, 2 workers", lambda t: torch_pipeline(t, 2)),
]
BASE = 2  # the row the ratios divide by: mlcv batch ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="generated CIFAR records and records a window")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    batches = args.records // BATCH
    results: dict[str, list[float]] = {}
    tasks = _tasks(args.records)
    for task in tasks:
        _check_same(task)
        results[task.name] = []
        for name, make in ROWS:
            t = time.perf_counter()
            rate = _rate(lambda make=make, task=task: make(task), batches, args.repeats)
            results[task.name].append(rate)
            print(f"{task.name}: {name}: {rate:,.0f} records/s ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
    head = " | ".join(f"{t.name}: records/s | vs batch ops" for t in tasks)
    print(f"\n| pipeline ({batches} batches of {BATCH}, best of {args.repeats}) | {head} |")
    print("|---" + "|---:|---:" * len(tasks) + "|")
    for i, (name, _) in enumerate(ROWS):
        cells = " | ".join(
            f"{results[t.name][i]:,.0f} | {results[t.name][i] / results[t.name][BASE]:.2f}x" for t in tasks
        )
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
