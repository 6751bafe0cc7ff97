"""Viola-Jones face detection as a fitted method: Haar features, AdaBoost stages, a cascade, multi-scale scanning.

``fit`` trains the cascade on the ``faces`` training faces against negatives
mined from the training scenes; ``evaluate(role)`` reports, on that split's
held-out faces, non-faces and scenes, the recall, the false positive rate per
window and the accuracy, and the detection recall of that split's faces pasted
into its first scene (``pasted_face_recall``: known boxes, which the face-free
validation scenes cannot give); the test evaluation also runs the detector on
``skimage.data.astronaut()`` and scores its boxes against a hand-labelled face
box (``config.detect.gt_box``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mlcv.classic.algorithms import cascade as cascade_lib
from mlcv.classic.algorithms import haar
from mlcv.classic.base import FittedMethod, LogFn
from mlcv.classic.methods import face_windows
from mlcv.config import ConfigError
from mlcv.ops import boxes as box_ops

_ROLES = ("train", "validation", "test")


def _check(ok: bool, key: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config.{key} {message}, got {value!r}")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` naming the first bad key of a Viola-Jones config."""
    _check(
        int(config.window) == config.window and config.window >= 8, "window", "must be an integer >= 8", config.window
    )
    f = config.features
    _check(
        len(f.types) > 0 and all(t in haar.TYPES for t in f.types),
        "features.types",
        f"must be among {haar.TYPES}",
        f.types,
    )
    for key in ("position_step", "size_step"):
        _check(int(f[key]) == f[key] and f[key] >= 1, f"features.{key}", "must be an integer >= 1", f[key])
    _check(f.per_round >= 0, "features.per_round", "must be >= 0 (0 searches every feature)", f.per_round)
    _check(config.positives.jitter >= 0, "positives.jitter", "must be >= 0", config.positives.jitter)
    rot = config.positives.max_rotation
    _check(0 <= rot <= 45, "positives.max_rotation", "must be in [0, 45] degrees", rot)
    n = config.negatives
    for role in _ROLES:
        key = f"{role}_scenes"
        bad = [s for s in n[key] if s not in face_windows.SCENES]
        _check(not bad, f"negatives.{key}", f"names unknown scenes {bad}; valid: {face_windows.SCENES}", n[key])
    _check(len(n.train_scenes) > 0, "negatives.train_scenes", "must name at least one scene", n.train_scenes)
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        common = set(n[f"{a}_scenes"]) & set(n[f"{b}_scenes"])
        _check(not common, f"negatives.{b}_scenes", f"shares images {sorted(common)} with {a}", n[f"{b}_scenes"])
    _check(n.per_stage >= 1, "negatives.per_stage", "must be >= 1", n.per_stage)
    _check(n.pool_step >= 1, "negatives.pool_step", "must be >= 1", n.pool_step)
    _check(
        1 <= n.min_pool_step <= n.pool_step,
        "negatives.min_pool_step",
        "must be in [1, negatives.pool_step]",
        n.min_pool_step,
    )
    _check(n.pyramid_factor > 1, "negatives.pyramid_factor", "must be > 1", n.pyramid_factor)
    _check(n.max_side >= config.window, "negatives.max_side", "must be >= config.window", n.max_side)
    c = config.cascade
    _check(
        len(c.stage_sizes) > 0 and all(s >= 1 for s in c.stage_sizes),
        "cascade.stage_sizes",
        "must be >= 1 each",
        c.stage_sizes,
    )
    _check(0 < c.stage_recall <= 1, "cascade.stage_recall", "must be in (0, 1]", c.stage_recall)
    rate = c.stage_false_positive_rate
    _check(0 <= rate < 1, "cascade.stage_false_positive_rate", "must be in [0, 1)", rate)
    _check(config.min_std > 0, "min_std", "must be > 0", config.min_std)
    d = config.detect
    _check(d.scale_factor > 1, "detect.scale_factor", "must be > 1", d.scale_factor)
    _check(d.step > 0, "detect.step", "must be > 0", d.step)
    _check(
        d.grouping in ("average", "vote", "nms"), "detect.grouping", "must be 'average', 'vote' or 'nms'", d.grouping
    )
    _check(d.group_eps > 0, "detect.group_eps", "must be > 0", d.group_eps)
    _check(
        len(d.paste_sizes) > 0 and all(s >= config.window for s in d.paste_sizes),
        "detect.paste_sizes",
        "must be >= config.window each",
        d.paste_sizes,
    )
    _check(d.min_neighbors >= 0, "detect.min_neighbors", "must be >= 0", d.min_neighbors)
    _check(0 <= d.iou <= 1, "detect.iou", "must be in [0, 1]", d.iou)
    g = tuple(d.gt_box)
    _check(
        len(g) == 4 and g[2] > g[0] and g[3] > g[1],
        "detect.gt_box",
        "must be (x0, y0, x1, y1) with x1 > x0, y1 > y0",
        g,
    )


class ViolaJones(FittedMethod):
    """The Viola-Jones face detector trained on ``faces`` and face-free scenes (see the module docstring)."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        if config.data.name != "faces":
            raise ConfigError(f"config.data.name must be 'faces' for viola_jones, got {config.data.name!r}")
        check_config(config)
        self.window = int(config.window)
        self.split = {r: face_windows.face_split(r, self.window, data_dir=config.data.data_dir) for r in _ROLES}
        self.cascade: cascade_lib.Cascade | None = None
        self.detections: dict[str, Any] = {}
        # (ground-truth boxes, detected boxes, scores) of each scene with known faces, for the AP.
        self._scored: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # ---- training ----

    def _pool(self, rng: np.random.Generator):
        """The training negatives' source: scene pyramids scanned on a grid, plus the non-face training windows."""
        n = self.config.negatives
        levels = [
            lvl
            for name in n.train_scenes
            for lvl in face_windows.pyramid(
                name, face_windows.load_scene(name), self.window, n.pyramid_factor, n.max_side
            )
        ]
        x, y = self.split["train"]
        extra = x[y == 0]
        w = self.window

        def scan_levels(cascade: cascade_lib.Cascade, step: int) -> tuple[np.ndarray, int]:
            refs, tried = [], 0
            for i, lvl in enumerate(levels):
                if cascade.stages:
                    x0, y0, _, _, n_tried = cascade.scan(lvl.ii, lvl.ii2, 1.0, step)
                else:  # an empty cascade accepts every window
                    hh, ww = lvl.image.shape
                    y0, x0 = (
                        a.ravel() for a in np.meshgrid(np.arange(0, hh - w + 1, step), np.arange(0, ww - w + 1, step))
                    )
                    n_tried = len(x0)
                refs.append(np.stack([np.full(len(x0), i), y0, x0], axis=1))
                tried += n_tried
            return (np.concatenate(refs) if refs else np.zeros((0, 3), np.int64)), tried

        state, min_step = {"step": int(n.pool_step)}, int(n.min_pool_step)

        def mine(cascade: cascade_lib.Cascade, count: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
            refs, tried = scan_levels(cascade, state["step"])
            # late stages leave too few false positives on the coarse grid: bootstrap from a finer one
            while len(refs) < count and state["step"] > min_step:
                state["step"] = max(min_step, state["step"] // 2)
                refs, tried = scan_levels(cascade, state["step"])
            accepted_extra = cascade.classify_windows(extra)[0] if cascade.stages else np.ones(len(extra), bool)
            extra_idx = np.flatnonzero(accepted_extra)
            total = len(refs) + len(extra_idx)
            rate = total / max(tried + len(extra), 1)
            pick = np.sort(rng.choice(total, size=min(count, total), replace=False))
            from_scene, from_extra = pick[pick < len(refs)], pick[pick >= len(refs)] - len(refs)
            chosen = [extra[extra_idx[from_extra]]]
            for i, lvl in enumerate(levels):
                r = refs[from_scene][refs[from_scene][:, 0] == i]
                if len(r):
                    chosen.append(np.lib.stride_tricks.sliding_window_view(lvl.image, (w, w))[r[:, 1], r[:, 2]])
            return np.concatenate(chosen), float(rate)

        return mine

    def fit(self, log: LogFn) -> dict[str, Any]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        x, y = self.split["train"]
        positives = face_windows.augment_faces(
            x[y == 1],
            mirror=c.positives.mirror,
            jitter=c.positives.jitter,
            max_rotation=c.positives.max_rotation,
            rng=rng,
        )
        vx, vy = self.split["validation"]
        # no random crops here: the stage thresholds follow the hardest validation faces, so keep them real
        val_positives = face_windows.augment_faces(
            vx[vy == 1], mirror=c.positives.mirror, jitter=0, max_rotation=0.0, rng=rng
        )
        features = haar.enumerate_features(
            self.window, tuple(c.features.types), position_step=c.features.position_step, size_step=c.features.size_step
        )
        self.cascade, stats = cascade_lib.train(
            features,
            positives,
            val_positives,
            self._pool(rng),
            stage_sizes=tuple(c.cascade.stage_sizes),
            stage_recall=c.cascade.stage_recall,
            stage_false_positive_rate=c.cascade.stage_false_positive_rate,
            balanced_weights=c.cascade.balanced_weights,
            negatives_per_stage=c.negatives.per_stage,
            per_round=c.features.per_round,
            min_std=c.min_std,
            rng=rng,
            log=log,
        )
        self.mean_face = x[y == 1].mean(0)
        return {
            "features_enumerated": len(features),
            "positives": len(positives),
            "stages": len(self.cascade.stages),
            "features_per_stage": [len(s.stumps) for s in self.cascade.stages],
            "stage_thresholds": [s.threshold for s in self.cascade.stages],
            "pool_false_positive_rate_per_stage": [s["stage/pool_false_positive_rate_before"] for s in stats[1:]],
        }

    # ---- evaluation ----

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Detections on a grey image in [0, 1]: ``(boxes, scores, raw boxes, windows tried)``.

        A box's score is its cluster's member count for ``detect.grouping``
        "average" and "vote", its last stage's margin for "nms".
        """
        d = self.config.detect
        raw, margin, tried = cascade_lib.detect(
            self.cascade, image, scale_factor=d.scale_factor, step=d.step, min_size=d.min_size, max_size=d.max_size
        )
        if d.grouping == "average":
            boxes, counts = box_ops.group_rectangles(raw, min_neighbors=d.min_neighbors, eps=d.group_eps)
            # clusters that still overlap (different scales of one face): the one with more members wins
            keep = box_ops.nms(boxes, counts.astype(np.float64), d.iou)
            return boxes[keep], counts[keep].astype(np.float64), raw, tried
        if d.grouping == "vote":
            # the raw box with most overlapping raw boxes leads its cluster (margin breaks ties)
            neighbours = box_ops.count_overlaps(raw, d.iou) if len(raw) else np.zeros(0)
            boxes, counts, _ = box_ops.nms_vote(raw, neighbours + 1e-3 * np.tanh(margin), d.iou)
            keep = counts > d.min_neighbors
            boxes, counts = boxes[keep], counts[keep]
            keep = ~box_ops.nested(boxes, counts, d.group_eps)
            return boxes[keep], counts[keep].astype(np.float64), raw, tried
        keep = cascade_lib.group(raw, margin, min_neighbors=d.min_neighbors, iou_threshold=d.iou)
        return raw[keep], margin[keep], raw, tried

    def evaluate(self, role: str) -> dict[str, Any]:
        assert self.cascade is not None, "fit first"
        x, y = self.split[role]
        self._scored = []
        accepted, _ = self.cascade.classify_windows(x)
        out = {
            "recall": float(accepted[y == 1].mean()),
            "false_positive_rate": float(accepted[y == 0].mean()),
            "accuracy": float((accepted == (y == 1)).mean()),
        }
        scenes = self.config.negatives[f"{role}_scenes"]
        if scenes:
            raw_fp = tried = kept = 0
            for name in scenes:
                boxes, _, raw, n = self.detect(face_windows.load_scene(name))
                raw_fp, tried, kept = raw_fp + len(raw), tried + n, kept + len(boxes)
            out["scene_windows"] = tried
            out["scene_false_positive_rate"] = raw_fp / max(tried, 1)
            out["scene_false_detections"] = kept
            out.update(self._pasted(role, scenes[0]))
        if role == "test":
            out.update(self._astronaut())
        if self._scored:
            out.update(self._average_precision())
        return out

    def _average_precision(self) -> dict[str, float]:
        """COCO's AP of the detections on the scenes with known faces (the pasted scene, the astronaut).

        The same :func:`mlcv.metrics.detection.coco_evaluate` as the deep detectors' evaluator; a box's score
        is its cluster's size (or margin), boxes turned from ``(x0, y0, x1, y1)`` to ``(y0, x0, y1, x1)``.
        """
        from mlcv.metrics.detection import coco_evaluate

        yx = lambda b: np.asarray(b, np.float64).reshape(-1, 4)[:, [1, 0, 3, 2]]  # noqa: E731
        gts = [{"boxes": yx(gt), "labels": np.zeros(len(yx(gt)), np.int64)} for gt, _, _ in self._scored]
        dets = [
            {"boxes": yx(b), "scores": np.asarray(s, np.float64), "labels": np.zeros(len(s), np.int64)}
            for _, b, s in self._scored
        ]
        stats = coco_evaluate(gts, dets, num_classes=1).stats
        self._scored = []
        return {"ap": float(stats["ap"]), "ap50": float(stats["ap50"]), "ap75": float(stats["ap75"])}

    def _pasted(self, role: str, scene: str) -> dict[str, Any]:
        """Detection of the split's faces pasted at several sizes into its first scene."""
        x, y = self.split[role]
        rng = np.random.default_rng([self.config.seed, _ROLES.index(role)])
        image, faces = face_windows.paste_faces(
            face_windows.load_scene(scene), x[y == 1], tuple(self.config.detect.paste_sizes), rng
        )
        boxes, scores, _, _ = self.detect(image)
        self._scored.append((faces, boxes, scores))
        overlap = box_ops.iou(faces, boxes) if len(boxes) else np.zeros((len(faces), 0))
        hit = overlap >= self.config.detect.match_iou
        return {
            "pasted_face_recall": float(hit.any(axis=1).mean()),
            # pasted faces do not overlap, so a box matches at most one; each face found accounts for one box
            "pasted_false_detections": int(len(boxes) - hit.any(axis=1).sum()),
        }

    def _astronaut(self) -> dict[str, Any]:
        from skimage import data

        image = face_windows.to_gray(data.astronaut())
        t0 = time.perf_counter()
        boxes, scores, raw, tried = self.detect(image)
        seconds = time.perf_counter() - t0
        gt = np.asarray(self.config.detect.gt_box, np.float64)
        overlap = box_ops.iou(boxes, gt)[:, 0] if len(boxes) else np.zeros(0)
        hit = overlap >= self.config.detect.match_iou
        self._scored.append((gt, boxes, scores))
        self.detections = {"image": image, "boxes": boxes, "raw": raw, "gt": gt}
        return {
            "astronaut_best_iou": float(overlap.max()) if len(overlap) else 0.0,
            "astronaut_detections": len(boxes),
            # one box may match the face; every other box is a false detection
            "astronaut_false_detections": int(len(boxes) - min(1, hit.sum())),
            "astronaut_raw_windows_accepted": len(raw),
            "astronaut_windows": tried,
            "astronaut_seconds": seconds,
        }

    def headline(self, summary: dict[str, Any]) -> str:
        t = summary["test"]
        return (
            f"test recall {100 * t['recall']:.1f} %, {t.get('scene_false_positive_rate', 0.0):.2e} false positives "
            f"per window, astronaut IoU {t['astronaut_best_iou']:.2f} with {t['astronaut_false_detections']} false "
            "detections" + (f", AP50 {100 * t['ap50']:.1f} % on the scenes with faces" if "ap50" in t else "")
        )

    # ---- figures ----

    def plot(self, plots_dir: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.patches as patches
        import matplotlib.pyplot as plt

        first = [
            (s.features.subset([t]), s.stumps.polarity[t]) for s in self.cascade.stages for t in range(len(s.stumps))
        ][:6]
        fig, axes = plt.subplots(1, max(len(first), 1), figsize=(2.2 * max(len(first), 1), 2.4), squeeze=False)
        for k, (ax, (feat, _)) in enumerate(zip(axes[0], first, strict=False)):
            ax.imshow(self.mean_face, cmap="gray", vmin=0, vmax=1)
            for (x, y, w, h), wt in zip(feat.rects[0], feat.weights[0], strict=True):
                if wt:
                    color = "white" if wt > 0 else "black"
                    ax.add_patch(
                        patches.Rectangle((x - 0.5, y - 0.5), w, h, facecolor=color, alpha=0.55, edgecolor="red")
                    )
            ax.set_title(f"#{k + 1} {haar.TYPES[feat.kind[0]]}", fontsize=8)
            ax.axis("off")
        fig.suptitle("first Haar features chosen, on the mean training face (white: + weight, black: -)", fontsize=9)
        fig.tight_layout()
        fig.savefig(plots_dir / "haar_features.png", dpi=100)
        plt.close(fig)

        if self.detections:
            d = self.detections
            fig, ax = plt.subplots(figsize=(6, 6))
            ax.imshow(d["image"], cmap="gray", vmin=0, vmax=1)
            for b in d["raw"][:2000]:
                ax.add_patch(
                    patches.Rectangle(
                        b[:2], b[2] - b[0], b[3] - b[1], fill=False, edgecolor="yellow", lw=0.3, alpha=0.4
                    )
                )
            for b in d["boxes"]:
                ax.add_patch(patches.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, edgecolor="red", lw=1.5))
            g = d["gt"]
            ax.add_patch(
                patches.Rectangle(g[:2], g[2] - g[0], g[3] - g[1], fill=False, edgecolor="lime", lw=1.5, ls="--")
            )
            ax.set_title("raw windows (yellow), detections (red), hand-labelled face (green)", fontsize=8)
            ax.axis("off")
            fig.tight_layout()
            fig.savefig(plots_dir / "astronaut_detections.png", dpi=100)
            plt.close(fig)
