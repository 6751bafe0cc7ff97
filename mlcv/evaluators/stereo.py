"""Dense stereo over a whole split: bad-k rates, end-point error and density of predicted disparity maps."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from mlcv.config import ConfigError
from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.registry import register

#: The bad-k thresholds in pixels, scalars ``bad1``, ``bad2``, ``bad4``.
THRESHOLDS = (1, 2, 4)
#: The threshold whose bad pixels the error maps of the figure highlight.
DRAW_THRESHOLD = 2.0


def float_png(values: np.ndarray) -> str:
    """A map of floats in [0, 256) ``[H, W]`` as a 16-bit gray base64 PNG string, to 1/256 (:func:`png_float`).

    Non-finite values are stored as 0 and read back as NaN; the others as ``round(256 x) + 1``, clipped to the
    range, so a value of 0 stays distinct from "missing". A downsampled map of a few hundred pixels a side
    takes a few tens of kB in the run's JSON.
    """
    x = np.asarray(values, np.float64)
    finite = np.isfinite(x)
    code = np.where(finite, np.clip(np.round(256 * np.where(finite, x, 0.0)), 0, 65534) + 1, 0)
    buf = io.BytesIO()
    Image.fromarray(code.astype(np.uint16)).save(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def png_float(text: str) -> np.ndarray:
    """The float64 map that :func:`float_png` stored, NaN where it was missing."""
    code = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))), np.float64)
    return np.where(code > 0, (code - 1) / 256, np.nan)


def stride_for(shape: tuple[int, ...], size: int) -> int:
    """The subsampling step that brings the longer of the last two sides of ``shape`` to at most ``size``."""
    return max(1, -(-max(shape[-2], shape[-1]) // max(1, size)))


def mean_defined(x: np.ndarray) -> float:
    """The mean of the finite values; NaN when there are none."""
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def safe_ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den`` is 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


@register("disparity")
class DisparityEvaluator(Evaluator):
    """Bad-k rates, end-point error and density of predicted disparities, as :mod:`mlcv.metrics.stereo` defines them.

    ``outputs[pred_key]`` is ``[B, H, W]``: a NaN or negative value marks a pixel without prediction (the holes
    of the classic block matching). ``batch[gt_key]`` is the ground truth, ``batch[valid_key]`` its validity
    (nonzero where it holds; ``valid_key=None``: wherever the ground truth is finite; a non-finite ground truth
    is never valid). When the batch holds ``occlusion_key`` (nonzero where occluded), the same scalars are
    computed over the non-occluded valid pixels as ``*_noc``; without it (or with ``occlusion_key=None``) they
    are NaN.

    Scalars, over every valid pixel of the split (pixels of all images pooled):

    - ``bad1``, ``bad2``, ``bad4``: the fraction of valid pixels whose prediction is missing or off by more
      than 1, 2, 4 px. A missing prediction counts as bad, so a method cannot improve its score by declining
      to answer;
    - ``epe``: the mean ``|d - d_gt|`` over the valid pixels that have a prediction;
    - ``density``: the fraction of valid pixels that have a prediction;
    - ``bad2_per_image``, ``epe_per_image``: the mean over images of each image's bad-2 and EPE (images
      without valid pixels, or without predicted valid pixels for the EPE, are left out).

    The device reduces each image to pixel counts and an error sum; the host keeps those per-image values of
    the real rows (``batch["mask"] > 0``) and adds them in float64, so the scalars do not depend on batching.

    Extras: ``per_image_bad2`` and ``per_image_epe`` (split order, NaN where undefined) and
    ``disparity_examples``: the first ``draw_images`` images of the split, subsampled to at most ``draw_size``
    px a side, their predicted and ground-truth disparities (invalid: missing) as :func:`float_png` strings.

    Figures: ``disparity_<prefix>.png``, each example's prediction beside the ground truth and the error map
    (``|d - d_gt|``, pixels without ground truth black, the bad-2 pixels, missing predictions included, in red);
    with ``focal_px`` and ``baseline`` (at the disparity maps' resolution), ``depth_<prefix>.png``: predicted and
    ground-truth depth ``z = baseline * focal_px / d`` (in the baseline's unit) as coloured maps.
    """

    directions = {
        "bad1": "min",
        "bad2": "min",
        "bad4": "min",
        "epe": "min",
        "density": "max",
        "bad1_noc": "min",
        "bad2_noc": "min",
        "bad4_noc": "min",
        "epe_noc": "min",
        "density_noc": "max",
        "bad2_per_image": "min",
        "epe_per_image": "min",
    }
    percent = frozenset(
        {"bad1", "bad2", "bad4", "density", "bad1_noc", "bad2_noc", "bad4_noc", "density_noc", "bad2_per_image"}
    )

    def __init__(
        self,
        pred_key: str = "disparity",
        gt_key: str = "disparity",
        valid_key: str | None = "disparity_mask",
        occlusion_key: str | None = "occlusion",
        focal_px: float | None = None,
        baseline: float | None = None,
        draw_images: int = 4,
        draw_size: int = 320,
    ):
        self.pred_key, self.gt_key, self.valid_key, self.occlusion_key = pred_key, gt_key, valid_key, occlusion_key
        if (focal_px is None) != (baseline is None) or (focal_px is not None and (focal_px <= 0 or baseline <= 0)):
            raise ConfigError(
                f"config.evals: evaluator 'disparity' needs both focal_px and baseline > 0 or neither; "
                f"got focal_px={focal_px}, baseline={baseline}"
            )
        self.focal_px, self.baseline = focal_px, baseline
        self.draw_images, self.draw_size = max(0, int(draw_images)), int(draw_size)
        if not self.occlusion_key:
            self.directions = {k: v for k, v in type(self).directions.items() if not k.endswith("_noc")}
            self.percent = frozenset(self.percent & set(self.directions))
        self.reset()

    def reset(self) -> None:
        self.stats: dict[str, list[np.ndarray]] = {}
        self.examples: list[dict[str, str]] = []

    @staticmethod
    def _counts(pred: jax.Array, gt: jax.Array, region: jax.Array, suffix: str) -> dict[str, jax.Array]:
        """Per-image pixel counts and error sum over ``region`` (valid ground truth), missing predictions bad."""
        has = jnp.isfinite(pred) & (pred >= 0)
        err = jnp.abs(jnp.where(has & region, pred - gt, 0.0))
        out = {
            f"valid{suffix}": region.sum((1, 2)),
            f"predicted{suffix}": (region & has).sum((1, 2)),
            f"abs_err{suffix}": err.sum((1, 2), dtype=jnp.float32),
        }
        for k in THRESHOLDS:
            out[f"bad{k}{suffix}"] = (region & ~(has & (err <= k))).sum((1, 2))
        return out

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        pred = outputs[self.pred_key].astype(jnp.float32)
        gt = batch[self.gt_key].astype(jnp.float32)
        pred, gt = (x[..., 0] if x.ndim == 4 else x for x in (pred, gt))
        if pred.shape != gt.shape:
            raise ValueError(f"disparity evaluator: prediction {pred.shape} does not match ground truth {gt.shape}")
        real = batch["mask"] > 0
        valid = jnp.isfinite(gt) & real[:, None, None]
        if self.valid_key is not None:
            valid &= batch[self.valid_key].reshape(gt.shape) != 0
        out = {"real": real, **self._counts(pred, gt, valid, "")}
        if self.occlusion_key and self.occlusion_key in batch:
            noc = valid & (batch[self.occlusion_key].reshape(gt.shape) == 0)
            out |= self._counts(pred, gt, noc, "_noc")
        if self.draw_images:
            s = stride_for(gt.shape, self.draw_size)
            n = self.draw_images
            out |= {
                "draw_pred": jnp.where(jnp.isfinite(pred) & (pred >= 0), pred, jnp.nan)[:n, ::s, ::s],
                "draw_gt": jnp.where(valid, gt, jnp.nan)[:n, ::s, ::s],
            }
        return out

    def update(self, fetched: Mapping[str, Any]) -> None:
        real = np.asarray(fetched["real"], bool)
        for key, value in fetched.items():
            if key != "real" and not key.startswith("draw_"):
                self.stats.setdefault(key, []).append(np.asarray(value, np.float64)[real])
        if "draw_pred" in fetched:
            for pred, gt, keep in zip(fetched["draw_pred"], fetched["draw_gt"], real, strict=False):
                if keep and len(self.examples) < self.draw_images:
                    self.examples.append({"pred_png": float_png(pred), "gt_png": float_png(gt)})

    def _stat(self, key: str) -> np.ndarray:
        parts = self.stats.get(key)
        return np.concatenate(parts) if parts else np.zeros(0)

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        scalars: dict[str, float] = {}
        suffixes = ("", "_noc") if self.occlusion_key else ("",)
        for sfx in suffixes:
            if f"valid{sfx}" not in self.stats:  # no occlusion map in the batches, or an empty split
                scalars |= {f"{m}{sfx}": float("nan") for m in ("bad1", "bad2", "bad4", "epe", "density")}
                continue
            valid, predicted = self._stat(f"valid{sfx}").sum(), self._stat(f"predicted{sfx}").sum()
            for k in THRESHOLDS:
                scalars[f"bad{k}{sfx}"] = float(safe_ratio(self._stat(f"bad{k}{sfx}").sum(), valid))
            scalars[f"epe{sfx}"] = float(safe_ratio(self._stat(f"abs_err{sfx}").sum(), predicted))
            scalars[f"density{sfx}"] = float(safe_ratio(predicted, valid))
        per_bad2 = safe_ratio(self._stat("bad2"), self._stat("valid"))
        per_epe = safe_ratio(self._stat("abs_err"), self._stat("predicted"))
        scalars["bad2_per_image"] = mean_defined(per_bad2)
        scalars["epe_per_image"] = mean_defined(per_epe)
        extras = {
            "per_image_bad2": per_bad2.tolist(),
            "per_image_epe": per_epe.tolist(),
            "disparity_examples": list(self.examples),
        }
        return scalars, extras

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        examples = extras.get("disparity_examples") or []
        if not examples:
            return []
        directory = Path(directory)
        maps = [(png_float(ex["pred_png"]), png_float(ex["gt_png"])) for ex in examples]
        paths = [plot_disparity(maps, directory / f"disparity_{prefix}.png", prefix)]
        if self.focal_px is not None and self.baseline is not None:
            paths.append(plot_depth(maps, self.focal_px * self.baseline, directory / f"depth_{prefix}.png", prefix))
        return paths


def _cmap(name: str):
    return plt.get_cmap(name).with_extremes(bad="black")


def plot_disparity(maps: list[tuple[np.ndarray, np.ndarray]], path: Path, title: str = "") -> Path:
    """Rows of (predicted, ground truth, error) for ``(pred, gt)`` disparity maps, NaN missing (drawn black).

    Both disparities share the ground truth's colour range; the error map shows ``|d - d_gt|`` up to
    ``2 * DRAW_THRESHOLD`` px, with the bad pixels (off by more than ``DRAW_THRESHOLD`` or missing, over the valid
    ground truth) in red.
    """
    fig, axes = plt.subplots(len(maps), 3, figsize=(12, 2.6 * len(maps) + 0.4), squeeze=False)
    for row, (pred, gt) in zip(axes, maps, strict=True):
        valid = np.isfinite(gt)
        lo, hi = (np.nanmin(gt), np.nanmax(gt)) if valid.any() else (0.0, 1.0)
        with np.errstate(invalid="ignore"):
            err = np.abs(pred - gt)
            bad = valid & ~(err <= DRAW_THRESHOLD)
        for ax, image in zip(row[:2], (pred, gt), strict=True):
            im = ax.imshow(image, cmap=_cmap("turbo"), vmin=lo, vmax=hi, interpolation="nearest")
        fig.colorbar(im, ax=row[:2].tolist(), fraction=0.02, label="disparity (px)")
        im = row[2].imshow(err, cmap=_cmap("viridis"), vmin=0, vmax=2 * DRAW_THRESHOLD, interpolation="nearest")
        overlay = np.zeros((*bad.shape, 4))
        overlay[bad] = (1.0, 0.0, 0.0, 0.8)
        row[2].imshow(overlay, interpolation="nearest")
        fig.colorbar(im, ax=row[2], fraction=0.04, label="|error| (px)")
        rate = bad.sum() / valid.sum() if valid.any() else float("nan")
        for ax, name in zip(
            row, ("predicted", "ground truth", f"error, bad-2 in red ({100 * rate:.1f} %)"), strict=True
        ):
            ax.set_title(name, fontsize=9)
            ax.set_axis_off()
    fig.suptitle(f"{title}: disparity")
    return save_figure(fig, path)


def plot_depth(maps: list[tuple[np.ndarray, np.ndarray]], focal_baseline: float, path: Path, title: str = "") -> Path:
    """Rows of (predicted, ground-truth) depth ``z = focal_baseline / d`` from ``(pred, gt)`` disparity maps.

    Pixels without a positive disparity are black; the colours span the 2nd to 98th percentile of the ground
    truth's depth on a log scale, near red, far blue.
    """
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(len(maps), 2, figsize=(9, 2.6 * len(maps) + 0.4), squeeze=False)
    for row, (pred, gt) in zip(axes, maps, strict=True):
        depths = []
        for d in (pred, gt):
            with np.errstate(invalid="ignore", divide="ignore"):
                depths.append(np.where(d > 0, focal_baseline / d, np.nan))
        ref = depths[1][np.isfinite(depths[1])]
        ref = ref if ref.size else depths[0][np.isfinite(depths[0])]
        lo, hi = np.percentile(ref, [2, 98]) if ref.size else (1.0, 10.0)
        norm = LogNorm(vmin=lo, vmax=max(hi, lo * 1.01))
        for ax, z, name in zip(row, depths, ("predicted depth", "ground-truth depth"), strict=True):
            im = ax.imshow(z, cmap=_cmap("turbo_r"), norm=norm, interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.set_axis_off()
        fig.colorbar(im, ax=row.tolist(), fraction=0.03, label="depth (baseline units)")
    fig.suptitle(f"{title}: depth = baseline * focal / disparity")
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Saves without ``tight_layout`` (which colour bars shared by several axes defeat)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
