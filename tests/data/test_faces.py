"""The built-in ``faces`` dataset against scikit-image's ``lfw_subset``."""

from __future__ import annotations

import numpy as np
from skimage import data as skdata

from mlcv import data


def test_faces_splits_are_stratified_disjoint_and_hold_skimage_pixels():
    ref = np.round(skdata.lfw_subset() * 255).astype(np.uint8)
    seen = []
    for role, n in (("train", 100), ("validation", 40), ("test", 60)):
        split = data.load_arrays("faces", role)
        assert split["image"].shape == (n, 25, 25, 1)
        assert split["label"].sum() == n // 2
        for image, label in zip(split["image"][..., 0], split["label"], strict=True):
            match = np.flatnonzero((ref == image).all(axis=(1, 2)))
            assert len(match) >= 1
            # skimage's first 100 images are the faces.
            assert (match[0] < 100) == bool(label)
            seen.append(match[0])
    assert len(set(seen)) == 200
