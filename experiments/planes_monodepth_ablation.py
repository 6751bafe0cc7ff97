"""Monodepth's loss terms, one by one (course §12.2, eqs. 75-78): appearance L1 only, + SSIM, + smoothness, + LR.

Run (one command; an interrupted run resumes where it stopped):
  python launch.py --config experiments/planes_monodepth_ablation.py:steps=1000 --sweep --workdir docs/planes_monodepth
  python launch.py --config experiments/planes_monodepth_ablation.py:runlocal --sweep   # tiny, a few steps

Every row trains experiments/planes_stereo.py's Monodepth (the left image alone in, left and right disparities out,
no ground truth) on ``stereo_planes`` with the same schedule, and differs only in the weights of eq. 78: the L1 row
has alpha_ssim = 0 and no smoothness or left-right term; each further row adds one term with the paper's weight
(alpha_ssim 0.85, alpha_ds 0.1, alpha_lr 1). Seeds 0-2.

Reaches (``steps=1000``, 7-11 min a run on the shared 2-core CPU; docs/planes_monodepth.md), test bad-2 %: L1
45.07 ± 0.28; + SSIM 58.06 ± 29.29 (one seed collapses); + smoothness 37.99 ± 0.13; + left-right, the full loss,
89.97 ± 0.65: the left-right term flattens both disparity maps on these scenes.
"""

from __future__ import annotations

import ml_collections

from experiments import planes_stereo
from mlcv.orchestration.ablation import Row

ROWS = {
    "l1": ("appearance: L1 only", {"alpha_ssim": 0.0, "alpha_ds": 0.0, "alpha_lr": 0.0}),
    "ssim": ("+ SSIM (eq. 75, alpha 0.85)", {"alpha_ssim": 0.85, "alpha_ds": 0.0, "alpha_lr": 0.0}),
    "smooth": ("+ edge-aware smoothness (eq. 76)", {"alpha_ssim": 0.85, "alpha_ds": 0.1, "alpha_lr": 0.0}),
    "lr": ("+ left-right consistency (eq. 77): the full loss", {"alpha_ssim": 0.85, "alpha_ds": 0.1, "alpha_lr": 1.0}),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The base row (L1 only); ``arg`` as planes_stereo's (``steps``, ``runlocal``)."""
    config = planes_stereo.get_config(f"model=monodepth,{arg}" if arg else "model=monodepth")
    config.monodepth.update(ROWS["l1"][1])
    return config


def get_ablation(arg: str | None = None) -> list[Row]:
    """The four rows over seeds 0-2 (0-1 with ``runlocal``)."""
    seeds = (0, 1) if arg and "runlocal" in arg else (0, 1, 2)
    rows = []
    for id_, (title, weights) in ROWS.items():
        overrides = {} if id_ == "l1" else {f"monodepth.{k}": v for k, v in weights.items()}
        rows.append(Row(id_, "Monodepth loss", title, overrides, seeds))
    return rows
