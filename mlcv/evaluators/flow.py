"""Optical flow over a whole split: end-point error and KITTI's outlier rate Fl, with colour-wheel figures."""

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
from matplotlib.colors import hsv_to_rgb

from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.registry import register
from mlcv.evaluators.stereo import float_png, mean_defined, png_float, safe_ratio, save_figure, stride_for

#: KITTI's outlier thresholds: an end-point error above ``OUTLIER_PX`` pixels and ``OUTLIER_REL`` of the GT length.
OUTLIER_PX, OUTLIER_REL = 3.0, 0.05


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-codes a flow field ``[..., 2]`` (u right, v down, in px) as RGB in [0, 1] ``[..., 3]``.

    The usual colour wheel of the Middlebury benchmark (Baker et al.), in HSV: the hue is the direction,
    ``atan2(v, u)`` in degrees (+x red at 0, +y i.e. down at 90, -x cyan at 180, up at 270), the saturation the
    magnitude over ``max_magnitude`` (default: the largest finite magnitude), clipped to 1, the value 1. Zero
    flow is white; a non-finite vector is black.
    """
    f = np.asarray(flow, np.float64)
    u, v = f[..., 0], f[..., 1]
    finite = np.isfinite(u) & np.isfinite(v)
    u, v = np.where(finite, u, 0.0), np.where(finite, v, 0.0)
    mag = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(mag.max()) if mag.size else 0.0
    hue = np.mod(np.degrees(np.arctan2(v, u)), 360.0) / 360.0
    sat = np.clip(mag / max_magnitude, 0.0, 1.0) if max_magnitude > 0 else np.zeros_like(mag)
    rgb = hsv_to_rgb(np.stack([hue, sat, np.ones_like(hue)], -1))
    return np.where(finite[..., None], rgb, 0.0)


def _rgb_png(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    plt.imsave(buf, np.clip(rgb, 0.0, 1.0), format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png_rgb(text: str) -> np.ndarray:
    return plt.imread(io.BytesIO(base64.b64decode(text)), format="png")[..., :3]


@register("flow")
class FlowEvaluator(Evaluator):
    """End-point error and KITTI's outlier rate of predicted optical flow.

    ``outputs[pred_key]`` and ``batch[gt_key]`` are ``[B, H, W, 2]`` (u, v in px); ``batch[valid_key]`` (nonzero
    where the ground truth holds; ``valid_key=None``: wherever it is finite) selects the pixels scored, and a
    non-finite ground truth is never valid. A non-finite prediction counts as an infinite error.

    Scalars, over every valid pixel of the split pooled:

    - ``flow_epe``: the mean end-point error ``||f - f_gt||_2``;
    - ``flow_outliers``: KITTI's Fl, the fraction of valid pixels whose end-point error exceeds both 3 px and
      5 % of the ground truth's length;
    - ``flow_epe_per_image``: the mean over images (with valid pixels) of each image's EPE.

    The device reduces each image to its valid count, EPE sum and outlier count; the host keeps them for the real
    rows (``batch["mask"] > 0``) and adds them in float64, so nothing depends on batching.

    Extras: ``per_image_epe`` (split order) and ``flow_examples``: the first ``draw_images`` images of the split,
    subsampled to at most ``draw_size`` px a side: the predicted and ground-truth flows colour-coded by
    :func:`flow_to_color` with the image's largest valid GT magnitude (invalid GT black) as PNG strings, and the
    EPE map (:func:`mlcv.evaluators.stereo.float_png`, missing where the GT is invalid).

    Figure ``flow_<prefix>.png``: for each example, predicted flow, ground truth and the EPE map side by side.
    """

    directions = {"flow_epe": "min", "flow_outliers": "min", "flow_epe_per_image": "min"}
    percent = frozenset({"flow_outliers"})

    def __init__(
        self,
        pred_key: str = "flow",
        gt_key: str = "flow",
        valid_key: str | None = "flow_mask",
        draw_images: int = 4,
        draw_size: int = 320,
    ):
        self.pred_key, self.gt_key, self.valid_key = pred_key, gt_key, valid_key
        self.draw_images, self.draw_size = max(0, int(draw_images)), int(draw_size)
        self.reset()

    def reset(self) -> None:
        self.stats: dict[str, list[np.ndarray]] = {}
        self.examples: list[dict[str, Any]] = []

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        pred = outputs[self.pred_key].astype(jnp.float32)
        gt = batch[self.gt_key].astype(jnp.float32)
        if pred.shape != gt.shape or pred.shape[-1] != 2:
            raise ValueError(f"flow evaluator: prediction {pred.shape} and ground truth {gt.shape} must be [B,H,W,2]")
        real = batch["mask"] > 0
        valid = jnp.isfinite(gt).all(-1) & real[:, None, None]
        if self.valid_key is not None:
            valid &= batch[self.valid_key].reshape(gt.shape[:-1]) != 0
        gt0 = jnp.where(valid[..., None], gt, 0.0)
        epe = jnp.sqrt(jnp.sum((pred - gt0) ** 2, -1))
        epe = jnp.where(jnp.isnan(epe), jnp.inf, epe)  # a NaN prediction is as wrong as can be
        mag = jnp.sqrt(jnp.sum(gt0**2, -1))
        outlier = valid & (epe > OUTLIER_PX) & (epe > OUTLIER_REL * mag)
        out = {
            "real": real,
            "valid": valid.sum((1, 2)),
            "epe_sum": jnp.where(valid, epe, 0.0).sum((1, 2)),
            "outliers": outlier.sum((1, 2)),
        }
        if self.draw_images:
            s, n = stride_for(gt.shape[:-1], self.draw_size), self.draw_images
            out |= {
                "draw_pred": pred[:n, ::s, ::s],
                "draw_gt": jnp.where(valid[..., None], gt, jnp.nan)[:n, ::s, ::s],
                "draw_epe": jnp.where(valid, epe, jnp.nan)[:n, ::s, ::s],
                "draw_max": jnp.where(valid, mag, 0.0)[:n].max((1, 2)),
            }
        return out

    def update(self, fetched: Mapping[str, Any]) -> None:
        real = np.asarray(fetched["real"], bool)
        for key in ("valid", "epe_sum", "outliers"):
            self.stats.setdefault(key, []).append(np.asarray(fetched[key], np.float64)[real])
        if "draw_pred" not in fetched:
            return
        keys = ("draw_pred", "draw_gt", "draw_epe", "draw_max")
        rows = zip(*(fetched[k] for k in keys), real, strict=False)
        for pred, gt, epe, top, keep in rows:
            if keep and len(self.examples) < self.draw_images:
                top = float(top)
                self.examples.append(
                    {
                        "pred_png": _rgb_png(flow_to_color(pred, top)),
                        "gt_png": _rgb_png(flow_to_color(gt, top)),
                        "epe_png": float_png(epe),
                        "max_magnitude": top,
                    }
                )

    def _stat(self, key: str) -> np.ndarray:
        parts = self.stats.get(key)
        return np.concatenate(parts) if parts else np.zeros(0)

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        valid, epe_sum = self._stat("valid"), self._stat("epe_sum")
        per_image = safe_ratio(epe_sum, valid)
        scalars = {
            "flow_epe": float(safe_ratio(epe_sum.sum(), valid.sum())),
            "flow_outliers": float(safe_ratio(self._stat("outliers").sum(), valid.sum())),
            "flow_epe_per_image": mean_defined(per_image),
        }
        return scalars, {"per_image_epe": per_image.tolist(), "flow_examples": list(self.examples)}

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        examples = extras.get("flow_examples") or []
        if not examples:
            return []
        return [plot_flow(examples, Path(directory) / f"flow_{prefix}.png", prefix)]


def plot_flow(examples: list[Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """Rows of (predicted flow, ground truth, EPE map) for :class:`FlowEvaluator`'s ``flow_examples``."""
    fig, axes = plt.subplots(len(examples), 3, figsize=(12, 2.6 * len(examples) + 0.4), squeeze=False)
    cmap = plt.get_cmap("magma").with_extremes(bad="black")
    for row, ex in zip(axes, examples, strict=True):
        epe = png_float(ex["epe_png"])
        row[0].imshow(_png_rgb(ex["pred_png"]), interpolation="nearest")
        row[1].imshow(_png_rgb(ex["gt_png"]), interpolation="nearest")
        top = np.nanpercentile(epe, 99) if np.isfinite(epe).any() else 1.0
        im = row[2].imshow(epe, cmap=cmap, vmin=0, vmax=max(top, OUTLIER_PX), interpolation="nearest")
        fig.colorbar(im, ax=row[2], fraction=0.04, label="EPE (px)")
        names = ("predicted", f"ground truth (saturated at {ex['max_magnitude']:.1f} px)", "end-point error")
        for ax, name in zip(row, names, strict=True):
            ax.set_title(name, fontsize=9)
            ax.set_axis_off()
    fig.suptitle(f"{title}: optical flow (hue: direction, saturation: magnitude)")
    return save_figure(fig, path)
