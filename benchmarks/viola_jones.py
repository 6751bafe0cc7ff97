"""Viola-Jones against the references: stump search vs scikit-learn, detection vs scikit-image's LBP cascade.

Run:
  .venv/bin/python benchmarks/viola_jones.py [--arg runlocal] [--repeats 3]

1. One boosting round's stump search over F features of N windows: mlcv's
   search on pre-sorted features (the sort is paid once per stage and shown
   apart) against fitting scikit-learn's depth-1 ``DecisionTreeClassifier``
   with the same sample weights, which re-sorts every time.
2. Detection on the same grey images, the astronaut and the test split's
   face-free scenes: mlcv's cascade (trained here with the experiment's
   config) against ``skimage.feature.Cascade`` with the LBP frontal-face
   cascade that ships with scikit-image, both from 24-pixel windows up and
   with scale factor 1.25. Columns: detections, false detections (boxes that
   do not overlap the hand-labelled face with IoU >= 0.5; on the scenes every
   box is false), the best IoU on the astronaut, seconds per image (best of
   ``--repeats``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import faces_viola_jones  # noqa: E402
from mlcv.classic.algorithms import adaboost, haar  # noqa: E402
from mlcv.classic.methods import face_windows  # noqa: E402
from mlcv.classic.methods.viola_jones import ViolaJones  # noqa: E402
from mlcv.ops import boxes as box_ops  # noqa: E402


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def stump_search(repeats: int) -> None:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    faces, labels = face_windows.face_split("train", 24)
    scene = face_windows.load_scene("brick")
    ys, xs = rng.integers(0, scene.shape[0] - 24, 1900), rng.integers(0, scene.shape[1] - 24, 1900)
    negatives = np.lib.stride_tricks.sliding_window_view(scene, (24, 24))[ys, xs]
    x = np.concatenate([faces[labels == 1], negatives])
    y = np.r_[np.ones(int(labels.sum()), int), np.zeros(len(negatives), int)]
    features = haar.enumerate_features(24, position_step=4, size_step=3)
    ii, std = haar.window_stats(x, min_std=0.02)
    values = haar.feature_values(features, ii, std)
    w = rng.gamma(2.0, size=len(y))
    w /= w.sum()
    t_sort, sf = _best(lambda: adaboost.sort_features(values), 1)
    t_ours, (err, _, _) = _best(lambda: adaboost.best_stumps(sf, y, w), repeats)
    tree = DecisionTreeClassifier(max_depth=1)
    t_ref, _ = _best(lambda: tree.fit(values.T, y, sample_weight=w), repeats)
    ref_err = w[tree.predict(values.T) != y].sum()
    print(f"\n### Best stump of one round: {len(features):,} Haar features x {len(y):,} windows\n")
    print("| implementation | s / round | vs scikit-learn | weighted error of the stump |")
    print("|---|---:|---:|---:|")
    speedup = t_ref / t_ours
    print(
        f"| mlcv, sorted once (sort: {t_sort:.2f} s a stage) | {t_ours:.3f} | {speedup:.1f}x faster | {err.min():.4f} |"
    )
    print(f"| scikit-learn DecisionTreeClassifier(max_depth=1) | {t_ref:.3f} | 1.0x | {ref_err:.4f} |")


def detection(arg: str | None, repeats: int) -> None:
    from skimage import data
    from skimage.feature import Cascade

    config = faces_viola_jones.get_config(arg)
    t0 = time.perf_counter()
    method = ViolaJones(config)
    method.fit(lambda step, scalars: None)
    fit_s = time.perf_counter() - t0
    lbp = Cascade(data.lbp_frontal_face_cascade_filename())
    gt = np.asarray(config.detect.gt_box, np.float64)
    images = {"astronaut": face_windows.to_gray(data.astronaut())}
    images.update({name: face_windows.load_scene(name) for name in config.negatives.test_scenes})
    cascade = method.cascade
    print(f"\n### Detection (mlcv: {cascade.num_features} stumps, {len(cascade.stages)} stages, fit {fit_s:.0f} s)\n")
    print("| image | size | mlcv boxes / false | mlcv s | skimage LBP boxes / false | skimage s | time vs skimage |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, image in images.items():
        t_ours, (ours, _, _, _) = _best(lambda image=image: method.detect(image), repeats)

        def run_lbp(image=image):
            found = lbp.detect_multi_scale(
                img=image,
                scale_factor=config.detect.scale_factor,
                step_ratio=1,
                min_size=(24, 24),
                max_size=image.shape,
            )
            return np.array(
                [[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in found], float
            ).reshape(-1, 4)

        t_ref, ref = _best(run_lbp, repeats)
        cells = []
        for b in (ours, ref):
            if name == "astronaut":
                iou = box_ops.iou(b, gt)[:, 0] if len(b) else np.zeros(0)
                false = len(b) - min(1, int((iou >= config.detect.match_iou).sum()))
                cells.append(f"{len(b)} / {false} (IoU {iou.max() if len(iou) else 0:.2f})")
            else:
                cells.append(f"{len(b)} / {len(b)}")
        print(
            f"| {name} | {image.shape[1]}x{image.shape[0]} | {cells[0]} | {t_ours:.2f} | {cells[1]} | {t_ref:.2f} "
            f"| {t_ours / t_ref:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arg", default=None, help="experiment arg, e.g. runlocal")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stump_search(args.repeats)
    detection(args.arg, args.repeats)


if __name__ == "__main__":
    main()
