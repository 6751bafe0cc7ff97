"""``launch.py --mode=layers``: the per-layer table of an experiment's model, from the dataset's meta alone.

The model is the one the experiment's task builds; the input shape is that of
one example of the dataset's declared features after ``config.data.pp_eval``,
computed on a blank example, so no record is read.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from mlcv import data
from mlcv.data import ops as ops_lib
from mlcv.models import layer_table
from mlcv.training import runs


def run(
    config: ml_collections.ConfigDict, workdir: str, *, input_shape: tuple[int, ...] | None = None, batch_size: int = 1
) -> str:
    """Prints the layer table of ``config``'s model and writes it to ``<workdir>/layers.md``; returns it.

    ``input_shape`` (one example) replaces the shape derived from the dataset; ``batch_size`` scales the totals.
    """
    dc = config.data
    spec = data.get(dc.name)
    meta = data.meta(spec)
    task = runs.build_task(config, meta)
    if input_shape is None:
        blank = {name: np.zeros(f.shape, f.dtype) for name, f in meta.features.items() if None not in f.shape}
        example = ops_lib.parse(dc.pp_eval, spec.op_defaults)(blank, np.random.default_rng(0))
        input_shape = np.shape(example[task.input_keys[0]])
    rows = layer_table.layer_table(task.model, input_shape, batch_size)
    title = f"# {config.model.name} on {dc.name}, input {'x'.join(map(str, input_shape))}\n\n"
    table = title + layer_table.format_table(rows, layer_table.totals(rows))
    print(table)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "layers.md"), "w") as f:
        f.write(table)
    return table
