"""Preprocessing ops composed from strings: ``"flip_lr|random_crop(8, pad=1)|normalize"``.

Each op is a factory registered by name; called with the arguments written
in the string it returns a function ``(example, rng) -> example`` over a dict
of NumPy arrays (the data contract: ``image``, ``label``, ``boxes``,
``box_labels``, ``box_mask``, ``masks``, ``segmentation``, ``image_right``,
``disparity``, ``depth`` ...). Ops that draw random numbers use only ``rng``,
which grain derives from the loader seed and the record index, so a pipeline
is reproducible and resumable.

Modules, by what their ops move (``moves(name)`` lists the keys of one op):

- :mod:`.registry`: ``register``, ``names``, ``moves``, ``parse``;
- :mod:`.photometric`: pixel values of the views only (``normalize``,
  ``scale``, ``color_jitter``, ``cutout``);
- :mod:`.geometric`: every spatial key together (flips, crops, resizes,
  zoom, rotation), built on the whole-example transforms of :mod:`.spatial`;
- :mod:`.boxes`: box arrays, ``pad_boxes`` and ``keep``;
- :mod:`.catalogue`: TFDS catalogue records into the contract (``decode_detection``);
- :mod:`.proposals`: region proposals (``selective_search``), moved by the geometric ops like boxes;
- :mod:`.points`: feature maps of points in the plane (``polar``: the course's polar coordinates);
- :mod:`.image_fns`: the pure image helpers behind them;
- :mod:`.checks`: checks of whole examples (views' sizes, finite ground truth) and of a configured
  disparity range.

Keys absent from an example are not moved; keys an op does not know (ids,
file names) pass through untouched.
"""

# Importing the op modules registers their ops.
from mlcv.data.ops import boxes, catalogue, checks, geometric, photometric, points, proposals
from mlcv.data.ops.registry import Example, Op, moves, names, parse, register

__all__ = [
    "Example",
    "Op",
    "boxes",
    "catalogue",
    "checks",
    "geometric",
    "moves",
    "names",
    "parse",
    "photometric",
    "points",
    "proposals",
    "register",
]
