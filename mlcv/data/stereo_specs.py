"""The rendered stereo and flow datasets (:mod:`mlcv.data.sources.planes`): specs that the registry merges in.

``stereo_planes``: 64x128 grey pairs of textured, fronto-parallel and slanted planes; ``image`` (left),
``image_right``, both views' ``disparity`` (pixels, 1-24) with ``disparity_mask`` / ``disparity_right_mask``
(all True: rendered ground truth is exact everywhere), ``occlusion`` / ``occlusion_right`` (True where a pixel's
match is hidden in, or outside, the other view) and the calibration scalars ``focal_px`` (100 px) and
``baseline`` (0.1 m): depth ``z = baseline * focal_px / disparity`` in metres. 400 / 50 / 100 pairs.

``flow_layers``: 64x96 grey frame pairs of 2-4 textured layers moving over a background; ``image`` (frame 1),
``image_next`` (frame 2), ``flow`` (``[H, W, 2]`` float32 (dx, dy) of frame-1 pixels) and ``flow_mask`` (frame-1
pixels visible in frame 2). 400 / 50 / 100 pairs.
"""

from __future__ import annotations

from mlcv.data.features import Feature
from mlcv.data.specs import UINT8_STATS, DatasetSpec

_ROLES = {"train": "train", "validation": "validation", "test": "test"}


def _stereo_planes(height: int, width: int) -> dict[str, Feature]:
    """Both grey views, both disparities, their (all-True) masks, both occlusion masks and the calibration."""
    hw = (height, width)
    return {
        "image": Feature("image", (*hw, 1), "uint8"),
        "image_right": Feature("image_right", (*hw, 1), "uint8"),
        **{k: Feature("disparity", hw, "float32") for k in ("disparity", "disparity_right")},
        **{
            k: Feature("masks", hw, "bool")
            for k in ("disparity_mask", "disparity_right_mask", "occlusion", "occlusion_right")
        },
        # float64: a TFDS data source returns a stored scalar (kept at float32 precision) as a Python float.
        "focal_px": Feature("calibration", (), "float64"),
        "baseline": Feature("calibration", (), "float64"),
    }


def _flow_layers(height: int, width: int) -> dict[str, Feature]:
    """Two grey frames, the flow of frame 1 and where frame 1 is visible in frame 2."""
    hw = (height, width)
    return {
        "image": Feature("image", (*hw, 1), "uint8"),
        "image_next": Feature("image", (*hw, 1), "uint8"),
        "flow": Feature("flow", (*hw, 2), "float32"),
        "flow_mask": Feature("masks", hw, "bool"),
    }


BUILTIN: dict[str, DatasetSpec] = {
    "stereo_planes": DatasetSpec(
        name="stereo_planes",
        splits=_ROLES,
        op_defaults=UINT8_STATS,  # [-1, 1], as random_dot_stereo
        builtin=True,
        features=_stereo_planes(64, 128),
    ),
    "flow_layers": DatasetSpec(
        name="flow_layers",
        splits=_ROLES,
        op_defaults=UINT8_STATS,
        builtin=True,
        features=_flow_layers(64, 96),
    ),
}

BUILDERS = {
    "stereo_planes": "mlcv.data.sources.planes:StereoPlanes",
    "flow_layers": "mlcv.data.sources.planes:FlowLayers",
}
