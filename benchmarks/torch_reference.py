"""A PyTorch reference loop for the default experiment (experiments/digits_cnn.py), a peer for end-to-end speed.

Run:
  .venv/bin/python benchmarks/torch_reference.py [--seeds 0 1 2] [--threads N] [--mlcv]

Trains the default experiment's model on the same data with the same augmentation and recipe, in PyTorch on the
CPU (no torchvision), and prints a markdown table with a row per seed: steps, the step best on validation,
training time (the training steps only, as mlcv's ``train_time_s``: evaluation excluded), training images/s
(steps x batch / training time, as ``train_images_per_sec``), wall time, validation and test accuracy of the
best step; then per loop the test accuracy's mean ± std over the seeds (sample std, as docs/results.md) and the
mean images/s. ``--mlcv`` adds, after each torch seed, a row of mlcv's own loop (``mlcv.run``, what
``launch.py`` runs, in a temporary workdir) on the same seed in the same process, so that the two compare on
a noisy shared machine. It also prints the threads torch computes with (``torch.get_num_threads()``: its
default is the number of cores; ``--threads`` sets them). One torch seed takes about 10 s on the 2-core machine
when it is quiet, an mlcv seed about 20 s (most of it outside the training steps). Another benchmark can import
:func:`train`. PyTorch is a test-only peer (``.venv/bin/pip install torch==2.13.0``).

Torch's default of one OpenMP thread a core collapses when other processes hold a core: every op of a step waits
at a barrier for the thread the scheduler took away, and a step this small is ~100 such ops. With the 2-core
machine loaded by other jobs (load average ~4), 2 threads trained at 700-850 images/s against 4,000-4,700 with
``--threads 1``, which was also the faster setting in the same minutes; quiet, 2 threads gave 5,100-6,400.
Read a torch row beside the machine's load, or run with ``--threads 1`` on a shared machine.

What is the same as ``python launch.py`` (every number read from the experiment's config and mlcv's
``RunSetup``, not restated here):

- data: the digits train / validation / test splits of ``RunSetup(config).sources`` (1,257 / 180 / 360
  records), every record read once into numpy arrays, and the normalize mean and std the dataset declares
  (``setup.spec.op_defaults``);
- augmentation: ``random_crop(8, pad=1)|normalize`` as mlcv's per-record ops define them (zero padding of the
  uint8 image, an offset drawn per record, uniform over the 3 x 3 places; then ``(x - mean) * (1 / std)`` in
  float32), written as batch tensor ops: one pad, one gather with per-record row and column indices; each
  run first checks it bit for bit against mlcv's ops on 64 records given the same offsets (outside the timings);
- sampling: an endless stream of per-epoch permutations cut into batches of 64 that run across epoch ends,
  as grain's ``IndexSampler(num_epochs=None)`` feeds ``Batch(64, drop_remainder=True)``;
- model: ``SmallCNN`` with the experiment's settings: stages of 32 and 64 channels, 2 convolutions each
  (3x3, SAME, no bias), batch norm after each (flax's momentum 0.9 is torch's 0.1, epsilon 1e-5 both,
  scale 1 and offset 0 at start), ReLU, 2x2 max pooling (SAME: on 8x8 and 4x4 no padding is needed), dense
  128 + ReLU, dropout 0.3 (kept units scaled by 1 / 0.7 in both), the 10-class head;
- initialisation: flax's defaults: every kernel lecun_normal (a normal truncated at ±2 standard deviations,
  scaled to variance 1 / fan_in, fan_in = 3 x 3 x input channels for a convolution), every bias zero;
- recipe: softmax cross-entropy averaged over the batch; Adam (b1 0.9, b2 0.999, eps 1e-8 outside the square
  root, bias-corrected: the same update in optax and torch), no weight decay; the learning rate of every step
  taken from mlcv's own schedule (``setup.lr_schedule``: cosine from 3e-3 to 0 over the run, no warm-up, step
  t updated with lr(t)); 40 epochs of 1,257 // 64 = 19 steps = 760 steps (``config.steps``: whole batches
  only, an epoch's remainder carried into the next);
- model selection: validation accuracy every 2 epochs (38 steps) and at the last step, in batches of 512 with
  the moving averages of batch norm; a new best must beat the old strictly (``min_delta`` 0), and the best
  step's test accuracy is reported.

Departures, none of which changes the recipe:

- random numbers: torch's generators, so a seed's initial weights, order, offsets and dropout masks differ
  from mlcv's for the same seed (compare the spread over seeds, not a seed);
- batch norm's moving variance: torch updates it with the unbiased batch variance (n / (n - 1), n = 4,096 and
  1,024 values a channel here), flax with the biased one;
- the dense layer reads the flattened features in torch's (C, H, W) order, flax's in (H, W, C): a fixed
  permutation of its randomly initialised inputs, the same model;
- the best step is kept as an in-memory copy of the weights; mlcv writes a checkpoint to disk at each
  evaluation (its ``wall_time_s`` pays for them, and for its plots and its compilation, ~1 s);
- timing: torch runs eagerly and synchronously, so a batch's augmentation runs between steps; mlcv's loop
  prepares the next batches while the dispatched JAX step computes. Both count the augmentation in the
  training time. Wall time here runs from reading the data through mlcv (which builds the run's JAX objects
  too, not counted apart) to the test evaluation of the best step; module imports are not in it, as they are
  not in mlcv's (``run`` starts its clock after them).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from experiments import digits_cnn  # noqa: E402
from mlcv.data import ops as ops_lib  # noqa: E402
from mlcv.training.setup import RunSetup  # noqa: E402

PAD = 1  # random_crop(8, pad=1)
SIZE = 8
# Flax's truncated normal is rescaled by the standard deviation of a unit normal truncated to [-2, 2].
TRUNCATED_STD = 0.87962566103423978


def _read(source: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Every record of a split once: images ``[N, C, H, W]`` uint8 and labels ``[N]`` int64."""
    records = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(r["image"]) for r in records])
    labels = np.asarray([int(r["label"]) for r in records], np.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _lecun_normal_(weight: torch.Tensor) -> None:
    """flax's ``lecun_normal``: a normal truncated at ±2 sd, rescaled to variance ``1 / fan_in``."""
    fan_in = weight[0].numel()  # conv [out, in, kh, kw]: in * kh * kw; linear [out, in]: in
    std = math.sqrt(1.0 / fan_in) / TRUNCATED_STD
    nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


class SmallCNN(nn.Module):
    """mlcv's ``SmallCNN`` with batch norm, in torch: conv-BN-ReLU blocks, 2x2 max pooling after each stage."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        features: tuple[int, ...],
        convs_per_stage: int,
        dense: int,
        dropout: float,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in features:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width, eps=1e-5, momentum=0.1),
                    nn.ReLU(),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        side = SIZE // 2 ** len(features)
        self.fc = nn.Linear(channels * side * side, dense) if dense else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dense or channels * side * side, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _lecun_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        if self.fc is not None:
            x = F.relu(self.fc(x))
        return self.head(self.dropout(x))


class Augment:
    """``random_crop(size, pad)|normalize`` on a uint8 batch ``[B, C, H, W]``: an offset per record, one gather."""

    def __init__(self, mean: Any, std: Any, channels: int, generator: torch.Generator):
        self.mean = torch.as_tensor(np.asarray(mean, np.float32)).reshape(-1, 1, 1).expand(channels, 1, 1)
        self.inv_std = (1.0 / torch.as_tensor(np.asarray(std, np.float32))).reshape(-1, 1, 1).expand(channels, 1, 1)
        self.generator = generator

    def __call__(self, x: torch.Tensor, ys: torch.Tensor | None = None, xs: torch.Tensor | None = None) -> torch.Tensor:
        """The augmented float32 batch; ``ys`` and ``xs`` ``[B, 1]``: the crops' offsets in the padded image
        (default: drawn from the generator)."""
        b, c, height, width = x.shape
        x = F.pad(x, (PAD, PAD, PAD, PAD))  # zeros, as mlcv's window() fills outside the image
        if ys is None or xs is None:
            ys = torch.randint(0, height + 2 * PAD - SIZE + 1, (b, 1), generator=self.generator)
            xs = torch.randint(0, width + 2 * PAD - SIZE + 1, (b, 1), generator=self.generator)
        rows = (ys + torch.arange(SIZE))[:, None, :, None]
        cols = (xs + torch.arange(SIZE))[:, None, None, :]
        x = x[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
        return (x.float() - self.mean) * self.inv_std


def check_augment(images: torch.Tensor, config: Any, defaults: dict[str, dict[str, Any]], n: int = 64) -> None:
    """:class:`Augment` computes what mlcv's op string does, bit for bit, on the first ``n`` records: record ``k``
    goes through ``ops.parse(pp_train)`` with ``default_rng(k)``, and its offsets, drawn from a fresh
    ``default_rng(k)`` in the op's order (rows, then columns), go to :class:`Augment`."""
    op = ops_lib.parse(config.data.pp_train, defaults)
    x = images[:n]
    span = x.shape[2] + 2 * PAD - SIZE + 1, x.shape[3] + 2 * PAD - SIZE + 1
    want, offsets = [], []
    for k in range(len(x)):
        want.append(op({"image": x[k].permute(1, 2, 0).numpy()}, np.random.default_rng(k))["image"])
        rng = np.random.default_rng(k)
        offsets.append([int(rng.integers(0, span[0])), int(rng.integers(0, span[1]))])
    ys, xs = torch.tensor(offsets).T[:, :, None]
    norm = defaults["normalize"]
    got = Augment(norm["mean"], norm["std"], x.shape[1], torch.Generator())(x, ys, xs)
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), np.stack(want))


def _batches(n: int, batch: int, generator: torch.Generator):
    """Endless record indices: per-epoch permutations cut into whole batches that run across epoch ends."""
    order = torch.zeros(0, dtype=torch.int64)
    while True:
        while len(order) < batch:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        yield order[:batch]
        order = order[batch:]


@torch.inference_mode()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int, aug: Augment) -> float:
    """Accuracy with batch norm's moving averages, ``normalize`` only (mlcv's ``pp_eval``), batches of ``batch``."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = (images[i : i + batch].float() - aug.mean) * aug.inv_std
        correct += int((model(x).argmax(-1) == labels[i : i + batch]).sum())
    model.train()
    return correct / len(images)


def _check_recipe(config: Any) -> None:
    """The loop below implements the default experiment's recipe only; refuse configs that need more."""
    oc = config.optim
    unsupported = {
        "optim.name": oc.name != "adam",
        "optim.weight_decay": bool(oc.weight_decay),
        "optim.l2": bool(oc.l2),
        "optim.l1": bool(oc.l1),
        "optim.grad_clip_norm": bool(oc.grad_clip_norm),
        "optim.plateau_factor": bool(oc.plateau_factor),
        "averaging.kind": config.averaging.kind != "none",
        "label_smoothing": bool(config.label_smoothing),
        "loss": config.loss != "softmax_xent",
        "dtype": config.dtype != "float32",
        "early_stopping.patience_evals": bool(config.early_stopping.patience_evals),
        "data.pp_train": config.data.pp_train != f"random_crop({SIZE}, pad={PAD})|normalize",
        "data.pp_eval": config.data.pp_eval != "normalize",
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise NotImplementedError(f"the torch reference does not implement config {', '.join(bad)}")


def train(seed: int, threads: int | None = None, check: bool = True) -> dict[str, Any]:
    """Trains the default experiment in torch with ``seed``; returns its figures (times in s, accuracies 0-1).

    ``threads``: ``torch.set_num_threads`` (None keeps torch's default). ``check``: first check the augmentation
    against mlcv's ops (:func:`check_augment`, outside the timings).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    config = digits_cnn.get_config()
    config.seed = seed
    _check_recipe(config)
    setup = RunSetup(config)
    data = {role: _read(source) for role, source in setup.sources.items()}
    read_s = time.perf_counter() - t_start
    if check:  # outside the timings: the clock restarts after it
        t_check = time.perf_counter()
        check_augment(data["train"][0], config, setup.spec.op_defaults)
        t_start += time.perf_counter() - t_check

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y = data["train"]
    mc, dc, oc = config.model, config.data, config.optim
    model = SmallCNN(
        train_x.shape[1], setup.meta.num_classes, tuple(mc.features), mc.convs_per_stage, mc.dense, mc.dropout
    )
    total, eval_every, log_every = setup.total_steps, setup.eval_every, setup.log_every
    # mlcv's own schedule, step t updated with lr(t) as optax's scale_by_learning_rate counts.
    lrs = np.asarray(setup.lr_schedule(np.arange(total)), np.float64).tolist()
    opt = torch.optim.Adam(model.parameters(), lr=lrs[0], betas=(oc.b1, oc.b2), eps=oc.eps)
    norm = setup.spec.op_defaults["normalize"]
    aug = Augment(norm["mean"], norm["std"], train_x.shape[1], generator)
    indices = _batches(len(train_x), dc.batch_size, generator)

    best_value, best_step, best_state = None, None, None
    train_s, losses = 0.0, []
    model.train()
    window = time.perf_counter()
    for step in range(1, total + 1):
        idx = next(indices)
        x, y = aug(train_x[idx]), train_y[idx]
        for group in opt.param_groups:
            group["lr"] = lrs[step - 1]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if step % log_every == 0 or step % eval_every == 0 or step == total:
            # As mlcv's loop fetches and checks the pending step metrics at each log and before each save.
            if not all(math.isfinite(float(v)) for v in losses):
                raise FloatingPointError(f"non-finite loss by step {step}")
            losses.clear()
        if step % eval_every == 0 or step == total:
            train_s += time.perf_counter() - window
            value = _accuracy(model, *data["validation"], dc.eval_batch_size, aug)
            if best_value is None or value > best_value:
                best_value, best_step, best_state = value, step, copy.deepcopy(model.state_dict())
            window = time.perf_counter()
    model.load_state_dict(best_state)
    val = _accuracy(model, *data["validation"], dc.eval_batch_size, aug)
    test = _accuracy(model, *data["test"], dc.eval_batch_size, aug)
    return {
        "seed": seed,
        "threads": torch.get_num_threads(),
        "steps": total,
        "best_step": best_step,
        "read_time_s": read_s,
        "train_time_s": train_s,
        "train_images_per_sec": total * dc.batch_size / train_s,
        "wall_time_s": time.perf_counter() - t_start,
        "validation_accuracy": val,
        "test_accuracy": test,
    }


def train_mlcv(seed: int) -> dict[str, Any]:
    """The default experiment through mlcv's own loop (``mlcv.run``, as ``launch.py`` runs it) in a temporary
    workdir, in this process; the same figures as :func:`train`, from its summary."""
    import mlcv

    config = digits_cnn.get_config()
    config.seed = seed
    with tempfile.TemporaryDirectory() as workdir:
        s = mlcv.run(config, workdir)
    return {
        "seed": seed,
        "steps": s["step"],
        "best_step": s["best_step"],
        "train_time_s": s["train_time_s"],
        "train_images_per_sec": s["train_images_per_sec"],
        "wall_time_s": s["wall_time_s"],
        "validation_accuracy": s["validation"]["accuracy"],
        "test_accuracy": s["test"]["accuracy"],
    }


def _table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print("\n| loop | seed | steps | best step | train s | train images/s | wall s | validation acc. % | test acc. % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r['seed']} | {r['steps']} | {r['best_step']} | {r['train_time_s']:.2f} | "
            f"{r['train_images_per_sec']:,.0f} | {r['wall_time_s']:.2f} | {100 * r['validation_accuracy']:.2f} | "
            f"{100 * r['test_accuracy']:.2f} |"
        )


def _mean_std(name: str, results: list[dict[str, Any]]) -> None:
    acc = 100 * np.asarray([r["test_accuracy"] for r in results])
    rate = np.asarray([r["train_images_per_sec"] for r in results])
    std = acc.std(ddof=1) if len(acc) > 1 else 0.0
    print(f"{name}: test accuracy {acc.mean():.2f} ± {std:.2f} %, mean {rate.mean():,.0f} train images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--mlcv", action="store_true", help="also run mlcv's loop on each seed, in this process")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}: {threads} intra-op threads, {torch.get_num_interop_threads()} inter-op threads",
        file=sys.stderr,
    )
    rows: list[tuple[str, dict[str, Any]]] = []
    for seed in args.seeds:
        loops = [(f"torch ({threads} thread{'s' * (threads != 1)})", train)] + (
            [("mlcv (`mlcv.run`)", train_mlcv)] if args.mlcv else []
        )
        for name, fn in loops:
            r = fn(seed)
            rows.append((name, r))
            print(
                f"{name}, seed {seed}: test accuracy {100 * r['test_accuracy']:.2f} % (best step {r['best_step']}), "
                f"{r['train_images_per_sec']:,.0f} images/s, wall {r['wall_time_s']:.1f} s",
                file=sys.stderr,
            )
    _table(rows)
    print(f"\nseeds {', '.join(map(str, args.seeds))}:")
    for name in dict.fromkeys(n for n, _ in rows):
        _mean_std(name, [r for n, r in rows if n == name])


if __name__ == "__main__":
    main()
