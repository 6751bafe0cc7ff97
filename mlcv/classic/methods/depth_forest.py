"""Body-part recognition from single depth images: a random forest on depth-comparison features.

The method of Shotton et al. (CVPR 2011) on the synthetic bodies of :mod:`mlcv.data.sources.bodies`: pixels
sampled from the training images are classified into body parts by a forest over
:class:`~mlcv.classic.algorithms.depth_features.DepthFeatures`; every body pixel of a held-out image is then
classified, and each part's 3-D centre is proposed as the strongest mode (Gaussian mean shift) of the
back-projected pixels weighted by the part's probability times depth squared (the pixel's world
area), pushed back along the viewing axis by a per-part offset learnt on the training images.

Model selection: the forest is grown once to ``forest.max_depth``; validation mIoU picks the depth
at which it predicts among ``select.depths``. The test split is evaluated once, at that depth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mlcv import metrics
from mlcv.classic.algorithms import forest as rf
from mlcv.classic.algorithms.depth_features import DepthFeatures, sample_pixels
from mlcv.classic.algorithms.mean_shift import strongest_mode
from mlcv.classic.base import FittedMethod, LogFn
from mlcv.config import ConfigError
from mlcv.data.sources import bodies

ROLES = ("train", "validation", "test")
PARTS = bodies.PART_NAMES[1:]


def _check(ok: bool, key: str, value: Any, want: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key} must be {want}, got {value!r}")


def part_iou(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU of each class (num_classes,) over all pixels; NaN for a class absent from both."""
    # A pixel confusion matrix counted in NumPy: images hold far more pixels than a one-hot product wants.
    conf = np.bincount(labels.ravel() * num_classes + predictions.ravel(), minlength=num_classes**2)
    return metrics.per_class_iou(conf.reshape(num_classes, num_classes))


class DepthForest(FittedMethod):
    """Per-pixel body-part classification and part-centre proposals on synthetic depth images."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        d, f, ft, s, j = config.data, config.forest, config.features, config.select, config.joints
        _check(d.name == "bodies", "data.name", d.name, "'bodies'")
        _check(d.image_size >= 16, "data.image_size", d.image_size, ">= 16")
        for role in ROLES:
            key = f"num_{role}_images"
            _check(d[key] >= 1, f"data.{key}", d[key], ">= 1")
        _check(d.pixels_per_image >= 1, "data.pixels_per_image", d.pixels_per_image, ">= 1")
        _check(f.num_trees >= 1, "forest.num_trees", f.num_trees, ">= 1")
        _check(f.max_depth >= 1, "forest.max_depth", f.max_depth, ">= 1")
        _check(f.max_features >= 1, "forest.max_features", f.max_features, ">= 1")
        _check(f.min_samples_leaf >= 1, "forest.min_samples_leaf", f.min_samples_leaf, ">= 1")
        _check(f.criterion in ("entropy", "gini"), "forest.criterion", f.criterion, "'entropy' or 'gini'")
        _check(ft.max_offset > 0, "features.max_offset", ft.max_offset, "> 0 (pixel-metres)")
        _check(0 <= ft.unary <= 1, "features.unary", ft.unary, "in [0, 1]")
        depths = tuple(s.depths)
        _check(
            len(depths) > 0 and all(1 <= x <= f.max_depth for x in depths),
            "select.depths",
            depths,
            f"non-empty, each in 1..forest.max_depth={f.max_depth}",
        )
        _check(j.bandwidth > 0, "joints.bandwidth", j.bandwidth, "> 0 (metres)")
        _check(j.kernel in ("gaussian", "flat"), "joints.kernel", j.kernel, "'gaussian' or 'flat'")
        _check(0 <= j.min_probability < 1, "joints.min_probability", j.min_probability, "in [0, 1)")
        _check(j.num_seeds >= 1, "joints.num_seeds", j.num_seeds, ">= 1")
        _check(j.max_iter >= 1, "joints.max_iter", j.max_iter, ">= 1")
        # Each split from its own seed, all derived from config.seed: train, validation and test never share images.
        states = np.random.SeedSequence(config.seed).spawn(len(ROLES) + 1)
        self.data = {
            role: bodies.generate(int(st.generate_state(1)[0]), d[f"num_{role}_images"], d.image_size)
            for role, st in zip(ROLES, states, strict=False)
        }
        self.rng = np.random.default_rng(states[-1])
        self.forest: rf.RandomForest | None = None
        self.depth = int(max(depths))
        self.cache: dict[str, dict[str, np.ndarray]] = {}

    def _source(self, role: str, pixels: np.ndarray) -> DepthFeatures:
        ft = self.config.features
        return DepthFeatures(self.data[role]["depth"], pixels, ft.max_offset, ft.unary, bodies.BACKGROUND_DEPTH)

    def _body_pixels(self, role: str) -> np.ndarray:
        return np.argwhere(self.data[role]["label"] > 0)

    def _segment(self, role: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel part probabilities of the body pixels (m, C) and the label maps (N, H, W)."""
        pixels = self._body_pixels(role)
        proba = self.forest.predict_proba(self._source(role, pixels), depth)
        pred = np.zeros_like(self.data[role]["label"])
        pred[tuple(pixels.T)] = np.argmax(proba, 1)
        return proba, pred

    def _miou(self, role: str, pred: np.ndarray) -> tuple[float, np.ndarray]:
        iou = part_iou(self.data[role]["label"], pred, bodies.NUM_CLASSES)[1:]
        return float(np.nanmean(iou)), iou

    def fit(self, log: LogFn) -> dict[str, Any]:
        """Samples training pixels, grows the forest, picks the depth on validation, learns push-backs."""
        c = self.config
        train = self.data["train"]
        pixels = sample_pixels(train["label"], c.data.pixels_per_image, self.rng)
        y = train["label"][tuple(pixels.T)].astype(np.int64)
        params = rf.ForestParams(
            num_trees=c.forest.num_trees,
            max_depth=c.forest.max_depth,
            max_features=c.forest.max_features,
            min_samples_leaf=c.forest.min_samples_leaf,
            criterion=c.forest.criterion,
            bootstrap=c.forest.bootstrap,
        )
        t0 = time.time()
        self.forest = rf.RandomForest(params, bodies.NUM_CLASSES, seed=int(self.rng.integers(2**31))).fit(
            self._source("train", pixels), y
        )
        forest_s = time.time() - t0
        by_depth = {}
        for depth in sorted(set(c.select.depths)):  # validation only: test is evaluated once, by the runner
            miou, _ = self._miou("validation", self._segment("validation", depth)[1])
            by_depth[depth] = miou
            log(depth, {"validation/miou": miou})
        self.depth = max(by_depth, key=lambda k: (by_depth[k], -k))  # ties go to the shallower forest
        # Push-back of each part: its 3-D centre lies behind the visible surface by about this much.
        pts = bodies.back_project(train["depth"], float(train["focal"]))
        lab = train["label"]
        z_sum = np.stack([np.where(lab == k, pts[..., 2], 0).sum((1, 2)) for k in range(1, bodies.NUM_CLASSES)], 1)
        count = np.stack([(lab == k).sum((1, 2)) for k in range(1, bodies.NUM_CLASSES)], 1)
        seen = count > 0
        surface_z = z_sum / np.maximum(count, 1)
        self.push_back = np.array(
            [
                np.mean((train["centres"][:, k, 2] - surface_z[:, k])[seen[:, k]]) if seen[:, k].any() else 0.0
                for k in range(len(PARTS))
            ]
        )
        return {
            "training_pixels": len(pixels),
            "forest_fit_s": forest_s,
            "nodes_per_tree": [len(t.left) for t in self.forest.trees],
            "validation_miou_by_depth": {str(k): v for k, v in by_depth.items()},
            "chosen_depth": self.depth,
            "push_back_m": {p: float(v) for p, v in zip(PARTS, self.push_back, strict=True)},
        }

    def _centres(self, role: str, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Proposed 3-D part centres (N, parts, 3) and whether a part got any weight (N, parts)."""
        j = self.config.joints
        d = self.data[role]
        pixels = self._body_pixels(role)
        n = len(d["depth"])
        xyz = bodies.back_project(d["depth"], float(d["focal"]))[tuple(pixels.T)]  # (m, 3)
        p = proba[:, 1:]
        w = np.where(p >= j.min_probability, p, 0.0) * xyz[:, 2:3] ** 2  # probability times world area
        # One point set per (image, part) holding the pixels it weighs, padded with zero weights to one
        # length, so that all images and parts climb at once.
        pix, part = np.nonzero(w > 0)
        sets = pixels[pix, 0] * len(PARTS) + part
        order = np.argsort(sets, kind="stable")
        pix, part, sets = pix[order], part[order], sets[order]
        counts = np.bincount(sets, minlength=n * len(PARTS))
        slot = np.arange(len(sets)) - (np.cumsum(counts) - counts)[sets]
        size = max(1, int(counts.max()))
        points = np.zeros((n * len(PARTS), size, 3))
        weights = np.zeros((n * len(PARTS), size))
        points[sets, slot] = xyz[pix]
        weights[sets, slot] = w[pix, part]
        mode, _ = strongest_mode(points, weights, j.num_seeds, j.bandwidth, j.kernel, j.max_iter)
        mode = mode.reshape(n, len(PARTS), 3) + np.array([0.0, 0.0, 1.0]) * self.push_back[None, :, None]
        return mode, counts.reshape(n, len(PARTS)) > 0

    def evaluate(self, role: str) -> dict[str, Any]:
        """Per-part IoU and mIoU over the parts, body-pixel accuracy and the part-centre error in metres."""
        proba, pred = self._segment(role, self.depth)
        miou, iou = self._miou(role, pred)
        lab = self.data[role]["label"]
        body = lab > 0
        centres, found = self._centres(role, proba)
        gt = self.data[role]["centres"]
        visible = np.stack([(lab == k).any((1, 2)) for k in range(1, bodies.NUM_CLASSES)], 1)
        err = np.linalg.norm(centres - gt, axis=-1)
        both = visible & found
        self.cache[role] = {"pred": pred, "centres": centres, "found": found}
        out = {
            "miou": miou,
            "pixel_accuracy": float((pred[body] == lab[body]).mean()),
            "centre_error_m": float(err[both].mean()) if both.any() else float("nan"),
            "centres_found": float(both.sum() / max(1, visible.sum())),
        }
        out.update({f"iou/{name}": float(v) for name, v in zip(PARTS, iou, strict=True)})
        return out

    def plot(self, plots_dir: Path) -> None:
        """Depth, ground-truth parts, predicted parts and proposed centres of a few test images."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        d = self.data["test"]
        cache = self.cache.get("test") or {}
        if not cache:
            return
        colours = ListedColormap(["white", *plt.get_cmap("tab10").colors])
        shown = min(4, len(d["depth"]))
        fig, axes = plt.subplots(shown, 3, figsize=(7.5, 2.6 * shown), squeeze=False)
        f, c0 = float(d["focal"]), (d["depth"].shape[-1] - 1) / 2
        for i in range(shown):
            body = d["label"][i] > 0
            axes[i, 0].imshow(np.where(body, d["depth"][i], np.nan), cmap="viridis")
            axes[i, 1].imshow(d["label"][i], cmap=colours, vmin=0, vmax=10, interpolation="nearest")
            axes[i, 2].imshow(cache["pred"][i], cmap=colours, vmin=0, vmax=10, interpolation="nearest")
            xyz = cache["centres"][i][cache["found"][i]]
            axes[i, 2].scatter(c0 + f * xyz[:, 0] / xyz[:, 2], c0 - f * xyz[:, 1] / xyz[:, 2], s=8, c="k")
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
        for ax, title in zip(axes[0], ("depth", "ground truth", "predicted + centres"), strict=True):
            ax.set_title(title)
        patches = [Patch(color=colours(k), label=name) for k, name in enumerate(PARTS, 1)]
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.legend(handles=patches, loc="lower center", ncol=4, fontsize=7, frameon=False)
        fig.savefig(plots_dir / "parts.png", dpi=100)
        plt.close(fig)

    def headline(self, summary: dict[str, Any]) -> str:
        """E.g. ``test mIoU 61.2 % (depth 16), centre error 0.071 m``."""
        t = summary["test"]
        return f"test mIoU {100 * t['miou']:.1f} % (depth {self.depth}), centre error {t['centre_error_m']:.3f} m"
