"""Ops that turn TFDS catalogue records into the data contract: ``decode_detection`` for ``voc`` and ``coco``.

TFDS detection datasets store an ``objects`` sequence per image: ``bbox`` normalised to ``[0, 1]`` as
``(ymin, xmin, ymax, xmax)``, ``label``, and per-dataset flags (COCO's ``is_crowd`` and ``area``, VOC's
``is_difficult``). ``decode_detection`` must come first in a pp string, so that the geometric ops after it
(``resize``, ``random_crop``, ``flip_lr``, ``random_scale``, ``pad_boxes``) move the boxes and their rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlcv.data.ops.registry import Example, Op, register

#: What ``decode_detection`` can do with an object a flag marks.
FLAG_MODES = ("flag", "drop", "keep")
#: The TFDS ``objects`` fields that mark objects to ignore, by the argument of ``decode_detection`` that handles them.
IGNORE_FIELDS = {"crowd": "is_crowd", "difficult": "is_difficult"}
#: The keys ``decode_detection`` writes.
DETECTION_KEYS = ("boxes", "box_labels", "box_crowd", "box_area")


def _objects(ex: Example, objects: str) -> Mapping[str, Any] | None:
    """The record's ``objects`` fields: the nested dict TFDS sources give, or flat ``objects/field`` keys."""
    if isinstance(ex.get(objects), Mapping):
        return ex[objects]
    prefix = f"{objects}/"
    flat = {k[len(prefix) :]: v for k, v in ex.items() if k.startswith(prefix)}
    return flat or None


@register("decode_detection", moves=DETECTION_KEYS)
def decode_detection(crowd: str = "flag", difficult: str = "flag", area: bool = True, objects: str = "objects") -> Op:
    """Turns a TFDS detection record into ``image``, ``boxes``, ``box_labels``, ``box_crowd`` and ``box_area``.

    ``boxes`` are the normalised ``bbox`` times ``[H, W, H, W]`` of the record's image: ``[N, 4]`` float32
    pixels; ``box_labels`` the ``label`` ``[N]`` (int64, as TFDS stores it; ``pad_boxes`` casts to int32).
    ``box_crowd`` ``[N]`` bool marks the objects the detection evaluator ignores, as COCO ignores its crowd regions:
    a detection that matches one is neither a true nor a false positive, and missing one is no miss.

    ``crowd`` (COCO's ``is_crowd``) and ``difficult`` (VOC's ``is_difficult``, which the VOC07 metric ignores just
    so) say what to do with the objects so marked: ``"flag"`` keeps them with ``box_crowd`` 1 (for evaluation),
    ``"drop"`` removes them (for training: the detection losses read no flags, and would take a crowd region
    for one object), ``"keep"`` makes them ordinary objects. A field the record lacks marks nothing, so the
    defaults suit both datasets. A flagged VOC difficult object is matched as a crowd region, by intersection over
    the detection's area rather than VOC's IoU: a detection inside it is ignored rather than counted false.

    ``box_area`` ``[N]`` float32: with ``area`` and a record that has one (COCO's, the segmentation's pixel count,
    which decides AP small / medium / large as in pycocotools), that area; else the box's area in pixels. It is
    in pixels of the current image: the geometric ops after this one rescale it with the boxes (``set_boxes``).

    Every other key of the record (file names, ids, image-level labels, the other object fields) is dropped. A
    record without ``objects`` passes through unchanged (it is already in the contract).

    Raises:
      ValueError: a mode not in :data:`FLAG_MODES`; object fields of different lengths.
    """
    modes = {"crowd": crowd, "difficult": difficult}
    for name, mode in modes.items():
        if mode not in FLAG_MODES:
            raise ValueError(f"decode_detection({name}={mode!r}): must be one of {FLAG_MODES}")

    def op(ex: Example, rng: np.random.Generator) -> Example:
        fields = _objects(ex, objects)
        if fields is None:
            return ex
        height, width = np.shape(ex["image"])[:2]
        boxes = np.asarray(fields["bbox"], np.float32).reshape(-1, 4)
        boxes = boxes * np.array([height, width, height, width], np.float32)
        rows = {"boxes": boxes, "box_labels": np.asarray(fields["label"], np.int64).reshape(-1)}
        if area and "area" in fields:
            rows["box_area"] = np.asarray(fields["area"], np.float32).reshape(-1)
        else:
            rows["box_area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        flags = {m: np.asarray(fields[f], bool).reshape(-1) for m, f in IGNORE_FIELDS.items() if f in fields}
        lengths = {k: len(v) for k, v in (rows | flags).items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"decode_detection: {objects!r} fields of different lengths {lengths}")
        keep = np.ones(len(boxes), bool)
        crowd_rows = np.zeros(len(boxes), bool)
        for name, flagged in flags.items():
            if modes[name] == "drop":
                keep &= ~flagged
            elif modes[name] == "flag":
                crowd_rows |= flagged
        rows["box_crowd"] = crowd_rows
        return {"image": ex["image"], **{k: v[keep] for k, v in rows.items()}}

    return op
