"""Checks of whole examples and of configured ranges against them, each error naming the key at fault.

- :func:`check_sizes`: every view (``image_right``, ``image_next``) and dense annotation has the image's height
  and width. The geometric ops call it (through ``spatial.size``) before moving anything, since a crop would
  otherwise cut views of different sizes to one size and hide the mismatch; the pipeline calls it again after
  preprocessing, for op strings without a geometric op.
- :func:`check_finite`: no NaN or inf in ground truth (``disparity``, ``disparity_right``, ``flow``) where its
  mask says valid (everywhere, without the mask): one such value makes the loss NaN.
- :func:`check_disparity_range`: a configured disparity range fits in the image width.

The example checks raise ValueError; the pipeline (``mlcv.data.pipeline``) reports them, like any op error, as
a ConfigError naming the dataset. ``check_disparity_range`` raises ConfigError naming the config key it is given.
"""

from __future__ import annotations

import numpy as np

from mlcv.config import ConfigError
from mlcv.data.ops.registry import Example

# Dense keys whose first two axes are (height, width), and those with a leading instance axis.
SIZED_KEYS = (
    "image_right",
    "image_next",
    "segmentation",
    "depth",
    "disparity",
    "disparity_right",
    "disparity_mask",
    "disparity_right_mask",
    "occlusion",
    "occlusion_right",
    "flow",
    "flow_mask",
)
STACKED_KEYS = ("masks",)
# Ground truth checked for finite values, with the mask that says where it is valid.
GROUND_TRUTH_MASKS = {"disparity": "disparity_mask", "disparity_right": "disparity_right_mask", "flow": "flow_mask"}


def _hw(ex: Example, key: str) -> tuple[int, ...]:
    shape = np.shape(ex[key])
    return tuple(shape[1:3]) if key in STACKED_KEYS else tuple(shape[:2])


def check_sizes(ex: Example) -> None:
    """Raises ValueError, naming the key, if a view or dense annotation differs from ``image`` in height or width."""
    if "image" not in ex:
        return
    hw = tuple(np.shape(ex["image"])[:2])
    for key in (*SIZED_KEYS, *STACKED_KEYS):
        if key in ex and _hw(ex, key) != hw:
            what = "view" if key.startswith("image") else "annotation"
            raise ValueError(
                f"{key} is {_hw(ex, key)} (height, width) but image is {hw}: every view and dense annotation of an "
                f"example must have the image's size; this {what} does not"
            )


def check_finite(ex: Example) -> Example:
    """``ex`` as it is if its ground truth is finite wherever its mask marks it valid; else ValueError naming the key.

    Without the mask key every pixel counts as valid. A ``flow`` pixel is bad if either component is not finite.
    """
    for key, mask_key in GROUND_TRUTH_MASKS.items():
        if key not in ex:
            continue
        a = np.asarray(ex[key])
        if not np.issubdtype(a.dtype, np.floating):
            continue
        finite = np.isfinite(a)
        if finite.all():  # the common case, without building the mask
            continue
        bad = ~finite.all(axis=-1) if key == "flow" else ~finite
        where = "anywhere (no mask)"
        if mask_key in ex:
            bad &= np.asarray(ex[mask_key]) > 0
            where = f"where {mask_key} marks it valid"
        if bad.any():
            y, x = (int(i[0]) for i in np.nonzero(bad)[:2])
            raise ValueError(
                f"{key} holds {int(bad.sum())} non-finite value(s) (NaN or inf) {where}, the first at (y, x) = "
                f"({y}, {x}); mark them invalid in {mask_key} or fix the data"
            )
    return ex


def check_disparity_range(max_disparity: int, width: int, key: str) -> None:
    """Raises ConfigError naming ``key`` unless ``0 <= max_disparity < width``.

    ``max_disparity`` is the largest disparity tried (a cost volume over ``0..max_disparity``); a left pixel ``x``
    matches right pixel ``x - d``, so no disparity of ``width`` or more has a match in an image ``width`` pixels
    wide. ``width``: that of the images the range applies to (after preprocessing, at the cost volume's scale).
    """
    if max_disparity < 0:
        raise ConfigError(f"{key}={max_disparity}: a disparity range must be >= 0")
    if max_disparity >= width:
        raise ConfigError(
            f"{key}={max_disparity} is wider than the images it applies to ({width} px wide): no pixel has a match "
            f"at a disparity of {width} or more; use at most {width - 1}"
        )
