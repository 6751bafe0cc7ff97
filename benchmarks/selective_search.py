"""Selective search on digit_scenes: milliseconds an image and proposal recall, by strategy set.

Run:
  .venv/bin/python benchmarks/selective_search.py [--num_images 200] [--repeats 2]

1. ``mlcv.ops.selective_search.selective_search`` on the first ``--num_images`` validation scenes (96 x 96),
   per strategy set: ms an image (the mean over images of the best of ``--repeats``), proposals an image, and
   recall: the fraction of ground-truth digit boxes with IoU >= 0.5 / 0.7 to one of the top 100 / 300 / all
   proposals. OpenCV's ``cv2.ximgproc.segmentation`` selective search (opencv-contrib) joins the table when it
   is importable, in its own fast and single-strategy modes.
2. The ``selective_search(300)`` data op with a file cache in a temporary directory: ms a record on a first pass
   (misses: the search, then a file written), a second (in-process hits) and a third after emptying the
   in-process cache (file hits, as in a new run).

On a shared machine the ms figures follow its load, so two peers are timed in the same run: scikit-image's
``felzenszwalb`` alone on the same images (HSV, k 100: one of the fast mode's four segmentations), and
``calibration``, ``sum(range(10**6))``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv.data import ops  # noqa: E402
from mlcv.data.ops import proposals as proposals_op  # noqa: E402
from mlcv.data.sources.scenes_builder import DigitScenes  # noqa: E402
from mlcv.ops import boxes as box_ops  # noqa: E402
from mlcv.ops.selective_search import selective_search  # noqa: E402

STRATEGY_SETS = {
    "fast: hsv+lab, k 50+100, ctsf+tsf": {},
    "single: hsv, k 100, ctsf": {"color_spaces": "hsv", "scale": 100, "similarities": "ctsf"},
}
TOPS, THRESHOLDS = (100, 300, None), (0.5, 0.7)


def recall(gt: list[np.ndarray], proposals: list[np.ndarray], top: int | None, threshold: float) -> float:
    """Fraction of ground-truth boxes with IoU >= ``threshold`` to one of the first ``top`` proposals."""
    pairs = zip(gt, proposals, strict=True)
    hits = sum(int((box_ops.iou(g, p[:top]).max(axis=1) >= threshold).sum()) for g, p in pairs)
    return hits / sum(len(g) for g in gt)


def _timed(fn: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray], repeats: int):
    out, seconds = [], []
    for image in images:
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            boxes = fn(image)
            best = min(best, time.perf_counter() - t0)
        out.append(boxes)
        seconds.append(best)
    return out, 1e3 * float(np.mean(seconds))


def _opencv(mode: str) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import cv2

        segmentation = cv2.ximgproc.segmentation
    except (ImportError, AttributeError):
        return None

    def run(image: np.ndarray) -> np.ndarray:
        search = segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(image[..., ::-1].copy())  # OpenCV wants BGR
        search.switchToSelectiveSearchFast() if mode == "fast" else search.switchToSingleStrategy()
        rects = search.process().astype(np.float32).reshape(-1, 4)  # x, y, w, h
        return np.stack([rects[:, 1], rects[:, 0], rects[:, 1] + rects[:, 3], rects[:, 0] + rects[:, 2]], axis=1)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scenes = list(DigitScenes.generate("validation", args.num_images))
    images, gt = [s["image"] for s in scenes], [s["boxes"] for s in scenes]
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"mlcv {name}": (lambda image, kw=kw: selective_search(image, **kw)) for name, kw in STRATEGY_SETS.items()
    }
    for mode in ("fast", "single"):
        if (fn := _opencv(mode)) is not None:
            methods[f"OpenCV ximgproc {mode}"] = fn
    if not any(name.startswith("OpenCV") for name in methods):
        print("cv2.ximgproc (opencv-contrib) is not importable: OpenCV's selective search left out")
    selective_search(images[0])  # imports scikit-image
    header = ["method", "ms/image", "proposals"] + [f"top {t or 'all'} @{th}" for t in TOPS for th in THRESHOLDS]
    print(f"{args.num_images} digit_scenes validation images, {sum(len(g) for g in gt)} digits")
    print(" | ".join(header))
    from skimage.segmentation import felzenszwalb

    from mlcv.ops.region_features import color_space

    hsv = [color_space(image, "hsv") for image in images]
    _, ms = _timed(lambda x: felzenszwalb(x, scale=100, sigma=0.8, min_size=10), hsv, args.repeats)
    print(f"peer: scikit-image felzenszwalb alone (HSV, k 100) {ms:.1f} ms/image")
    for name, fn in methods.items():
        proposals, ms = _timed(fn, images, args.repeats)
        cells = [f"{100 * recall(gt, proposals, t, th):.1f}" for t in TOPS for th in THRESHOLDS]
        print(" | ".join([name, f"{ms:.1f}", f"{np.mean([len(p) for p in proposals]):.0f}", *cells]), flush=True)

    rng = np.random.default_rng(0)
    proposals_op.cache_clear()
    with tempfile.TemporaryDirectory() as cache_dir:
        op = ops.parse(f"selective_search(300, cache_dir={cache_dir!r})")
        for name in ("misses", "in-process hits", "file hits"):
            if name == "file hits":
                proposals_op.cache_clear()
            t0 = time.perf_counter()
            for image in images:
                op({"image": image}, rng)
            print(f"selective_search(300) op, {name}: {1e3 * (time.perf_counter() - t0) / len(images):.2f} ms a record")
    t0 = time.perf_counter()
    sum(range(10**6))
    print(f"calibration: sum(range(10**6)) {1e3 * (time.perf_counter() - t0):.1f} ms")


if __name__ == "__main__":
    main()
