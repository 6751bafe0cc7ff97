"""Self-supervised stereo-depth losses of Monodepth (Godard, Mac Aodha and Brostow, CVPR 2017).

Conventions. Images are batched ``[B, H, W, C]`` floats in ``[0, 1]``; disparity maps ``[B, H, W]``
(or ``[B, H, W, 1]``) in pixels of their own scale, with the sign of :mod:`mlcv.ops.warp`: the left
view is rebuilt by sampling the right image at ``x - d_left``, the right view by sampling the left
image at ``x + d_right``. Monodepth's network predicts disparities as a fraction of the image width;
multiply them by ``W`` of the scale before calling these (the ``normalised`` flag of
:func:`left_right_consistency` and :func:`monodepth_loss` does it and keeps the left-right term in
width units, as the authors' code computes it; the paper's weights were tuned in those units).

Every loss is a scalar mean, pure ``jnp`` and jittable.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.ops import warp

# Stabilisers of SSIM's two fractions, for a dynamic range L: C1 = (0.01 L)^2, C2 = (0.03 L)^2.
_K1, _K2 = 0.01, 0.03


def _separable_valid(x: jax.Array, weights: np.ndarray) -> jax.Array:
    """``x`` ``[B, H, W, C]`` filtered by ``weights`` along H, then along W, 'valid' windows only."""
    n = len(weights)
    h, w = x.shape[1] - n + 1, x.shape[2] - n + 1
    x = sum(float(wt) * x[:, i : i + h] for i, wt in enumerate(weights))
    return sum(float(wt) * x[:, :, i : i + w] for i, wt in enumerate(weights))


def _ssim_map(x: jax.Array, y: jax.Array, weights: np.ndarray, c1: float, c2: float) -> jax.Array:
    """SSIM of every 'valid' window, the local statistics from the normalised separable ``weights``."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    mu_x, mu_y = _separable_valid(x, weights), _separable_valid(y, weights)
    var_x = _separable_valid(x * x, weights) - mu_x * mu_x
    var_y = _separable_valid(y * y, weights) - mu_y * mu_y
    cov = _separable_valid(x * y, weights) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim(x: jax.Array, y: jax.Array, *, data_range: float = 1.0) -> jax.Array:
    """Monodepth's SSIM map: statistics over 3 x 3 windows (average pooling), population (co)variances.

    Only windows inside the image ('valid' pooling, as the authors' code), so ``[B, H, W, C]``
    inputs give a ``[B, H - 2, W - 2, C]`` map of per-channel SSIM.
    """
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    return _ssim_map(x, y, np.full(3, 1.0 / 3.0), c1, c2)


def ssim_gaussian(x: jax.Array, y: jax.Array, *, sigma: float = 1.5, data_range: float = 1.0) -> jax.Array:
    """SSIM map of Wang et al. with a Gaussian window (standard deviation ``sigma``, truncated at 3.5 sigma).

    Population (co)variances; windows inside the image only, so the map is ``[B, H - 2r, W - 2r, C]``
    with ``r = int(3.5 sigma + 0.5)``. Its mean over pixels and channels equals scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
    data_range=data_range, channel_axis=-1)`` of one image, which averages the same crop.
    """
    r = int(3.5 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    return _ssim_map(x, y, taps / taps.sum(), c1, c2)


def appearance_loss(image: jax.Array, reconstruction: jax.Array, alpha: float = 0.85) -> jax.Array:
    """Monodepth's photometric loss (eq. 75): ``alpha (1 - SSIM) / 2 + (1 - alpha) |I - I~|``, as a mean.

    The SSIM term is the mean of ``clip((1 - SSIM) / 2, 0, 1)`` over the 3 x 3 SSIM map of
    :func:`ssim` (``H - 2`` by ``W - 2``), the L1 term the mean over all pixels, as in the
    authors' code (each term averaged over its own map).
    """
    dssim = jnp.clip((1.0 - ssim(image, reconstruction)) / 2.0, 0.0, 1.0)
    l1 = jnp.abs(jnp.asarray(image, jnp.float32) - jnp.asarray(reconstruction, jnp.float32))
    return alpha * jnp.mean(dssim) + (1.0 - alpha) * jnp.mean(l1)


def _disp_map(disparity: jax.Array) -> jax.Array:
    disparity = jnp.asarray(disparity, jnp.float32)
    return disparity[..., 0] if disparity.ndim == 4 else disparity


def smoothness_loss(disparity: jax.Array, image: jax.Array, *, normalise: bool = False) -> jax.Array:
    """Edge-aware disparity smoothness (eq. 76): ``mean(|dx d| e^{-|dx I|}) + mean(|dy d| e^{-|dy I|})``.

    Forward differences between neighbouring pixels; ``|dx I|`` is averaged over the image's
    channels. A disparity edge costs little where the image has an edge too. ``normalise=False``
    is Monodepth (2017); ``normalise=True`` divides each disparity map by its mean first, as
    Monodepth2 does, so that the loss cannot be lowered by shrinking all disparities.
    """
    d = _disp_map(disparity)
    if normalise:
        d = d / (jnp.mean(d, axis=(1, 2), keepdims=True) + 1e-7)
    img = jnp.asarray(image, jnp.float32)
    dx_d, dy_d = d[:, :, 1:] - d[:, :, :-1], d[:, 1:] - d[:, :-1]
    dx_i = jnp.mean(jnp.abs(img[:, :, 1:] - img[:, :, :-1]), axis=-1)
    dy_i = jnp.mean(jnp.abs(img[:, 1:] - img[:, :-1]), axis=-1)
    return jnp.mean(jnp.abs(dx_d) * jnp.exp(-dx_i)) + jnp.mean(jnp.abs(dy_d) * jnp.exp(-dy_i))


def left_right_consistency(
    disp_left: jax.Array, disp_right: jax.Array, *, view: str = "left", normalised: bool = False
) -> jax.Array:
    """Left-right disparity consistency (eq. 77): ``mean |d_l(x) - d_r(x - d_l(x))|`` for ``view="left"``.

    The right disparity map is warped to the left view with the left disparities
    (:func:`mlcv.ops.warp.warp_by_disparity`); ``view="right"`` is the symmetric term
    ``mean |d_r(x) - d_l(x + d_r(x))|``. Out-of-image samples read the clamped border, as in
    Monodepth. ``normalised=True``: disparities are fractions of the width (scaled by ``W`` only
    to warp; the difference stays in width units).
    """
    d_l, d_r = _disp_map(disp_left), _disp_map(disp_right)
    scale = float(d_l.shape[2]) if normalised else 1.0
    if view == "left":
        own, other = d_l, d_r
    elif view == "right":
        own, other = d_r, d_l
    else:
        raise ValueError(f"view must be 'left' or 'right', got {view!r}")
    projected, _ = warp.warp_by_disparity(other[..., None], own * scale, target=view)
    return jnp.mean(jnp.abs(own - projected[..., 0]))


def monodepth_loss(
    left: Sequence[jax.Array],
    right: Sequence[jax.Array],
    disp_left: Sequence[jax.Array],
    disp_right: Sequence[jax.Array],
    *,
    alpha_ap: float = 1.0,
    alpha_ds: float = 0.1,
    alpha_lr: float = 1.0,
    alpha_ssim: float = 0.85,
    smoothness_decay: bool = True,
    normalised: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Monodepth's training loss (eq. 78), summed over scales.

    Per scale ``s``: ``alpha_ap (C_ap^l + C_ap^r) + alpha_ds / 2^s (C_ds^l + C_ds^r) + alpha_lr (C_lr^l + C_lr^r)``.
    The paper states ``alpha_ds = 0.1``; the ``1 / 2^s`` (``smoothness_decay=True``) is from the
    authors' code, which divides the smoothness of scale ``s`` (0 = full resolution) by ``2^s``
    because disparity gradients at coarse scales span more of the scene.

    Args:
      left, right: per scale, ``[B, H_s, W_s, C]`` images of the pair (the caller resizes).
      disp_left, disp_right: per scale, ``[B, H_s, W_s]`` disparities of each view, in pixels of
        that scale (or fractions of the width if ``normalised``).
      alpha_ap, alpha_ds, alpha_lr: weights of the appearance, smoothness and left-right terms.
      alpha_ssim: the SSIM share ``alpha`` of the appearance loss.
      smoothness_decay: divide the smoothness of scale ``s`` by ``2^s``.
      normalised: disparities are fractions of the width (Monodepth's network output).

    Returns:
      ``(total, terms)``: ``terms`` holds ``appearance``, ``smoothness`` (decay applied) and
      ``left_right``, each summed over both views and all scales, unweighted by the alphas.
    """
    if not len(left) == len(right) == len(disp_left) == len(disp_right) > 0:
        raise ValueError("left, right, disp_left and disp_right need one entry per scale, at least one")
    ap = ds = lr = jnp.zeros((), jnp.float32)
    for s, (img_l, img_r, d_l, d_r) in enumerate(zip(left, right, disp_left, disp_right, strict=True)):
        d_l, d_r = _disp_map(d_l), _disp_map(d_r)
        scale = float(d_l.shape[2]) if normalised else 1.0
        recon_l, _ = warp.warp_by_disparity(img_r, d_l * scale, target="left")
        recon_r, _ = warp.warp_by_disparity(img_l, d_r * scale, target="right")
        ap += appearance_loss(img_l, recon_l, alpha_ssim) + appearance_loss(img_r, recon_r, alpha_ssim)
        decay = 2.0**s if smoothness_decay else 1.0
        ds += (smoothness_loss(d_l, img_l) + smoothness_loss(d_r, img_r)) / decay
        lr += left_right_consistency(d_l, d_r, view="left", normalised=normalised)
        lr += left_right_consistency(d_l, d_r, view="right", normalised=normalised)
    total = alpha_ap * ap + alpha_ds * ds + alpha_lr * lr
    return total, {"appearance": ap, "smoothness": ds, "left_right": lr}
