"""NCC block-matching stereo as a fitted method: choose the window and LR threshold on synthetic pairs, test once.

``fit`` runs the matcher of :func:`mlcv.ops.stereo.block_match` on
``config.data.synthetic.pairs`` random-dot stereograms drawn from
``config.seed`` (the validation split) for every window radius in
``config.stereo.radii`` and every left-right threshold in
``config.stereo.lr_thresholds``, and keeps the setting with the lowest mean
bad-2 rate. ``evaluate("test")`` then runs that one setting on the real
Middlebury Motorcycle pair of scikit-image, the only pair with real ground truth.
``config.stereo.ncc`` picks the score: ``"zero_mean"`` NCC (the default) or the
course's ``"plain"`` NCC of eq. 73 (:func:`mlcv.ops.stereo.ncc_cost_volume`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mlcv.classic.base import FittedMethod, LogFn
from mlcv.config import ConfigError
from mlcv.data.sources import stereo as stereo_data
from mlcv.metrics import stereo as stereo_metrics
from mlcv.ops import stereo as ops

# config.stereo.ncc -> ncc_cost_volume's zero_mean.
NCC_SCORES = {"zero_mean": True, "plain": False}


def _check(ok: bool, key: str, value: Any, need: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key} must be {need}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


class BlockMatching(FittedMethod):
    """Winner-takes-all NCC block matching with an optional left-right check, parabola refinement and fill."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        st, syn = config.stereo, config.data.synthetic
        _check(st.ncc in NCC_SCORES, "stereo.ncc", st.ncc, f"one of {', '.join(map(repr, NCC_SCORES))}")
        self.zero_mean = NCC_SCORES[st.ncc]
        _check(
            len(st.radii) > 0 and all(_is_int(r) and r >= 1 for r in st.radii), "stereo.radii", st.radii, "ints >= 1"
        )
        _check(
            _is_int(st.num_disparities) and st.num_disparities >= 2,
            "stereo.num_disparities",
            st.num_disparities,
            ">= 2",
        )
        _check(_is_int(st.min_disparity) and st.min_disparity >= 0, "stereo.min_disparity", st.min_disparity, ">= 0")
        _check(
            len(st.lr_thresholds) > 0 and all(t >= 0 for t in st.lr_thresholds),
            "stereo.lr_thresholds",
            st.lr_thresholds,
            "a non-empty tuple of numbers >= 0",
        )
        _check(
            _is_int(st.timing_repeats) and st.timing_repeats >= 1, "stereo.timing_repeats", st.timing_repeats, ">= 1"
        )
        downscale = config.data.downscale
        _check(_is_int(downscale) and downscale >= 1, "data.downscale", downscale, "an int >= 1")
        _check(_is_int(syn.pairs) and syn.pairs >= 1, "data.synthetic.pairs", syn.pairs, "an int >= 1")
        _check(_is_int(syn.planes) and syn.planes >= 0, "data.synthetic.planes", syn.planes, "an int >= 0")
        _check(syn.noise_std >= 0, "data.synthetic.noise_std", syn.noise_std, ">= 0")
        _check(syn.texture_sigma >= 0, "data.synthetic.texture_sigma", syn.texture_sigma, ">= 0")
        top = st.min_disparity + st.num_disparities - 1
        _check(
            st.min_disparity <= syn.min_disparity <= syn.max_disparity <= top,
            "data.synthetic.max_disparity",
            (syn.min_disparity, syn.max_disparity),
            f"a range (from data.synthetic.min_disparity) inside the searched disparities [{st.min_disparity}, {top}]",
        )
        side = 2 * max(st.radii) + 1
        _check(_is_int(syn.height) and syn.height >= side + 8, "data.synthetic.height", syn.height, f">= {side + 8}")
        _check(
            _is_int(syn.width) and syn.width > top + side + 8, "data.synthetic.width", syn.width, f"> {top + side + 8}"
        )
        try:
            self.test_pair = stereo_data.motorcycle(config.data.downscale)
        except ValueError as e:
            raise ConfigError(f"config.data.downscale: {e}") from None
        h, w = self.test_pair["left"].shape
        _check(w > top + side and h > side, "data.downscale", downscale, "small enough to leave room for the window")
        self.validation_pairs = [
            stereo_data.synthetic_pair(
                int(config.seed) * 1000 + i,  # seed-derived, disjoint across seeds for up to 1000 pairs
                syn.height,
                syn.width,
                planes=syn.planes,
                min_disparity=syn.min_disparity,
                max_disparity=syn.max_disparity,
                texture_sigma=syn.texture_sigma,
                noise_std=syn.noise_std,
            )
            for i in range(syn.pairs)
        ]
        self.chosen: dict[str, Any] = {}
        self.outputs: dict[str, dict[str, np.ndarray]] = {}
        self.trials: list[dict[str, float]] = []

    def _match(self, pair: dict[str, Any], radius: int, lr: float | None, fill: bool) -> jax.Array:
        st = self.config.stereo
        return ops.block_match(
            pair["left"],
            pair["right"],
            radius=radius,
            num_disparities=st.num_disparities,
            min_disparity=st.min_disparity,
            lr_threshold=lr,
            subpixel=bool(st.subpixel),
            fill=fill,
            zero_mean=self.zero_mean,
        )

    def fit(self, log: LogFn) -> dict[str, Any]:
        st = self.config.stereo
        lr_options = [float(t) for t in st.lr_thresholds] if st.lr_check else [None]
        best = None
        for radius in st.radii:
            # One cost volume per pair and radius serves every LR threshold.
            volumes = [
                ops.ncc_cost_volume(
                    p["left"],
                    p["right"],
                    radius=radius,
                    num_disparities=st.num_disparities,
                    min_disparity=st.min_disparity,
                    zero_mean=self.zero_mean,
                )
                for p in self.validation_pairs
            ]
            for lr in lr_options:
                rows = []
                for pair, vol in zip(self.validation_pairs, volumes, strict=True):
                    pred = ops.disparity_from_volume(
                        vol,
                        min_disparity=st.min_disparity,
                        lr_threshold=lr,
                        subpixel=bool(st.subpixel),
                        fill=bool(st.fill),
                    )
                    rows.append(stereo_metrics.summarize(np.asarray(pred), pair["disparity"]))
                trial = {
                    "radius": float(radius),
                    "lr_threshold": -1.0 if lr is None else lr,  # -1: no left-right check
                    **{f"validation/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]},
                }
                log(len(self.trials), trial)
                self.trials.append(trial)
                key = (trial["validation/bad2_pct"], trial["validation/epe_px"])
                if best is None or key < best[0]:
                    best = (key, radius, lr)
        _, radius, lr = best
        self.chosen = {"radius": int(radius), "lr_threshold": lr}
        return {
            "chosen_radius": int(radius),
            "chosen_window": 2 * int(radius) + 1,
            "chosen_lr_threshold": "off" if lr is None else lr,
            "trials": len(self.trials),
            "selected_on": f"{len(self.validation_pairs)} synthetic pair(s), mean bad-2 %",
        }

    def _evaluate_pair(self, pair: dict[str, Any]) -> tuple[dict[str, float], np.ndarray]:
        radius, lr, fill = self.chosen["radius"], self.chosen["lr_threshold"], bool(self.config.stereo.fill)
        on_device = {"left": jax.device_put(pair["left"]), "right": jax.device_put(pair["right"])}
        pred = np.asarray(self._match(on_device, radius, lr, fill))  # the first call compiles; not timed
        times = []
        for _ in range(self.config.stereo.timing_repeats):
            t = time.perf_counter()
            jax.block_until_ready(self._match(on_device, radius, lr, fill))
            times.append(time.perf_counter() - t)
        metrics = stereo_metrics.summarize(pred, pair["disparity"])
        unfilled = np.asarray(self._match(on_device, radius, lr, False))
        metrics["density_before_fill_pct"] = 100 * stereo_metrics.density(unfilled, pair["disparity"])
        metrics["match_time_ms"] = 1000 * min(times)
        return metrics, pred

    def evaluate(self, role: str) -> dict[str, Any]:
        if not self.chosen:
            raise RuntimeError("evaluate() before fit()")
        if role == "validation":
            rows = []
            for i, pair in enumerate(self.validation_pairs):
                m, pred = self._evaluate_pair(pair)
                rows.append(m)
                if i == 0:
                    self.outputs["validation"] = {**pair, "pred": pred}
            return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        if role != "test":
            raise ValueError(f"unknown role {role!r}; valid: validation, test")
        metrics, pred = self._evaluate_pair(self.test_pair)
        calib = self.test_pair["calibration"]
        # Depth in Middlebury's convention z = b f / (d + doffs), in mm, for the estimate and the ground truth.
        z_pred, z_gt = (
            np.asarray(ops.disparity_to_depth(d, calib["focal_px"], calib["baseline_mm"], calib["doffs_px"]))
            for d in (pred, self.test_pair["disparity"])
        )
        both = np.isfinite(z_pred) & np.isfinite(z_gt)
        metrics["depth_abs_rel"] = float(np.mean(np.abs(z_pred - z_gt)[both] / z_gt[both])) if both.any() else None
        metrics["depth_median_mm"] = float(np.median(z_pred[both])) if both.any() else None
        self.outputs["test"] = {**self.test_pair, "pred": pred, "depth": z_pred}
        return metrics

    def plot(self, plots_dir: Path) -> None:
        for role, out in self.outputs.items():
            _plot_disparity(out, plots_dir / f"{role}_disparity.png", title=role)
        if self.trials:
            _plot_selection(self.trials, plots_dir / "selection.png")

    def headline(self, summary: dict[str, Any]) -> str:
        t = summary["test"]
        return (
            f"test bad-2 {t['bad2_pct']:.2f} % (EPE {t['epe_px']:.2f} px, density {t['density_pct']:.1f} %), "
            f"window {summary['fit']['chosen_window']} ({self.config.stereo.ncc} NCC), "
            f"matching {t['match_time_ms']:.0f} ms"
        )


def _plot_disparity(out: dict[str, Any], path: Path, title: str) -> None:
    """Left image, ground truth, estimate and error (|d - d_gt|, capped at 8 px; missing in red) side by side."""
    from mlcv.report import plots  # sets the Agg backend before pyplot is imported

    plt = plots.plt
    gt, pred = out["disparity"], out["pred"]
    finite = gt[np.isfinite(gt)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    err = np.abs(pred - gt)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    axes[0].imshow(out["left"], cmap="gray")
    axes[0].set_title(f"{title}: left image")
    for ax, img, name in ((axes[1], gt, "ground truth"), (axes[2], pred, "estimate")):
        im = ax.imshow(np.ma.masked_invalid(img), cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"{name} disparity (px)")
    fig.colorbar(im, ax=axes[1:3], fraction=0.03)
    cmap = plt.get_cmap("magma").with_extremes(bad="red")
    im = axes[3].imshow(np.where(np.isfinite(gt), err, 0.0), cmap=cmap, vmin=0, vmax=8)
    axes[3].set_title("|error| (px); red: no estimate")
    fig.colorbar(im, ax=axes[3], fraction=0.05)
    for ax in axes:
        ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_selection(trials: list[dict[str, float]], path: Path) -> None:
    """Validation bad-2 % against the window side, one line per left-right threshold."""
    from mlcv.report import plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for lr in sorted({t["lr_threshold"] for t in trials}):
        rows = sorted((2 * t["radius"] + 1, t["validation/bad2_pct"]) for t in trials if t["lr_threshold"] == lr)
        ax.plot(*zip(*rows, strict=True), marker="o", label="no LR check" if lr < 0 else f"LR threshold {lr:g}")
    ax.set_xlabel("window side 2W+1 (px)")
    ax.set_ylabel("validation bad-2 (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
