"""Ops that turn TFDS catalogue records into the data contract: ``decode_detection`` for ``voc`` and ``coco``,
``decode_segmentation`` for label-map datasets such as ``oxford_iiit_pet``.

TFDS detection datasets store an ``objects`` sequence per image: ``bbox`` normalised to ``[0, 1]`` as
``(ymin, xmin, ymax, xmax)``, ``label``, and per-dataset flags (COCO's ``is_crowd`` and ``area``, VOC's
``is_difficult``). Segmentation datasets store a mask image ``[H, W, 1]`` whose values code the classes in the
dataset's own way. A decode op must come first in a pp string, so that the geometric ops after it (``resize``,
``random_crop``, ``flip_lr``, ``random_scale``, ``pad_boxes``) move the boxes and their rows, or the label map.
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
#: Label maps by name for ``decode_segmentation(mapping=...)``: stored mask value -> ``segmentation`` label. The
#: Oxford-IIIT Pet trimap stores 1 = pet, 2 = background, 3 = border / unclassified; the usual protocol makes
#: background 0 and pet 1 and ignores the border (255).
SEGMENTATION_MAPPINGS: dict[str, dict[int, int]] = {
    "pet_trimap": {1: 1, 2: 0, 3: 255},
}


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


def _label_map(mapping: Mapping[int, int] | str) -> dict[int, int]:
    """``mapping`` as a dict of ints (a name: from :data:`SEGMENTATION_MAPPINGS`), its labels checked to fit uint8."""
    if isinstance(mapping, str):
        if mapping not in SEGMENTATION_MAPPINGS:
            raise ValueError(
                f"decode_segmentation(mapping={mapping!r}): unknown mapping name; "
                f"the named ones are {sorted(SEGMENTATION_MAPPINGS)}"
            )
        return dict(SEGMENTATION_MAPPINGS[mapping])
    out = {int(k): int(v) for k, v in dict(mapping).items()}
    bad = {k: v for k, v in out.items() if not 0 <= v <= 255}
    if not out:
        raise ValueError("decode_segmentation(mapping={}): an empty mapping maps no value; None keeps the values")
    if bad:
        raise ValueError(f"decode_segmentation(mapping={mapping!r}): labels {bad} do not fit the uint8 label map")
    return out


@register("decode_segmentation", moves=("segmentation",))
def decode_segmentation(key: str = "segmentation_mask", mapping: Mapping[int, int] | str | None = None) -> Op:
    """Turns a TFDS segmentation record into ``image`` and ``segmentation``, an ``[H, W]`` uint8 label map.

    ``key`` is the record's mask (``[H, W]`` or ``[H, W, 1]``, as a TFDS ``Image`` feature stores it); it must have
    the image's height and width. ``mapping`` turns its stored values into labels: a dict ``{value: label}`` (a pp
    string may write one: ``decode_segmentation(mapping={1: 1, 2: 0, 3: 255})``), the name of one in
    :data:`SEGMENTATION_MAPPINGS`, or None for masks whose values are the labels already. Label 255 is the
    ``ignore_label`` of the segmentation task and evaluator.

    ``oxford_iiit_pet`` defaults to ``mapping='pet_trimap'`` (its spec's ``op_defaults``): its trimap's 2
    (background) becomes 0, 1 (pet) stays 1 and 3 (the border around the pet, drawn as unclassified) becomes
    255, ignored, so the 2 classes are background and pet (the border is a band of a few pixels that the dataset's
    annotators left undecided). A mapping that keeps the border as a class 2 is stopped by the task's label check,
    since the dataset declares 2 classes.

    Every other key of the record (file name, breed and species labels, head box) is dropped. A record without
    ``key`` passes through unchanged (it is already in the contract).

    Raises:
      ValueError: when the pp string is parsed, an unknown mapping name, an empty mapping or a label outside
        0..255; on the record, a mask value the mapping lacks (without a mapping: outside 0..255), or a mask whose
        size is not the image's.
    """
    table = None if mapping is None else _label_map(mapping)
    if table is not None:
        values = np.array(sorted(table), np.int64)
        labels = np.array([table[v] for v in values], np.uint8)
        # A lookup table over all 256 byte values for uint8 masks (TFDS Image features): 10x faster than the
        # searchsorted that other dtypes take. -1 marks the values the mapping lacks.
        lut = np.full(256, -1, np.int16)
        in_byte = (values >= 0) & (values < 256)
        lut[values[in_byte]] = labels[in_byte]

    def unmapped(mask: np.ndarray, found: np.ndarray) -> ValueError:
        return ValueError(
            f"decode_segmentation: {key!r} has value(s) {np.unique(mask[~found])[:10].tolist()} that the mapping "
            f"{table} lacks"
        )

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if key not in ex:
            return ex
        mask = np.asarray(ex[key])
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        image_hw = np.shape(ex["image"])[:2]
        if mask.shape != tuple(image_hw):
            raise ValueError(f"decode_segmentation: {key!r} of shape {mask.shape} does not match image {image_hw}")
        if table is None:
            if mask.dtype != np.uint8 and mask.size and (mask.min() < 0 or mask.max() > 255):
                raise ValueError(
                    f"decode_segmentation: {key!r} has values {mask.min()}..{mask.max()} outside the uint8 label "
                    "map's 0..255; give a mapping"
                )
            segmentation = mask.astype(np.uint8)
        elif mask.dtype == np.uint8:
            looked_up = lut[mask]
            found = looked_up >= 0
            if not found.all():
                raise unmapped(mask, found)
            segmentation = looked_up.astype(np.uint8)
        else:
            index = np.minimum(np.searchsorted(values, mask), len(values) - 1)
            found = values[index] == mask
            if not found.all():
                raise unmapped(mask, found)
            segmentation = labels[index]
        return {"image": ex["image"], "segmentation": segmentation}

    return op
