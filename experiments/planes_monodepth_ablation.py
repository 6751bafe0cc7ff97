"""Monodepth's loss terms, one by one (course §12.2, eqs. 75-78): appearance L1 only, + SSIM, + smoothness, + LR.

Run (one command; an interrupted run resumes where it stopped):
  python launch.py --config experiments/planes_monodepth_ablation.py --sweep --workdir docs/planes_monodepth
  python launch.py --config experiments/planes_monodepth_ablation.py:runlocal --sweep   # tiny, a few steps

Every row trains experiments/planes_stereo.py's Monodepth (the left image alone in, left and right disparities out,
no ground truth) on ``stereo_planes`` with the same schedule, and differs only in the weights of eq. 78: the L1 row
has alpha_ssim = 0 and no smoothness or left-right term; each further row adds one term with the paper's weight
(alpha_ssim 0.85, alpha_ds 0.1, alpha_lr 1). Seeds 0-2.

Reaches: not yet measured (issue 14's open part).
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
