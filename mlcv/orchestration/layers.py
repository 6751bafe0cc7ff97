"""``launch.py --mode=summary`` (or ``--mode=layers``): the per-layer table of an experiment's model, no data read.

The model is the one the experiment's task builds. Its input is one example:

- of the features ``config.summary.features`` declares (name -> the fields of :class:`mlcv.data.Feature`:
  kind, shape, dtype and, for class-valued kinds, the number of classes), when the config has that section:
  no dataset is opened at all, so the table of an ImageNet model needs no ImageNet;
- else of the dataset's declared features after ``config.data.pp_eval``, computed on a blank example. No record
  is read, but a TFDS catalogue dataset that declares no features (``imagenet2012``, ``cifar10``) has its
  ``dataset_info`` read from its prepared files, so it must have been downloaded.

The other keys of ``config.summary``: ``batch_size`` (the minibatch of the memory and FLOPs totals; 1 without
it), ``table`` (``layers``: mlcv's table, :func:`mlcv.models.layer_table.format_table`; ``course``: the course's
columns, :mod:`mlcv.models.course_table`, with the optimizer's copies of the parameters counted from
``config.optim``) and ``collapse`` (module class names shown as one row each).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlcv import data, optim
from mlcv.config import ConfigError
from mlcv.data import ops as ops_lib
from mlcv.data.features import from_features
from mlcv.models import course_table, layer_table
from mlcv.training import runs

TABLES = ("layers", "course")


def declared(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config.summary``, or an empty section for a config without one."""
    return config.get("summary") or ml_collections.ConfigDict()


def model_and_input(
    config: ml_collections.ConfigDict, input_shape: Sequence[int] | None = None
) -> tuple[nn.Module, tuple[int, ...], str]:
    """The task's model, one example's input shape and where that shape came from (for the table's title).

    ``input_shape`` replaces the shape that the config declares or the dataset gives.
    """
    summary = declared(config)
    if summary.get("features"):
        try:
            features = {name: data.Feature(**dict(f)) for name, f in summary.features.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config.summary.features: {e}") from None
        task = runs.build_task(config, from_features(features))  # no dataset is opened
        shape = features[task.input_keys[0]].shape
        return task.model, tuple(input_shape or shape), "declared in config.summary, no dataset opened"
    dc = config.data
    spec = data.get(dc.name)
    meta = data.meta(spec)
    task = runs.build_task(config, meta)
    if input_shape is None:
        blank = {name: np.zeros(f.shape, f.dtype) for name, f in meta.features.items() if None not in f.shape}
        example = ops_lib.parse(dc.pp_eval, spec.op_defaults)(blank, np.random.default_rng(0))
        input_shape = np.shape(example[task.input_keys[0]])
    return task.model, tuple(input_shape), f"from dataset {dc.name}"


def optimizer_copies(config: ml_collections.ConfigDict, model: nn.Module, input_shape: Sequence[int]) -> int:
    """Arrays of the parameters' size that training holds: weights, gradient and the optimizer state's copies.

    Counted from the state of ``config.optim``'s optax chain (traced, not built), so a new optimizer needs no
    entry anywhere: SGD 2, SGD with momentum 3, Adam 4.
    """
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)["params"]
    # Step counts only shape the schedule, not the state; any that every schedule accepts will do.
    steps = 10 * (int(config.optim.get("warmup_steps") or 0) + 1000)
    state = jax.eval_shape(optim.make(config.optim, steps, steps_per_epoch=100).init, params)
    size = sum(math.prod(a.shape) for a in jax.tree.leaves(params))
    return 2 + sum(math.prod(a.shape) for a in jax.tree.leaves(state)) // size  # scalars (step count) are no copy


def summary(
    config: ml_collections.ConfigDict, *, input_shape: Sequence[int] | None = None, batch_size: int | None = None
) -> tuple[list[layer_table.Row], str]:
    """The rows of ``config``'s model and the table as Markdown (title, table, totals).

    ``input_shape`` (one example) and ``batch_size`` replace the declared or derived ones.
    """
    s = declared(config)
    table = s.get("table") or "layers"
    if table not in TABLES:
        raise ConfigError(f"config.summary.table={table!r}; valid: {', '.join(TABLES)}")
    batch = int(batch_size or s.get("batch_size") or 1)
    model, shape, source = model_and_input(config, input_shape)
    collapse = tuple(s.get("collapse") or ())
    rows = layer_table.layer_table(model, shape, batch, collapse=collapse)
    title = f"# {config.model.name}, input {'x'.join(map(str, shape))} ({source})\n\n"
    if table == "layers":
        return rows, title + layer_table.format_table(rows, layer_table.totals(rows))
    copies = optimizer_copies(config, model, shape)
    text = course_table.format_course_table(
        rows, optimizer_copies=copies, optimizer=f"config.optim.name={config.optim.name!r}", collapsed=collapse
    )
    return rows, title + text


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int | None = None,
) -> str:
    """Prints the table of ``config``'s model (:func:`summary`) and writes it to ``<workdir>/layers.md``."""
    _, text = summary(config, input_shape=input_shape, batch_size=batch_size)
    print(text)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "layers.md"), "w") as f:
        f.write(text)
    return text
